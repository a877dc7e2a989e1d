/*
 * ek_copy.h - copy an int8 tensor.  Used where a model's output is only a
 * reshape of its input (the reshape itself costs nothing elsewhere: edgekit
 * aliases reshaped tensors in the arena).
 */
#ifndef EK_COPY_H
#define EK_COPY_H

#include "ek_common.h"

typedef struct {
    int32_t size;                    /* bytes */
} ek_copy_params;

void ek_copy_s8(const ek_copy_params *p, const int8_t *input, int8_t *output);

#endif /* EK_COPY_H */
