/*
 * ek_dwconv.h - depthwise 2-D convolution, int8, per-channel weights.
 *
 * Layouts: input [in_h][in_w][in_c], filter [k_h][k_w][out_c] (TFLite
 * 1HWO with out_c = in_c * ch_mult), bias [out_c] int32 (may be NULL),
 * output [out_h][out_w][out_c].  Output channel o = i * ch_mult + m reads
 * input channel i.  Padding, requantization and clamping as in ek_conv2d.h.
 */
#ifndef EK_DWCONV_H
#define EK_DWCONV_H

#include "ek_common.h"

typedef struct {
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;     /* out_c = in_c * ch_mult */
    int32_t ch_mult;                 /* depth multiplier, >= 1 */
    int32_t k_h, k_w;
    int32_t stride_h, stride_w;
    int32_t dil_h, dil_w;
    int32_t pad_top, pad_left;
    int32_t input_offset;            /* -input zero point */
    int32_t output_offset;           /* output zero point */
    int32_t act_min, act_max;
    const int32_t *mult;             /* [out_c] */
    const int32_t *shift;            /* [out_c] */
} ek_dwconv_params;

void ek_dwconv_s8(const ek_dwconv_params *p, const int8_t *input,
                  const int8_t *filter, const int32_t *bias, int8_t *output);

#endif /* EK_DWCONV_H */
