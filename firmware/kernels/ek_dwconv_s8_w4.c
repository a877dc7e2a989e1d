/* ek_dwconv_s8_w4.c - depthwise convolution with w4 weights (4-bit two's complement, two per
 * byte; the filter [k_h][k_w][out_c] is one row, weight t*out_c + o in nibble t*out_c + o,
 * t = ky*k_w + kx), read from flash as stored; format in ek_wcode.h.  Semantics of
 * ek_dwconv_s8 exactly: unfolded bias (may be NULL), taps outside the input skipped,
 * input_offset added per tap, double rounding (ek_requantize_pos: multipliers in
 * [2^30, 2^31) or 0, which the exporter guarantees, as for the _dsp convolutions).
 *
 * Channels innermost: for each output pixel the out_c accumulators live in scratch (int32,
 * 4*out_c bytes, 4-byte aligned) and each tap inside the input adds its row of out_c weights,
 * two per weight byte, against the input pixel's channels (o / ch_mult; o itself when
 * ch_mult = 1, the fast path). */
#include "ek_dot_s8_dsp.h"
#include "ek_wdot.h"

/* acc[o] += (in[o] + offset) * w[t + o] for o < n: the nibbles from t on (ch_mult = 1). */
static inline void ek_dw_w4_tap(uint32_t *acc, const int8_t *in, const uint8_t *codes, uint32_t t,
                                int32_t n, int32_t offset)
{
    if ((t & 1u) && n > 0) {               /* the row starts in a high nibble */
        *acc++ += ek_wmul(*in++ + offset, ek_nib_hi(codes[t >> 1]));
        ++t;
        --n;
    }
    const uint8_t *b = codes + (t >> 1);
    for (int32_t j = n >> 1; j > 0; --j) {  /* both accumulators loaded before either store */
        const uint32_t v = *b++;
        const int32_t x0 = in[0] + offset, x1 = in[1] + offset;
        const uint32_t a0 = acc[0], a1 = acc[1];
        in += 2;
        acc[0] = a0 + ek_wmul(x0, ek_nib_lo(v));
        acc[1] = a1 + ek_wmul(x1, ek_nib_hi(v));
        acc += 2;
    }
    if (n & 1) {
        *acc += ek_wmul(*in + offset, ek_nib_lo(*b));
    }
}

void ek_dwconv_s8_w4(const ek_dwconv_wc_params *p, const int8_t *input, const int32_t *bias,
                     int8_t *output, int8_t *scratch)
{
    const ek_dwconv_params *d = &p->dw;
    const uint8_t *codes = p->w.codes;
    uint32_t *acc = (uint32_t *)(void *)scratch;      /* [out_c], 4-byte aligned */
    const int32_t out_c = d->out_c, in_c = d->in_c, ch_mult = d->ch_mult;
    const int32_t offset = d->input_offset;
    for (int32_t y = 0; y < d->out_h; ++y) {
        const int32_t iy0 = y * d->stride_h - d->pad_top;
        for (int32_t x = 0; x < d->out_w; ++x) {
            const int32_t ix0 = x * d->stride_w - d->pad_left;
            for (int32_t o = 0; o < out_c; ++o) {
                acc[o] = bias ? (uint32_t)bias[o] : 0u;
            }
            for (int32_t ky = 0; ky < d->k_h; ++ky) {
                const int32_t iy = iy0 + ky * d->dil_h;
                if (iy < 0 || iy >= d->in_h) {
                    continue;
                }
                for (int32_t kx = 0; kx < d->k_w; ++kx) {
                    const int32_t ix = ix0 + kx * d->dil_w;
                    if (ix < 0 || ix >= d->in_w) {
                        continue;
                    }
                    const int8_t *in_px = input + ((int64_t)iy * d->in_w + ix) * in_c;
                    const uint32_t t = (uint32_t)(ky * d->k_w + kx) * (uint32_t)out_c;
                    if (ch_mult == 1) {
                        ek_dw_w4_tap(acc, in_px, codes, t, out_c, offset);
                        continue;
                    }
                    for (int32_t o = 0; o < out_c; ++o) {
                        const uint32_t b = codes[(t + (uint32_t)o) >> 1];
                        const int32_t w_v = ((t + (uint32_t)o) & 1u) ? ek_nib_hi(b) : ek_nib_lo(b);
                        acc[o] += ek_wmul(in_px[o / ch_mult] + offset, w_v);
                    }
                }
            }
            for (int32_t o = 0; o < out_c; ++o) {
                const int32_t r = ek_requantize_pos((int32_t)acc[o], d->mult[o], d->shift[o]) + d->output_offset;
                *output++ = (int8_t)ek_clamp_i32(r, d->act_min, d->act_max);
            }
        }
    }
}
