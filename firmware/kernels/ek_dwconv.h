/*
 * ek_dwconv.h - depthwise 2-D convolution, int8, per-channel weights.
 *
 * Layouts: input [in_h][in_w][in_c], filter [k_h][k_w][out_c] (TFLite
 * 1HWO with out_c = in_c * ch_mult), bias [out_c] int32 (may be NULL),
 * output [out_h][out_w][out_c].  Output channel o = i * ch_mult + m reads
 * input channel i.  Padding, requantization and clamping as in ek_conv2d.h.
 *
 * Variants (same signature, same results bit for bit; the exporter picks one
 * per layer with a readable predicate in edgekit/ops/dwconv.py):
 *
 *   ek_dwconv_s8          the portable reference: any kernel size, stride,
 *                         dilation, padding and channel multiplier.
 *   ek_dwconv_s8_3x3_dsp  k_h = k_w = 3, ch_mult = 1, dil_h = dil_w = 1, any
 *                         stride and padding (taps outside the input are
 *                         skipped, as in TFLite).  Four channels per step: one
 *                         32-bit load of 4 int8 per tap, SXTAB16 adds the input
 *                         offset while splitting them into halfword pairs
 *                         {c, c+2} and {c+1, c+3}, SMLABB/SMLATT multiply by the
 *                         weights.  Channel counts not divisible by 4 end with a
 *                         partial group.  Filter layout (built by
 *                         edgekit.ops.dwconv.pack_dw3x3_filter), int8 bytes of
 *                         little-endian int16 halves, ceil(C/4) * 72 bytes:
 *                           for each group g (channels c = 4g .. 4g+3, weights of
 *                           channels >= C are 0), for each tap t = ky*3 + kx:
 *                             word 0 = {w[t][c],   w[t][c+2]}   (low, high half)
 *                             word 1 = {w[t][c+1], w[t][c+3]}
 *                         Needs |bias[c]| + 9 * 255 * 128 < 2^30 (its short
 *                         requantization relies on it; the exporter checks).
 *                         Runs on any core: ek_dsp.h gives the DSP instructions
 *                         exact C twins off Armv7E-M.
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
void ek_dwconv_s8_3x3_dsp(const ek_dwconv_params *p, const int8_t *input,
                          const int8_t *filter, const int32_t *bias, int8_t *output);

#endif /* EK_DWCONV_H */
