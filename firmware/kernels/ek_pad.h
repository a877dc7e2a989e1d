/*
 * ek_pad.h - constant padding of an int8 tensor of up to 4 dimensions.
 * Output element (d0..d3) is input[d - before] when inside the input, else
 * pad_value (the zero point for PAD).
 */
#ifndef EK_PAD_H
#define EK_PAD_H

#include "ek_common.h"

typedef struct {
    int32_t in_dims[4];              /* padded on the left with 1s */
    int32_t out_dims[4];
    int32_t before[4];               /* padding before each dim */
    int32_t pad_value;               /* in [-128, 127] */
} ek_pad_params;

void ek_pad_s8(const ek_pad_params *p, const int8_t *input, int8_t *output);

#endif /* EK_PAD_H */
