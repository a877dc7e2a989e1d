/*
 * ek_logistic.h - logistic (sigmoid), int8 in, int8 out (TFLite LOGISTIC).
 *
 * TFLite's reference interpreter evaluates int8 LOGISTIC through a 256-entry
 * lookup table that its Prepare step fills with float arithmetic
 * (tflite::LUTPopulate with 1 / (1 + expf(-x))).  edgekit computes the same
 * table at export time (edgekit.ops.nonlinear.logistic_params), so this
 * kernel is a plain table lookup:
 *   output[i] = table[input[i] + 128]
 * The output scale is 1/256 (TFLite rejects any other).
 */
#ifndef EK_LOGISTIC_H
#define EK_LOGISTIC_H

#include "ek_common.h"

typedef struct {
    int32_t size;       /* number of elements, >= 0 */
    int8_t table[256];  /* table[q + 128] = quantized logistic of input value q */
} ek_logistic_params;

void ek_logistic_s8(const ek_logistic_params *p, const int8_t *input, int8_t *output);

#endif /* EK_LOGISTIC_H */
