/*
 * ek_softmax.h - softmax over the last dimension, int8 in, int8 out
 * (TFLite SOFTMAX, reference kernel: reference_ops::Softmax).
 *
 * Layout: input and output [rows][depth].  The output is quantized with
 * scale 1/256 and zero point -128 (TFLite rejects anything else).
 *
 * Per row, with m the row maximum and d = x - m <= 0:
 *   d >= diff_min:  e = exp(SRDHM(d * 2^input_left_shift, input_multiplier)
 *                       read as Q5.26), in Q0.31 (gemmlowp exp_on_negative_values)
 *   sum = sum of e rescaled to Q12.19
 *   out = RDivPOT(SRDHM(reciprocal(sum), e), bits_over_unit + 23) - 128,
 *         clamped to [-128, 127];  d < diff_min gives -128.
 * input_multiplier / input_left_shift encode beta * input_scale * 2^26 and
 * diff_min = -floor(31 * 2^26 / 2^input_left_shift), all computed by
 * edgekit.lower.nonlinear.softmax_params.
 *
 * Beyond the reference: when a row's sum of exponentials reaches 512 (only
 * possible for depth >= 512 with many values near the row maximum) TFLite's
 * TFLITE_CHECK(exponent <= 31) aborts the interpreter; this kernel instead
 * continues the same rounding shift in 64 bits (outputs round to -128/-127),
 * and the sum saturates instead of wrapping.
 */
#ifndef EK_SOFTMAX_H
#define EK_SOFTMAX_H

#include "ek_common.h"

typedef struct {
    int32_t rows;             /* product of all dimensions but the last, >= 1 */
    int32_t depth;            /* last dimension, >= 1 */
    int32_t input_multiplier; /* Q0.31 in [2^30, 2^31) */
    int32_t input_left_shift; /* 0..31 */
    int32_t diff_min;         /* <= 0; differences below it contribute exp = 0 */
} ek_softmax_params;

void ek_softmax_s8(const ek_softmax_params *p, const int8_t *input, int8_t *output);

#endif /* EK_SOFTMAX_H */
