/* ek_dwconv_s8_3x3_dsp.c - 3x3 depthwise convolution, channel multiplier 1, four
 * channels per step with DSP instructions (see ek_dwconv.h for the filter layout).
 *
 * For each output pixel: each whole group of four channels, its nine taps (an
 * interior pixel) or the taps inside the image (a border pixel), then the c % 4
 * channels left over (the tail group, their inputs read byte by byte); four
 * accumulators per group, requantized. */
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

/* The accumulators of four channels c..c+3. */
typedef struct {
    int32_t a0, a1, a2, a3;
} ek_dw_acc4;

/* acc plus one filter tap for channels c..c+3: v holds x[c..c+3], w points at
 * the tap's two words {w[c], w[c+2]}, {w[c+1], w[c+3]}, offset2 holds
 * input_offset in both halfwords. */
static inline ek_dw_acc4 ek_dw_tap4(ek_dw_acc4 acc, int32_t v, const int8_t *w, int32_t offset2)
{
    const int32_t x02 = ek_sxtab16(offset2, v);
    const int32_t x13 = ek_sxtab16_ror8(offset2, v);
    const int32_t w02 = ek_read_s8x4(w);
    const int32_t w13 = ek_read_s8x4(w + 4);
    acc.a0 = ek_smlabb(x02, w02, acc.a0);
    acc.a2 = ek_smlatt(x02, w02, acc.a2);
    acc.a1 = ek_smlabb(x13, w13, acc.a1);
    acc.a3 = ek_smlatt(x13, w13, acc.a3);
    return acc;
}

/* The first n (1..3) int8 at p as one word, missing bytes 0 (the tail group). */
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

            int32_t ch = 0;
            for (; ch + 4 <= c; ch += 4, w += 9 * 8) {
                ek_dw_acc4 acc = {0, 0, 0, 0};
                const int8_t *in = in_px + ch;
                if (interior) {
                    const int8_t *wt = w;
                    for (int32_t ky = 0; ky < 3; ++ky, in += row, wt += 3 * 8) {
                        const int32_t v0 = ek_read_s8x4(in);
                        const int32_t v1 = ek_read_s8x4(in + c);
                        const int32_t v2 = ek_read_s8x4(in + 2 * c);
                        acc = ek_dw_tap4(acc, v0, wt, offset2);
                        acc = ek_dw_tap4(acc, v1, wt + 8, offset2);
                        acc = ek_dw_tap4(acc, v2, wt + 16, offset2);
                    }
                } else {
                    /* border pixel: only the taps inside the image */
                    for (int32_t ky = ky0; ky < ky1; ++ky) {
                        const int8_t *src = in + (ky - ky0) * row;
                        const int8_t *wt = w + ky * 3 * 8;
                        /* src is column kx0; kx0 <= 1 <= kx1 - 1 except for
                         * windows narrower than 3 at both ends */
                        if (kx0 == 0) {
                            acc = ek_dw_tap4(acc, ek_read_s8x4(src), wt, offset2);
                            src += c;
                        }
                        if (kx0 <= 1 && kx1 >= 2) {
                            acc = ek_dw_tap4(acc, ek_read_s8x4(src), wt + 8, offset2);
                            src += c;
                        }
                        if (kx1 == 3) {
                            acc = ek_dw_tap4(acc, ek_read_s8x4(src), wt + 16, offset2);
                        }
                    }
                }
                if (bias) {
                    acc.a0 += bias[ch];
                    acc.a1 += bias[ch + 1];
                    acc.a2 += bias[ch + 2];
                    acc.a3 += bias[ch + 3];
                }
                int8_t *out = out_px + ch;
                out[0] = ek_dw_out(acc.a0, mult[ch], shift[ch], output_offset, act_min, act_max);
                out[1] = ek_dw_out(acc.a1, mult[ch + 1], shift[ch + 1], output_offset, act_min, act_max);
                out[2] = ek_dw_out(acc.a2, mult[ch + 2], shift[ch + 2], output_offset, act_min, act_max);
                out[3] = ek_dw_out(acc.a3, mult[ch + 3], shift[ch + 3], output_offset, act_min, act_max);
            }
            if (ch < c) {
                /* the tail group of n < 4 channels: only the taps inside the image */
                const int32_t n = c - ch;
                ek_dw_acc4 acc = {0, 0, 0, 0};
                for (int32_t ky = ky0; ky < ky1; ++ky) {
                    const int8_t *src = in_px + ch + (ky - ky0) * row;
                    for (int32_t kx = kx0; kx < kx1; ++kx, src += c) {
                        acc = ek_dw_tap4(acc, ek_dw_read_partial(src, n), w + (ky * 3 + kx) * 8, offset2);
                    }
                }
                const int32_t sums[3] = {acc.a0, acc.a1, acc.a2};
                for (int32_t i = 0; i < n; ++i) {
                    const int32_t sum = sums[i] + (bias ? bias[ch + i] : 0);
                    out_px[ch + i] = ek_dw_out(sum, mult[ch + i], shift[ch + i], output_offset, act_min, act_max);
                }
            }
        }
    }
}
