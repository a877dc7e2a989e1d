/* ek_add_s8.c - portable reference int8 addition (see ek_add.h). */
#include "ek_add.h"

static int8_t add_one(const ek_add_params *p, int32_t a, int32_t b)
{
    const int32_t a_shifted = ek_shl_wrap(a + p->input1_offset, p->left_shift);
    const int32_t b_shifted = ek_shl_wrap(b + p->input2_offset, p->left_shift);
    const int32_t a_scaled = ek_requantize_lt1(a_shifted, p->input1_mult, p->input1_shift);
    const int32_t b_scaled = ek_requantize_lt1(b_shifted, p->input2_mult, p->input2_shift);
    const int32_t sum = ek_requantize_lt1(a_scaled + b_scaled, p->output_mult, p->output_shift) +
                        p->output_offset;
    return (int8_t)ek_clamp_i32(sum, p->act_min, p->act_max);
}

void ek_add_s8(const ek_add_params *p, const int8_t *input1, const int8_t *input2,
               int8_t *output)
{
    int64_t out_i = 0;
    for (int32_t d0 = 0; d0 < p->out_dims[0]; ++d0) {
        for (int32_t d1 = 0; d1 < p->out_dims[1]; ++d1) {
            for (int32_t d2 = 0; d2 < p->out_dims[2]; ++d2) {
                const int64_t a_base = (int64_t)d0 * p->in1_strides[0] +
                                       (int64_t)d1 * p->in1_strides[1] +
                                       (int64_t)d2 * p->in1_strides[2];
                const int64_t b_base = (int64_t)d0 * p->in2_strides[0] +
                                       (int64_t)d1 * p->in2_strides[1] +
                                       (int64_t)d2 * p->in2_strides[2];
                for (int32_t d3 = 0; d3 < p->out_dims[3]; ++d3) {
                    output[out_i++] = add_one(p, input1[a_base + (int64_t)d3 * p->in1_strides[3]],
                                              input2[b_base + (int64_t)d3 * p->in2_strides[3]]);
                }
            }
        }
    }
}
