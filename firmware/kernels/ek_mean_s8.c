/* ek_mean_s8.c - portable reference int8 mean (see ek_mean.h). */
#include "ek_mean.h"
#include "ek_fixedpoint.h"

/* Advance the multi-index idx over the dimensions selected by mask, last
 * dimension fastest, keeping *offset = sum of idx[d] * stride[d] up to date.
 * Returns 0 once every combination has been visited (idx back to all 0). */
static int ek_mean_next(const ek_mean_params *p, const int64_t *stride, int32_t mask,
                        int32_t *idx, int64_t *offset)
{
    int32_t d;
    for (d = p->ndims - 1; d >= 0; --d) {
        if ((mask >> d) & 1) {
            if (++idx[d] < p->dims[d]) {
                *offset += stride[d];
                return 1;
            }
            idx[d] = 0;
            *offset -= (int64_t)(p->dims[d] - 1) * stride[d];
        }
    }
    return 0;
}

void ek_mean_s8(const ek_mean_params *p, const int8_t *input, int8_t *output)
{
    const int32_t keep_mask = (int32_t)((UINT32_C(1) << p->ndims) - 1) & ~p->reduce_mask;
    int64_t stride[EK_MEAN_MAX_DIMS];
    int32_t keep_idx[EK_MEAN_MAX_DIMS], red_idx[EK_MEAN_MAX_DIMS];
    int64_t base = 0, out = 0;
    int32_t d;

    stride[p->ndims - 1] = 1;
    for (d = p->ndims - 2; d >= 0; --d) {
        stride[d] = stride[d + 1] * p->dims[d + 1];
    }
    for (d = 0; d < p->ndims; ++d) {
        keep_idx[d] = 0;
        red_idx[d] = 0;
    }
    do {
        int64_t offset = base;
        uint32_t sum = 0; /* TFLite's int32 accumulator, wrapping */
        int32_t shifted, acc;

        do {
            const int32_t value = input[offset];
            sum += (uint32_t)value;
        } while (ek_mean_next(p, stride, p->reduce_mask, red_idx, &offset));

        /* (int32)(sum - zero_point * count), the difference taken in 64 bits */
        shifted = (int32_t)(uint32_t)((int64_t)(int32_t)sum -
                                      (int64_t)p->input_zero_point * p->count);
        acc = ek_requantize(shifted, p->multiplier, p->shift) + p->output_zero_point;
        output[out++] = ek_sat_s8(acc);
    } while (ek_mean_next(p, stride, keep_mask, keep_idx, &base));
}
