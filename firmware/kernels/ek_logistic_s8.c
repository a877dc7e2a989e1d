/* ek_logistic_s8.c - int8 logistic by table lookup (see ek_logistic.h). */
#include "ek_logistic.h"

void ek_logistic_s8(const ek_logistic_params *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = p->table[input[i] + 128];
    }
}
