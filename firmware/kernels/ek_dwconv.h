/*
 * ek_dwconv.h - depthwise 2-D convolution, int8, per-channel weights.
 *
 * Layouts: input [in_h][in_w][in_c], filter [k_h][k_w][out_c] (TFLite
 * 1HWO with out_c = in_c * ch_mult), bias [out_c] int32 (may be NULL),
 * output [out_h][out_w][out_c].  Output channel o = i * ch_mult + m reads
 * input channel i.  Padding, requantization and clamping as in ek_conv2d.h.
 *
 * Variants (same signature, same results bit for bit; the exporter picks one
 * per layer with a readable predicate in edgekit/lower/dwconv.py):
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
 *                         edgekit.lower.dwconv.pack_dw3x3_filter), int8 bytes of
 *                         little-endian int16 halves, ceil(C/4) * 72 bytes:
 *                           for each group g (channels c = 4g .. 4g+3, weights of
 *                           channels >= C are 0), for each tap t = ky*3 + kx:
 *                             word 0 = {w[t][c],   w[t][c+2]}   (low, high half)
 *                             word 1 = {w[t][c+1], w[t][c+3]}
 *                         Needs |bias[c]| + 9 * 255 * 128 < 2^30 (its short
 *                         requantization relies on it; the exporter checks).
 *                         Runs on any core: ek_dsp.h gives the DSP instructions
 *                         exact C twins off Armv7E-M.
 *   ek_dwconv_s8_3x3_fold_dsp  as ek_dwconv_s8_3x3_dsp, and every shift in
 *                         [-23, -2] (right shifts only; the exporter checks), any
 *                         bias.  The input offset is folded into the bias, so a tap
 *                         is a plain SXTB16 split; taps outside the image read a
 *                         row of the input zero point (adding nothing), so border
 *                         pixels take the interior path.  Arrays (built by
 *                         edgekit.lower.dwconv.pack_dw3x3_fold); p->mult and
 *                         p->shift are not read (the exporter sets them NULL):
 *                           filter: pack_dw3x3_filter's ceil(C/4) * 72 bytes, then
 *                             ceil(C/4) * 4 bytes equal to -input_offset;
 *                           bias: per group of 4 channels 16 int32: the 4 folded
 *                             biases bias[c] + input_offset * sum_t w[t][c] (mod
 *                             2^32), the 4 multipliers M, the 4 words
 *                             2^(R-2) + output_offset * 2^(R-1) and the 4 R - 1,
 *                             R = -shift (channels past C: zeros, R = 2).  With
 *                             P = 2^30 + 2^(30+R) + output_offset * 2^(31+R), the
 *                             requantization (a*M + P - [a<0]*2^31) >> (31+R) is one
 *                             multiply-accumulate and equals ek_requantize +
 *                             output_offset (proof in the .c); the common clamp
 *                             [-128, 127] is one SSAT.
 */
#ifndef EK_DWCONV_H
#define EK_DWCONV_H

#include "ek_common.h"

/* Shifts ek_dwconv_s8_3x3_fold_dsp's one-multiply requantization takes (right shifts of 2..23
 * bits; the exporter, edgekit/lower/packing.py, reads these and checks every channel). */
#define EK_DW_FOLD_SHIFT_MIN (-23)
#define EK_DW_FOLD_SHIFT_MAX (-2)

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
void ek_dwconv_s8_3x3_fold_dsp(const ek_dwconv_params *p, const int8_t *input,
                               const int8_t *filter, const int32_t *bias, int8_t *output);

#endif /* EK_DWCONV_H */
