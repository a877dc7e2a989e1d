/*
 * ek_add.h - elementwise addition of two int8 tensors with their own scales,
 * broadcasting over up to 4 dimensions (a stride of 0 repeats a dimension).
 *
 * With a_i = (in_i + input_offset_i) << left_shift:
 *   s_i = requantize_lt1(a_i, mult_i, shift_i)           (i = 1, 2)
 *   out = clamp(requantize_lt1(s_1 + s_2, out_mult, out_shift) + output_offset,
 *               act_min, act_max)
 * which is TFLite's int8 ADD (left_shift 20, multipliers below one).
 */
#ifndef EK_ADD_H
#define EK_ADD_H

#include "ek_common.h"

typedef struct {
    int32_t out_dims[4];             /* output shape, padded on the left with 1s */
    int32_t in1_strides[4];          /* element strides of input 1 per output dim, 0 = broadcast */
    int32_t in2_strides[4];
    int32_t input1_offset, input2_offset;   /* -zero points */
    int32_t output_offset;
    int32_t left_shift;
    int32_t input1_mult, input1_shift;      /* shift <= 0 */
    int32_t input2_mult, input2_shift;
    int32_t output_mult, output_shift;
    int32_t act_min, act_max;
} ek_add_params;

void ek_add_s8(const ek_add_params *p, const int8_t *input1, const int8_t *input2,
               int8_t *output);

#endif /* EK_ADD_H */
