/* ek_avgpool_s8.c - portable reference average pooling (see ek_pool.h). */
#include "ek_pool.h"

void ek_avgpool_s8(const ek_pool_params *p, const int8_t *input, int8_t *output)
{
    for (int32_t y = 0; y < p->out_h; ++y) {
        const int32_t iy0 = y * p->stride_h - p->pad_top;
        const int32_t ky0 = ek_max_i32(0, -iy0);
        const int32_t ky1 = ek_min_i32(p->k_h, p->in_h - iy0);
        for (int32_t x = 0; x < p->out_w; ++x) {
            const int32_t ix0 = x * p->stride_w - p->pad_left;
            const int32_t kx0 = ek_max_i32(0, -ix0);
            const int32_t kx1 = ek_min_i32(p->k_w, p->in_w - ix0);
            const int32_t count = (ky1 - ky0) * (kx1 - kx0);
            for (int32_t ch = 0; ch < p->c; ++ch) {
                int32_t acc = 0;
                for (int32_t ky = ky0; ky < ky1; ++ky) {
                    for (int32_t kx = kx0; kx < kx1; ++kx) {
                        acc += input[((int64_t)(iy0 + ky) * p->in_w + (ix0 + kx)) * p->c + ch];
                    }
                }
                int32_t avg = 0;
                if (count > 0) {
                    avg = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                }
                output[((int64_t)y * p->out_w + x) * p->c + ch] =
                    (int8_t)ek_clamp_i32(avg, p->act_min, p->act_max);
            }
        }
    }
}
