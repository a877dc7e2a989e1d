/* ek_fc_s8.c - portable reference fully connected layer (see ek_fc.h). */
#include "ek_fc.h"

void ek_fc_s8(const ek_fc_params *p, const int8_t *input, const int8_t *weights,
              const int32_t *bias, int8_t *output)
{
    for (int32_t r = 0; r < p->rows; ++r) {
        const int8_t *in_r = input + (int64_t)r * p->in_n;
        for (int32_t o = 0; o < p->out_n; ++o) {
            const int8_t *w_o = weights + (int64_t)o * p->in_n;
            int32_t acc = bias ? bias[o] : 0;
            for (int32_t i = 0; i < p->in_n; ++i) {
                acc += (in_r[i] + p->input_offset) * (w_o[i] + p->weight_offset);
            }
            acc = (p->double_round ? ek_requantize(acc, p->mult[o], p->shift[o])
                                   : ek_requantize_1r(acc, p->mult[o], p->shift[o])) + p->output_offset;
            output[(int64_t)r * p->out_n + o] = (int8_t)ek_clamp_i32(acc, p->act_min, p->act_max);
        }
    }
}
