/* ek_dwconv_s8.c - portable reference depthwise convolution (see ek_dwconv.h). */
#include "ek_dwconv.h"

void ek_dwconv_s8(const ek_dwconv_params *p, const int8_t *input,
                  const int8_t *filter, const int32_t *bias, int8_t *output)
{
    for (int32_t y = 0; y < p->out_h; ++y) {
        const int32_t iy0 = y * p->stride_h - p->pad_top;
        for (int32_t x = 0; x < p->out_w; ++x) {
            const int32_t ix0 = x * p->stride_w - p->pad_left;
            for (int32_t o = 0; o < p->out_c; ++o) {
                const int32_t i = o / p->ch_mult;
                int32_t acc = bias ? bias[o] : 0;
                for (int32_t ky = 0; ky < p->k_h; ++ky) {
                    const int32_t iy = iy0 + ky * p->dil_h;
                    if (iy < 0 || iy >= p->in_h) {
                        continue;
                    }
                    for (int32_t kx = 0; kx < p->k_w; ++kx) {
                        const int32_t ix = ix0 + kx * p->dil_w;
                        if (ix < 0 || ix >= p->in_w) {
                            continue;
                        }
                        const int32_t in_v = input[((int64_t)iy * p->in_w + ix) * p->in_c + i];
                        const int32_t w_v = filter[((int64_t)ky * p->k_w + kx) * p->out_c + o];
                        acc += (in_v + p->input_offset) * w_v;
                    }
                }
                acc = ek_requantize(acc, p->mult[o], p->shift[o]) + p->output_offset;
                output[((int64_t)y * p->out_w + x) * p->out_c + o] =
                    (int8_t)ek_clamp_i32(acc, p->act_min, p->act_max);
            }
        }
    }
}
