/* ek_conv2d_s8.c - portable reference 2-D convolution (see ek_conv2d.h). */
#include "ek_conv2d.h"

void ek_conv2d_s8(const ek_conv2d_params *p, const int8_t *input,
                  const int8_t *filter, const int32_t *bias, int8_t *output, int8_t *scratch)
{
    (void)scratch;     /* the shared signature's scratch: this variant needs none */
    for (int32_t y = 0; y < p->out_h; ++y) {
        const int32_t iy0 = y * p->stride_h - p->pad_top;
        for (int32_t x = 0; x < p->out_w; ++x) {
            const int32_t ix0 = x * p->stride_w - p->pad_left;
            for (int32_t o = 0; o < p->out_c; ++o) {
                const int8_t *w_o = filter + (int64_t)o * p->k_h * p->k_w * p->in_c;
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
                        const int8_t *in_px = input + ((int64_t)iy * p->in_w + ix) * p->in_c;
                        const int8_t *w_px = w_o + ((int64_t)ky * p->k_w + kx) * p->in_c;
                        for (int32_t i = 0; i < p->in_c; ++i) {
                            acc += (in_px[i] + p->input_offset) * w_px[i];
                        }
                    }
                }
                acc = ek_requantize(acc, p->mult[o], p->shift[o]) + p->output_offset;
                output[((int64_t)y * p->out_w + x) * p->out_c + o] =
                    (int8_t)ek_clamp_i32(acc, p->act_min, p->act_max);
            }
        }
    }
}
