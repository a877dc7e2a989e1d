/*
 * ek_lut.h - elementwise int8 -> int8 function by a 256-entry lookup table.
 *
 * TFLite's reference interpreter evaluates int8 LOGISTIC and TANH through a
 * 256-entry table that its Prepare step fills with float arithmetic
 * (tflite::LUTPopulate with 1 / (1 + expf(-x)) or tanhf(x), then rounding to
 * the output's scale and zero point).  edgekit computes the same table at
 * export time (edgekit.lower.nonlinear.logistic_params / tanh_params), so one
 * kernel serves every such op:
 *   output[i] = table[input[i] + 128]
 */
#ifndef EK_LUT_H
#define EK_LUT_H

#include "ek_common.h"

typedef struct {
    int32_t size;       /* number of elements, >= 0 */
    int8_t table[256];  /* table[q + 128] = quantized f(dequantized q) */
} ek_lut_params;

void ek_lut_s8(const ek_lut_params *p, const int8_t *input, int8_t *output);

#endif /* EK_LUT_H */
