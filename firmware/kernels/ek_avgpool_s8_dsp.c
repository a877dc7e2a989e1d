/* ek_avgpool_s8_dsp.c - average pooling summing four channels per word load
 * (see ek_pool.h). */
#include "ek_pool.h"
#include "ek_dsp.h"

/* The rounded average of ek_avgpool_s8 (count > 0). */
static inline int8_t ek_avgpool_dsp_out(int32_t acc, int32_t count, int32_t act_min, int32_t act_max)
{
    const int32_t avg = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
    return (int8_t)ek_clamp_i32(avg, act_min, act_max);
}

/* Window rows per flush of the 16-bit sums: rows * cols <= 255 keeps each half within
 * 255 * 128 = 32640 < 2^15. */
#define EK_AVGPOOL_DSP_MAX_TAPS 255

void ek_avgpool_s8_dsp(const ek_pool_params *p, const int8_t *input, int8_t *output)
{
    const int32_t c = p->c;
    const int32_t full = c & ~3;                 /* channels summed four at a time */
    const int32_t row = p->in_w * c;
    for (int32_t y = 0; y < p->out_h; ++y) {
        const int32_t iy0 = y * p->stride_h - p->pad_top;
        const int32_t ky0 = ek_max_i32(0, -iy0);
        const int32_t ky1 = ek_min_i32(p->k_h, p->in_h - iy0);
        for (int32_t x = 0; x < p->out_w; ++x) {
            const int32_t ix0 = x * p->stride_w - p->pad_left;
            const int32_t kx0 = ek_max_i32(0, -ix0);
            const int32_t kx1 = ek_min_i32(p->k_w, p->in_w - ix0);
            int8_t *out = output + ((int64_t)y * p->out_w + x) * c;
            const int32_t rows = ky1 - ky0, cols = kx1 - kx0;
            if (rows <= 0 || cols <= 0) {
                for (int32_t ch = 0; ch < c; ++ch) {
                    out[ch] = (int8_t)ek_clamp_i32(0, p->act_min, p->act_max);
                }
                continue;
            }
            const int32_t count = rows * cols;
            /* rows per flush of the halfword sums (cols <= 255: the exporter checks k_w) */
            const int32_t rows_per_flush = EK_AVGPOOL_DSP_MAX_TAPS / cols;
            const int8_t *win = input + ((int64_t)(iy0 + ky0) * p->in_w + (ix0 + kx0)) * c;
            for (int32_t ch = 0; ch < full; ch += 4) {
                int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                const int8_t *r = win + ch;
                for (int32_t done = 0; done < rows;) {
                    const int32_t n = ek_min_i32(rows - done, rows_per_flush);
                    int32_t h02 = 0, h13 = 0;   /* halfword sums {c, c+2}, {c+1, c+3} */
                    for (int32_t ky = 0; ky < n; ++ky, r += row) {
                        const int8_t *q = r;
                        for (int32_t kx = 0; kx < cols; ++kx, q += c) {
                            const int32_t v = ek_read_s8x4(q);
                            h02 = ek_sxtab16(h02, v);
                            h13 = ek_sxtab16_ror8(h13, v);
                        }
                    }
                    s0 += (int16_t)(uint16_t)((uint32_t)h02 & 0xFFFFu);
                    s2 += (int16_t)(uint16_t)((uint32_t)h02 >> 16);
                    s1 += (int16_t)(uint16_t)((uint32_t)h13 & 0xFFFFu);
                    s3 += (int16_t)(uint16_t)((uint32_t)h13 >> 16);
                    done += n;
                }
                out[ch] = ek_avgpool_dsp_out(s0, count, p->act_min, p->act_max);
                out[ch + 1] = ek_avgpool_dsp_out(s1, count, p->act_min, p->act_max);
                out[ch + 2] = ek_avgpool_dsp_out(s2, count, p->act_min, p->act_max);
                out[ch + 3] = ek_avgpool_dsp_out(s3, count, p->act_min, p->act_max);
            }
            for (int32_t ch = full; ch < c; ++ch) {
                int32_t acc = 0;
                const int8_t *r = win + ch;
                for (int32_t ky = 0; ky < rows; ++ky, r += row) {
                    for (int32_t kx = 0; kx < cols; ++kx) {
                        acc += r[kx * c];
                    }
                }
                out[ch] = ek_avgpool_dsp_out(acc, count, p->act_min, p->act_max);
            }
        }
    }
}
