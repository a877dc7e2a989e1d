/*
 * ek_concat.h - concatenation of int8 tensors along one axis.  TFLite requires
 * every input to share the output's scale and zero point for int8, so this is
 * a pure copy: the tensor is viewed as [outer][axis][inner] and each input
 * contributes sizes[k] * inner contiguous bytes per outer step.
 */
#ifndef EK_CONCAT_H
#define EK_CONCAT_H

#include "ek_common.h"

typedef struct {
    int32_t n_inputs;
    int32_t outer;                   /* product of dims before the axis */
    int32_t inner;                   /* product of dims after the axis */
    int32_t out_axis;                /* output size along the axis */
    const int32_t *sizes;            /* [n_inputs] sizes along the axis */
} ek_concat_params;

void ek_concat_s8(const ek_concat_params *p, const int8_t *const *inputs, int8_t *output);

#endif /* EK_CONCAT_H */
