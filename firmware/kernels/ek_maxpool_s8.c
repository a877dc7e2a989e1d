/* ek_maxpool_s8.c - portable reference max pooling (see ek_pool.h). */
#include "ek_pool.h"

void ek_maxpool_s8(const ek_pool_params *p, const int8_t *input, int8_t *output)
{
    for (int32_t y = 0; y < p->out_h; ++y) {
        const int32_t iy0 = y * p->stride_h - p->pad_top;
        const int32_t ky0 = ek_max_i32(0, -iy0);
        const int32_t ky1 = ek_min_i32(p->k_h, p->in_h - iy0);
        for (int32_t x = 0; x < p->out_w; ++x) {
            const int32_t ix0 = x * p->stride_w - p->pad_left;
            const int32_t kx0 = ek_max_i32(0, -ix0);
            const int32_t kx1 = ek_min_i32(p->k_w, p->in_w - ix0);
            for (int32_t ch = 0; ch < p->c; ++ch) {
                int32_t best = EK_INT8_MIN;
                for (int32_t ky = ky0; ky < ky1; ++ky) {
                    for (int32_t kx = kx0; kx < kx1; ++kx) {
                        best = ek_max_i32(best, input[((int64_t)(iy0 + ky) * p->in_w + (ix0 + kx)) * p->c + ch]);
                    }
                }
                output[((int64_t)y * p->out_w + x) * p->c + ch] =
                    (int8_t)ek_clamp_i32(best, p->act_min, p->act_max);
            }
        }
    }
}
