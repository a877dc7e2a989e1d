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

void ek_conv2d_s8(const ek_conv2d_params *p, const int8_t *input,
                  const int8_t *filter, const int32_t *bias, int8_t *output);

#endif /* EK_CONV2D_H */
