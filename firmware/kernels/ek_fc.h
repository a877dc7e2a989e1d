/*
 * ek_fc.h - fully connected layer, int8.
 *
 * Layouts: input [rows][in_n], weights [out_n][in_n], bias [out_n] int32
 * (may be NULL), output [rows][out_n].
 * out[r][o] = clamp(output_offset + requantize_1r(bias[o] + sum_i
 *     (in[r][i] + input_offset) * (w[o][i] + weight_offset), mult[o], shift[o]),
 *     act_min, act_max)
 * requantize_1r is single rounding (ek_requantize_1r in ek_common.h), as LiteRT's
 * reference kernel rounds; with double_round set it is ek_requantize (double
 * rounding), as TFLite Micro's reference kernel rounds (edgekit matches TFLM on
 * models TFLM is the reference for: those with INT4 weights).
 * Per-tensor quantized layers repeat the same multiplier for every o.
 *
 * Variants, same signature, same results:
 *   ek_fc_s8       portable reference, the spec.
 *   ek_fc_s8_dsp   weight_offset must be 0 (symmetric weights, as TFLite int8)
 *                  and `bias` is the FOLDED bias (never NULL), computed at export:
 *                      bias_folded[o] = bias[o] + input_offset * sum_i w[o][i]
 *                  (int32, wrapping).  One batch row: four output rows per pass
 *                  (one input load and split shared by four weight rows); two
 *                  batch rows x two output rows per pass when rows >= 2; SMLAD on
 *                  SXTB16-split words (ek_dot_s8_dsp.h), then the same single
 *                  rounding, prepared once for the layer when per_tensor is set.  Armv7E-M
 *                  DSP on Cortex-M4/M7, exact C twins elsewhere (ek_dsp.h).
 */
#ifndef EK_FC_H
#define EK_FC_H

#include "ek_common.h"

typedef struct {
    int32_t rows;                    /* batch rows (product of leading dims) */
    int32_t in_n, out_n;
    int32_t input_offset;            /* -input zero point */
    int32_t weight_offset;           /* -weight zero point (0 for symmetric int8) */
    int32_t output_offset;           /* output zero point */
    int32_t act_min, act_max;
    const int32_t *mult;             /* [out_n] */
    const int32_t *shift;            /* [out_n] */
    int32_t per_tensor;              /* 1: mult[o], shift[o] are the same for every o
                                        (ek_fc_s8_dsp then prepares mult[0], shift[0] once);
                                        0: per-channel.  ek_fc_s8 ignores it. */
    int32_t double_round;            /* 1: ek_requantize (TFLM), 0: ek_requantize_1r (LiteRT) */
} ek_fc_params;

void ek_fc_s8(const ek_fc_params *p, const int8_t *input, const int8_t *weights,
              const int32_t *bias, int8_t *output);
void ek_fc_s8_dsp(const ek_fc_params *p, const int8_t *input, const int8_t *weights,
                  const int32_t *bias, int8_t *output);

#endif /* EK_FC_H */
