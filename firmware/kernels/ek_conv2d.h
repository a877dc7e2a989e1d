/*
 * ek_conv2d.h - 2-D convolution, int8 activations, int8 per-channel weights.
 *
 * Layouts: input [in_h][in_w][in_c], filter [out_c][k_h][k_w][in_c] (TFLite
 * OHWI), bias [out_c] int32 (may be NULL), output [out_h][out_w][out_c].
 *
 * out[y][x][o] = clamp(output_offset + requantize(bias[o] +
 *     sum_{ky,kx,i} (in[iy][ix][i] + input_offset) * w[o][ky][kx][i],
 *     mult[o], shift[o]), act_min, act_max)
 * with iy = y*stride_h - pad_top + ky*dil_h (likewise ix); taps outside the
 * input contribute nothing (TFLite's implicit zero-point padding).
 *
 * Variants, all with the same signature and the same results:
 *
 *   ek_conv2d_s8            portable reference (any shape), the spec.
 *   ek_conv2d_s8_1x1_dsp    pointwise: 1x1 filter, stride 1, no padding (dilation
 *                           irrelevant), so the input is a [pixels][in_c] matrix and
 *                           the convolution a GEMM with the filter [out_c][in_c].
 *                           Two pixels x two output channels per pass, SMLAD on
 *                           SXTB16-split words (ek_dot_s8_dsp.h).
 *   ek_conv2d_s8_dsp        any filter, stride, padding, dilation with
 *                           k_h*k_w*in_c <= EK_CONV2D_DSP_MAX_PATCH: copies the
 *                           patches of two output pixels (im2col, int8, filter
 *                           order) into a static buffer of 2*EK_CONV2D_DSP_MAX_PATCH
 *                           bytes and runs the pointwise GEMM on them.  Padding taps
 *                           hold the input zero point.  Not reentrant.
 *
 * The _dsp variants take the filter in the same OHWI layout, but `bias` must be
 * the FOLDED bias (never NULL), computed at export:
 *     bias_folded[o] = bias[o] + input_offset * sum_{ky,kx,i} w[o][ky][kx][i]
 * (int32, wrapping), so their inner loops add in*w only.  input_offset is still
 * read (the padding value of ek_conv2d_s8_dsp).  They use Armv7E-M DSP
 * instructions on Cortex-M4/M7 and their exact C twins elsewhere (ek_dsp.h).
 */
#ifndef EK_CONV2D_H
#define EK_CONV2D_H

#include "ek_common.h"

typedef struct {
    int32_t in_h, in_w, in_c;        /* input dims */
    int32_t out_h, out_w, out_c;     /* output dims */
    int32_t k_h, k_w;                /* filter size */
    int32_t stride_h, stride_w;      /* >= 1 */
    int32_t dil_h, dil_w;            /* >= 1 */
    int32_t pad_top, pad_left;       /* implicit padding before the first row/column */
    int32_t input_offset;            /* -input zero point, in [-127, 128] */
    int32_t output_offset;           /* output zero point, in [-128, 127] */
    int32_t act_min, act_max;        /* fused activation clamp, within [-128, 127] */
    const int32_t *mult;             /* [out_c] Q0.31 multipliers */
    const int32_t *shift;            /* [out_c] exponents, positive = left */
} ek_conv2d_params;

/* Largest patch (k_h*k_w*in_c) ek_conv2d_s8_dsp accepts; the exporter
 * (edgekit/ops/conv.py, CONV_DSP_MAX_PATCH) uses the same value. */
#ifndef EK_CONV2D_DSP_MAX_PATCH
#define EK_CONV2D_DSP_MAX_PATCH 1024
#endif

void ek_conv2d_s8(const ek_conv2d_params *p, const int8_t *input,
                  const int8_t *filter, const int32_t *bias, int8_t *output);
void ek_conv2d_s8_1x1_dsp(const ek_conv2d_params *p, const int8_t *input,
                          const int8_t *filter, const int32_t *bias, int8_t *output);
void ek_conv2d_s8_dsp(const ek_conv2d_params *p, const int8_t *input,
                      const int8_t *filter, const int32_t *bias, int8_t *output);

#endif /* EK_CONV2D_H */
