/* ek_conv2d_s8_dsp.c - any 2-D convolution: im2col + the pointwise GEMM (see ek_conv2d.h).
 * Pair form: the patches of two output pixels as int8 rows, then ek_conv2d_s8_1x1_dsp on them.
 * Folded form: the patches of four output pixels split straight into the 4-pixel buffer, then
 * ek_conv2d_fold_gemm_dsp.  Both build their patches in the caller's scratch (ek_conv2d.h). */
#include <stddef.h>
#include <string.h>

#include "ek_conv2d.h"
#include "ek_dot_s8_dsp.h"

/* n int8 from src to dst, or n copies of v to dst: words, then the n % 4 left (patch rows are a
 * few bytes long, too short for a library call to pay; no loop for the tail, so the compiler
 * does not turn it back into one). */
static inline void ek_im2col_copy(int8_t *dst, const int8_t *src, int32_t n)
{
    for (; n >= 4; n -= 4, src += 4, dst += 4) {
        uint32_t v;
        memcpy(&v, src, 4);
        memcpy(dst, &v, 4);
    }
    if (n & 2) {
        uint16_t h;
        memcpy(&h, src, 2);
        memcpy(dst, &h, 2);
        src += 2;
        dst += 2;
    }
    if (n & 1) {
        *dst = *src;
    }
}

static inline void ek_im2col_fill(int8_t *dst, int8_t v, int32_t n)
{
    const uint32_t w = (uint32_t)(uint8_t)v * 0x01010101u;
    for (; n >= 4; n -= 4, dst += 4) {
        memcpy(dst, &w, 4);
    }
    if (n & 2) {
        memcpy(dst, &w, 2);
        dst += 2;
    }
    if (n & 1) {
        *dst = v;
    }
}

/* The taps [lo, hi) of a filter row that fall inside the input's width, for dil_w = 1 (they are
 * then one contiguous run of the input row); x0 = the first tap's input column. */
static inline void ek_conv2d_inside_taps(const ek_conv2d_params *p, int32_t x0, int32_t *lo, int32_t *hi)
{
    const int32_t l = x0 < 0 ? -x0 : 0;
    const int32_t h = p->in_w - x0 < p->k_w ? p->in_w - x0 : p->k_w;
    *lo = l < p->k_w ? l : p->k_w;
    *hi = h > *lo ? h : *lo;
}

#if defined(__GNUC__)
#define EK_IM2COL_NOINLINE __attribute__((noinline))
#else
#define EK_IM2COL_NOINLINE
#endif

/* ek_conv2d_im2col for a window that crosses the left or right edge, or is dilated. */
static EK_IM2COL_NOINLINE void ek_conv2d_im2col_edge(const ek_conv2d_params *p, const int8_t *input,
                                                     int32_t iy0, int32_t ix0, int8_t *col)
{
    const int8_t pad = (int8_t)(-p->input_offset);
    const int32_t in_c = p->in_c;
    const int32_t row_len = p->k_w * in_c;
    int32_t lo, hi;            /* dil_w = 1: bytes [lo, hi) of each row come from the input */
    ek_conv2d_inside_taps(p, ix0, &lo, &hi);
    lo *= in_c;
    hi *= in_c;
    for (int32_t ky = 0; ky < p->k_h; ++ky, col += row_len) {
        const int32_t iy = iy0 + ky * p->dil_h;
        if (iy < 0 || iy >= p->in_h) {
            ek_im2col_fill(col, pad, row_len);
            continue;
        }
        const int8_t *in_row = input + iy * p->in_w * in_c;
        if (p->dil_w == 1) {
            ek_im2col_fill(col, pad, lo);
            ek_im2col_copy(col + lo, in_row + ix0 * in_c + lo, hi - lo);
            ek_im2col_fill(col + hi, pad, row_len - hi);
            continue;
        }
        for (int32_t kx = 0; kx < p->k_w; ++kx) {
            const int32_t ix = ix0 + kx * p->dil_w;
            if (ix < 0 || ix >= p->in_w) {
                ek_im2col_fill(col + kx * in_c, pad, in_c);
            } else {
                ek_im2col_copy(col + kx * in_c, in_row + ix * in_c, in_c);
            }
        }
    }
}

/* The patch of output pixel (y, x) as one row of k_h*k_w*in_c values in filter
 * order; taps in the padding get the input zero point (-input_offset), which
 * the folded bias turns into a zero contribution, exactly like TFLite. */
static void ek_conv2d_im2col(const ek_conv2d_params *p, const int8_t *input, int32_t y, int32_t x,
                             int8_t *col)
{
    const int32_t row_len = p->k_w * p->in_c;
    const int32_t iy0 = y * p->stride_h - p->pad_top;
    const int32_t ix0 = x * p->stride_w - p->pad_left;
    if (p->dil_w != 1 || ix0 < 0 || ix0 + p->k_w > p->in_w) {
        ek_conv2d_im2col_edge(p, input, iy0, ix0, col);
        return;
    }
    const int8_t pad = (int8_t)(-p->input_offset);
    for (int32_t ky = 0; ky < p->k_h; ++ky, col += row_len) {
        const int32_t iy = iy0 + ky * p->dil_h;
        if (iy < 0 || iy >= p->in_h) {
            ek_im2col_fill(col, pad, row_len);
        } else {
            ek_im2col_copy(col, input + (iy * p->in_w + ix0) * p->in_c, row_len);
        }
    }
}

