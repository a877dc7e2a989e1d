/* ek_concat_s8.c - portable reference concatenation (see ek_concat.h). */
#include "ek_concat.h"

void ek_concat_s8(const ek_concat_params *p, const int8_t *const *inputs, int8_t *output)
{
    for (int32_t o = 0; o < p->outer; ++o) {
        int8_t *dst = output + (int64_t)o * p->out_axis * p->inner;
        for (int32_t k = 0; k < p->n_inputs; ++k) {
            const int64_t n = (int64_t)p->sizes[k] * p->inner;
            const int8_t *src = inputs[k] + (int64_t)o * n;
            for (int64_t j = 0; j < n; ++j) {
                dst[j] = src[j];
            }
            dst += n;
        }
    }
}
