/* ek_pad_s8.c - portable reference constant padding (see ek_pad.h). */
#include "ek_pad.h"

void ek_pad_s8(const ek_pad_params *p, const int8_t *input, int8_t *output)
{
    int64_t out_i = 0;
    for (int32_t d0 = 0; d0 < p->out_dims[0]; ++d0) {
        const int32_t i0 = d0 - p->before[0];
        for (int32_t d1 = 0; d1 < p->out_dims[1]; ++d1) {
            const int32_t i1 = d1 - p->before[1];
            for (int32_t d2 = 0; d2 < p->out_dims[2]; ++d2) {
                const int32_t i2 = d2 - p->before[2];
                const int outer_inside = i0 >= 0 && i0 < p->in_dims[0] &&
                                         i1 >= 0 && i1 < p->in_dims[1] &&
                                         i2 >= 0 && i2 < p->in_dims[2];
                const int64_t row = (((int64_t)i0 * p->in_dims[1] + i1) * p->in_dims[2] + i2) *
                                    p->in_dims[3];
                for (int32_t d3 = 0; d3 < p->out_dims[3]; ++d3) {
                    const int32_t i3 = d3 - p->before[3];
                    const int inside = outer_inside && i3 >= 0 && i3 < p->in_dims[3];
                    output[out_i++] = inside ? input[row + i3] : (int8_t)p->pad_value;
                }
            }
        }
    }
}
