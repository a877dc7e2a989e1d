/* ek_requant_s8.c - portable reference requantization (see ek_requant.h). */
#include "ek_requant.h"

void ek_requant_s8(const ek_requant_params *p, const int8_t *input, int8_t *output)
{
    for (int32_t i = 0; i < p->size; ++i) {
        const int32_t v = ek_requantize(input[i] - p->input_zero_point, p->mult, p->shift) +
                          p->output_offset;
        output[i] = (int8_t)ek_clamp_i32(v, p->act_min, p->act_max);
    }
}