static void ek_conv2d_dsp_pairs(const ek_conv2d_params *p, const int8_t *input,
                                const int8_t *filter, const int32_t *bias, int8_t *output, int8_t *cols)
{
    const int32_t patch = p->k_h * p->k_w * p->in_c;
    /* The GEMM sees the patches as pixels of a 1x1 convolution with patch channels. */
    ek_conv2d_params gemm = *p;
    gemm.in_c = patch;
    gemm.out_h = 1;
    gemm.k_h = gemm.k_w = 1;
    const int32_t pixels = p->out_h * p->out_w;
    for (int32_t px = 0; px < pixels; px += 2) {
        const int32_t count = pixels - px >= 2 ? 2 : 1;
        for (int32_t i = 0; i < count; ++i) {
            const int32_t y = (px + i) / p->out_w, x = (px + i) % p->out_w;
            ek_conv2d_im2col(p, input, y, x, cols + i * patch);
        }
        gemm.out_w = count;
        ek_conv2d_s8_1x1_dsp(&gemm, cols, filter, bias, output + px * p->out_c, NULL);
    }
}

/* The patch of output pixel (y, x) split into its slot of the 4-pixel buffer straight from
 * the input, for in_c % 4 == 0 (every tap is whole groups of four; padding taps get the split
 * input zero point `pad`), or for a pixel whose window lies inside the input with dil_w = 1
 * and k_w * in_c % 4 == 0 (every filter row is whole groups of one run of the input). */
static void ek_conv2d_fold_patch(const ek_conv2d_params *p, const int8_t *input, int32_t y, int32_t x,
                                 int32_t *dst, int32_t pad)
{
    const int32_t in_c = p->in_c;
    const int32_t row_len = p->k_w * in_c;
    const int32_t iy0 = y * p->stride_h - p->pad_top;
    const int32_t ix0 = x * p->stride_w - p->pad_left;
    const int32_t ix_last = ix0 + (p->k_w - 1) * p->dil_w;
    const int contiguous = p->dil_w == 1 && ix0 >= 0 && ix_last < p->in_w;
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + ky * p->dil_h;
        if (iy < 0 || iy >= p->in_h) {
            dst = ek_fold_fill(dst, pad, pad, row_len >> 2);
            continue;
        }
        const int8_t *in_row = input + iy * p->in_w * in_c;
        if (contiguous) {
            dst = ek_fold_split(dst, in_row + ix0 * in_c, row_len);
            continue;
        }
        for (int32_t kx = 0; kx < p->k_w; ++kx) {
            const int32_t ix = ix0 + kx * p->dil_w;
            dst = ix < 0 || ix >= p->in_w ? ek_fold_fill(dst, pad, pad, in_c >> 2)
                                          : ek_fold_split(dst, in_row + ix * in_c, in_c);
        }
    }
}

static void ek_conv2d_dsp_fold(const ek_conv2d_params *p, const int8_t *input,
                               const int8_t *filter, const int32_t *block, int8_t *output, int32_t *buf)
{
    const int32_t patch = p->k_h * p->k_w * p->in_c;
    const int32_t groups = (patch + 3) >> 2;
    const int32_t row_len = p->k_w * p->in_c;
    /* whole groups per tap: every patch split straight from the input */
    const int direct = (p->in_c & 3) == 0;
    /* whole groups per filter row: the patches of pixels whose window lies inside the input
     * split straight from it too (dil_w = 1: each row one run of the input) */
    const int direct_inside = (row_len & 3) == 0 && p->dil_w == 1;
    const int32_t last_dy = (p->k_h - 1) * p->dil_h;
    /* any other patch is assembled as int8 past the four split ones, then split */
    int8_t *col = (int8_t *)(buf + EK_FOLD_GROUP_WORDS * groups);
    const int8_t z = (int8_t)(-p->input_offset);
    const int32_t pad = ek_dbl16(ek_sxtb16((int32_t)((uint32_t)(uint8_t)z * 0x01010101u)));
    const int32_t pixels = p->out_h * p->out_w;
    for (int32_t px = 0; px < pixels; px += 4) {
        const int32_t count = pixels - px >= 4 ? 4 : pixels - px;
        for (int32_t i = 0; i < count; ++i) {
            const int32_t y = (px + i) / p->out_w, x = (px + i) % p->out_w;
            const int32_t iy0 = y * p->stride_h - p->pad_top, ix0 = x * p->stride_w - p->pad_left;
            if (direct || (direct_inside && iy0 >= 0 && iy0 + last_dy < p->in_h && ix0 >= 0 &&
                           ix0 + p->k_w <= p->in_w)) {
                ek_conv2d_fold_patch(p, input, y, x, buf + 2 * i, pad);
            } else {
                ek_conv2d_im2col(p, input, y, x, col);
                ek_fold_split(buf + 2 * i, col, patch);
            }
        }
        ek_conv2d_fold_gemm_dsp(p, buf, count, filter, block, output + px * p->out_c);
    }
}

void ek_conv2d_s8_dsp(const ek_conv2d_params *p, const int8_t *input,
                      const int8_t *filter, const int32_t *bias, int8_t *output, int8_t *scratch)
{
    if (p->mult == NULL) {
        ek_conv2d_dsp_fold(p, input, filter, bias, output, (int32_t *)(void *)scratch);
    } else {
        ek_conv2d_dsp_pairs(p, input, filter, bias, output, scratch);
    }
}
