/* ek_tanh_s8.c - int8 tanh by table lookup (see ek_tanh.h). */
#include "ek_tanh.h"

void ek_tanh_s8(const ek_tanh_params *p, const int8_t *input, int8_t *output)
{
    int32_t i;
    for (i = 0; i < p->size; ++i) {
        output[i] = p->table[input[i] + 128];
    }
}
