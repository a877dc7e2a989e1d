/* ek_lut_s8.c - int8 elementwise function by table lookup (see ek_lut.h). */
#include "ek_lut.h"

void ek_lut_s8(const ek_lut_params *p, const int8_t *input, int8_t *output)
{
    for (int32_t i = 0; i < p->size; ++i) {
        output[i] = p->table[input[i] + 128];
    }
}
