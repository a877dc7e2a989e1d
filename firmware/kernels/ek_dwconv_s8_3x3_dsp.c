/* ek_dwconv_s8_3x3_dsp.c - 3x3 depthwise convolution, channel multiplier 1, four
 * channels per step with DSP instructions (see ek_dwconv.h for the filter layout). */
#include "ek_dwconv.h"
#include "ek_dsp.h"

/* ek_requantize() for a multiplier in [0, 2^31) and an x with |x| < 2^30 when
 * shift <= 0 (the exporter checks |bias| + 9 * 255 * 128 < 2^30), written to
 * compile to a few instructions:
 *  - TFLite's SRDHM (a*b + nudge) / 2^31, with its truncating division, equals
 *    (a*b + 2^30) >> 31 (floor) whenever b >= 0;
 *  - the rounding right shift by r >= 1 (ties away from zero) equals
 *    (h + 2^(r-1) - (h < 0)) >> r, which cannot overflow since |h| <= |x|. */
static inline int32_t ek_dw_requantize(int32_t x, int32_t multiplier, int32_t shift)
{
    if (shift > 0) {
        return ek_requantize(x, multiplier, shift);
    }
    const int32_t high = (int32_t)(((int64_t)x * multiplier + (INT64_C(1) << 30)) >> 31);
    if (shift == 0) {
        return high;
    }
    const uint32_t round = (UINT32_C(1) << (-shift - 1)) - ((uint32_t)high >> 31);
    return (int32_t)((uint32_t)high + round) >> -shift;
}

/* One filter tap for channels c..c+3: v holds x[c..c+3], w points at the tap's
 * two words {w[c], w[c+2]}, {w[c+1], w[c+3]}. */
#define EK_DW_TAP4(v, w)                                   \
    do {                                                   \
        const int32_t x02 = ek_sxtab16(offset2, (v));      \
        const int32_t x13 = ek_sxtab16_ror8(offset2, (v)); \
        const int32_t w02 = ek_read_s8x4(w);               \
        const int32_t w13 = ek_read_s8x4((w) + 4);         \
        a0 = ek_smlabb(x02, w02, a0);                      \
        a2 = ek_smlatt(x02, w02, a2);                      \
        a1 = ek_smlabb(x13, w13, a1);                      \
        a3 = ek_smlatt(x13, w13, a3);                      \
    } while (0)

/* The first n (1..4) int8 at p as one word, missing bytes 0 (the tail group). */
static inline int32_t ek_dw_read_partial(const int8_t *p, int32_t n)
{
    uint32_t v = 0;
    for (int32_t i = 0; i < n; ++i) {
        v |= (uint32_t)(uint8_t)p[i] << (8 * i);
    }
    return (int32_t)v;
}

/* Requantize, offset and clamp one accumulator (the int8 stores may alias
 * anything, so the kernel keeps these constants in locals). */
static inline int8_t ek_dw_out(int32_t acc, int32_t multiplier, int32_t shift, int32_t output_offset,
                               int32_t act_min, int32_t act_max)
{
    return (int8_t)ek_clamp_i32(ek_dw_requantize(acc, multiplier, shift) + output_offset, act_min, act_max);
}

void ek_dwconv_s8_3x3_dsp(const ek_dwconv_params *p, const int8_t *input,
                          const int8_t *filter, const int32_t *bias, int8_t *output)
{
    const int32_t c = p->in_c;
    const int32_t output_offset = p->output_offset;
    const int32_t act_min = p->act_min, act_max = p->act_max;
    const int32_t *mult = p->mult, *shift = p->shift;
    const int32_t row = p->in_w * c;
    const int32_t offset2 = (int32_t)(((uint32_t)(uint16_t)(int16_t)p->input_offset) * 0x10001u);

    for (int32_t y = 0; y < p->out_h; ++y) {
        const int32_t iy0 = y * p->stride_h - p->pad_top;
        const int32_t ky0 = ek_max_i32(0, -iy0);
        const int32_t ky1 = ek_min_i32(3, p->in_h - iy0);
        for (int32_t x = 0; x < p->out_w; ++x) {
            const int32_t ix0 = x * p->stride_w - p->pad_left;
            const int32_t kx0 = ek_max_i32(0, -ix0);
            const int32_t kx1 = ek_min_i32(3, p->in_w - ix0);
            const int interior = ky0 == 0 && ky1 == 3 && kx0 == 0 && kx1 == 3;
            /* the first valid tap's pixel, and where tap (ky0, kx0) sits in the filter */
            const int8_t *in_px = input + ((int64_t)(iy0 + ky0) * p->in_w + (ix0 + kx0)) * c;
            int8_t *out_px = output + ((int64_t)y * p->out_w + x) * c;
            const int8_t *w = filter;

            for (int32_t ch = 0; ch < c; ch += 4, w += 9 * 8) {
                const int32_t n = ek_min_i32(4, c - ch);
                int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                const int8_t *in = in_px + ch;
                if (n == 4 && interior) {
                    const int8_t *wt = w;
                    for (int32_t ky = 0; ky < 3; ++ky, in += row, wt += 3 * 8) {
                        const int32_t v0 = ek_read_s8x4(in);
                        const int32_t v1 = ek_read_s8x4(in + c);
                        const int32_t v2 = ek_read_s8x4(in + 2 * c);
                        EK_DW_TAP4(v0, wt);
                        EK_DW_TAP4(v1, wt + 8);
                        EK_DW_TAP4(v2, wt + 16);
                    }
                } else {
                    /* border pixel or tail group: only the taps inside the image */
                    for (int32_t ky = ky0; ky < ky1; ++ky) {
                        const int8_t *src = in + (ky - ky0) * row;
                        const int8_t *wt = w + ky * 3 * 8;
                        if (n == 4) {
                            /* src is column kx0; kx0 <= 1 <= kx1 - 1 except for
                             * windows narrower than 3 at both ends */
                            if (kx0 == 0) {
                                EK_DW_TAP4(ek_read_s8x4(src), wt);
                                src += c;
                            }
                            if (kx0 <= 1 && kx1 >= 2) {
                                EK_DW_TAP4(ek_read_s8x4(src), wt + 8);
                                src += c;
                            }
                            if (kx1 == 3) {
                                EK_DW_TAP4(ek_read_s8x4(src), wt + 16);
                            }
                        } else {
                            for (int32_t kx = kx0; kx < kx1; ++kx, src += c) {
                                EK_DW_TAP4(ek_dw_read_partial(src, n), wt + kx * 8);
                            }
                        }
                    }
                }
                if (bias) {
                    a0 += bias[ch];
                    a1 += n > 1 ? bias[ch + 1] : 0;
                    a2 += n > 2 ? bias[ch + 2] : 0;
                    a3 += n > 3 ? bias[ch + 3] : 0;
                }
                int8_t *out = out_px + ch;
                out[0] = ek_dw_out(a0, mult[ch], shift[ch], output_offset, act_min, act_max);
                if (n == 4) {
                    out[1] = ek_dw_out(a1, mult[ch + 1], shift[ch + 1], output_offset, act_min, act_max);
                    out[2] = ek_dw_out(a2, mult[ch + 2], shift[ch + 2], output_offset, act_min, act_max);
                    out[3] = ek_dw_out(a3, mult[ch + 3], shift[ch + 3], output_offset, act_min, act_max);
                } else {
                    const int32_t rest[3] = {a1, a2, a3};
                    for (int32_t i = 1; i < n; ++i) {
                        out[i] = ek_dw_out(rest[i - 1], mult[ch + i], shift[ch + i], output_offset,
                                           act_min, act_max);
                    }
                }
            }
        }
    }
}
