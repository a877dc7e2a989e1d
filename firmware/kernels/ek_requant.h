/*
 * ek_requant.h - elementwise change of scale and zero point with a clamp:
 *   out = clamp(output_offset + requantize(in - input_zero_point, mult, shift),
 *               act_min, act_max)
 * It implements TFLite's int8 QUANTIZE (int8 -> int8 requantize, clamp to the
 * int8 range) and the standalone RELU, RELU6, RELU_N1_TO_1 ops (clamp to the
 * activation's quantized range).
 */
#ifndef EK_REQUANT_H
#define EK_REQUANT_H

#include "ek_common.h"

typedef struct {
    int32_t size;                    /* number of elements */
    int32_t input_zero_point;
    int32_t output_offset;           /* output zero point */
    int32_t mult, shift;
    int32_t act_min, act_max;
} ek_requant_params;

void ek_requant_s8(const ek_requant_params *p, const int8_t *input, int8_t *output);

#endif /* EK_REQUANT_H */
