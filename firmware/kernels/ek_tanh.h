/*
 * ek_tanh.h - hyperbolic tangent, int8 in, int8 out (TFLite TANH).
 *
 * TFLite's reference interpreter evaluates int8 TANH through a 256-entry
 * lookup table that its Prepare step fills with float arithmetic
 * (tflite::LUTPopulate with tanhf).  edgekit computes the same table at
 * export time (edgekit.ops.nonlinear.tanh_params), so this kernel is a plain
 * table lookup:
 *   output[i] = table[input[i] + 128]
 * Any output scale and zero point work (the converter emits 1/128 and 0).
 */
#ifndef EK_TANH_H
#define EK_TANH_H

#include "ek_common.h"

typedef struct {
    int32_t size;       /* number of elements, >= 0 */
    int8_t table[256];  /* table[q + 128] = quantized tanh of input value q */
} ek_tanh_params;

void ek_tanh_s8(const ek_tanh_params *p, const int8_t *input, int8_t *output);

#endif /* EK_TANH_H */
