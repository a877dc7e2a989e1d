/* ek_conv2d_s8_dsp.c - any 2-D convolution: im2col of two output pixels + the
 * pointwise GEMM (see ek_conv2d.h). */
#include <string.h>

#include "ek_conv2d.h"

/* Patches of two output pixels, k_h*k_w*in_c int8 values each.  Static (not
 * on the stack, which is small on the boards): the kernel is not reentrant. */
static int8_t ek_conv2d_dsp_cols[2 * EK_CONV2D_DSP_MAX_PATCH];

/* The patch of output pixel (y, x) as one row of k_h*k_w*in_c values in filter
 * order; taps in the padding get the input zero point (-input_offset), which
 * the folded bias turns into a zero contribution, exactly like TFLite. */
static void ek_conv2d_im2col(const ek_conv2d_params *p, const int8_t *input, int32_t y, int32_t x,
                             int8_t *col)
{
    const int8_t pad = (int8_t)(-p->input_offset);
    const int32_t in_c = p->in_c;
    const int32_t row_len = p->k_w * in_c;
    const int32_t iy0 = y * p->stride_h - p->pad_top;
    const int32_t ix0 = x * p->stride_w - p->pad_left;
    const int32_t ix_last = ix0 + (p->k_w - 1) * p->dil_w;
    const int contiguous = p->dil_w == 1 && ix0 >= 0 && ix_last < p->in_w;
    for (int32_t ky = 0; ky < p->k_h; ++ky, col += row_len) {
        const int32_t iy = iy0 + ky * p->dil_h;
        if (iy < 0 || iy >= p->in_h) {
            memset(col, pad, (size_t)row_len);
            continue;
        }
        const int8_t *in_row = input + iy * p->in_w * in_c;
        if (contiguous) {
            memcpy(col, in_row + ix0 * in_c, (size_t)row_len);
            continue;
        }
        for (int32_t kx = 0; kx < p->k_w; ++kx) {
            const int32_t ix = ix0 + kx * p->dil_w;
            if (ix < 0 || ix >= p->in_w) {
                memset(col + kx * in_c, pad, (size_t)in_c);
            } else {
                memcpy(col + kx * in_c, in_row + ix * in_c, (size_t)in_c);
            }
        }
    }
}

void ek_conv2d_s8_dsp(const ek_conv2d_params *p, const int8_t *input,
                      const int8_t *filter, const int32_t *bias, int8_t *output)
{
    const int32_t patch = p->k_h * p->k_w * p->in_c;
    /* The GEMM sees the patches as pixels of a 1x1 convolution with patch channels. */
    ek_conv2d_params gemm = *p;
    gemm.in_c = patch;
    gemm.out_h = 1;
    const int32_t pixels = p->out_h * p->out_w;
    for (int32_t px = 0; px < pixels; px += 2) {
        const int32_t count = pixels - px >= 2 ? 2 : 1;
        for (int32_t i = 0; i < count; ++i) {
            const int32_t y = (px + i) / p->out_w, x = (px + i) % p->out_w;
            ek_conv2d_im2col(p, input, y, x, ek_conv2d_dsp_cols + i * patch);
        }
        gemm.out_w = count;
        ek_conv2d_s8_1x1_dsp(&gemm, ek_conv2d_dsp_cols, filter, bias, output + px * p->out_c);
    }
}
