/*
 * ek_mean.h - mean over any set of axes, int8 in, int8 out (TFLite MEAN,
 * e.g. GlobalAveragePooling2D = mean over H and W; reference kernel:
 * reference_ops::QuantizedMeanOrSum, which TFLite's reference interpreter
 * uses for every int8 MEAN, keep_dims or not).
 *
 * Layout: the input is row-major with shape dims[0..ndims-1]; the output
 * holds the kept dimensions in the same order (keep_dims only changes the
 * declared shape, never the bytes).  For each output element:
 *   sum  = sum of the `count` inputs it averages (int32, wrapping)
 *   out  = clamp(ek_fp_requantize(sum - input_zero_point * count, multiplier,
 *                shift) + output_zero_point, -128, 127)
 * (ek_fp_requantize: gemmlowp double rounding, see ek_fixedpoint.h)
 * where multiplier/shift already include the 1/count factor (see
 * edgekit.lower.nonlinear.mean_params).  The exporter merges neighbouring
 * dimensions of the same kind and drops size-1 dimensions, so GAP on NHWC
 * arrives as dims = {H*W, C}, reduce_mask = 0x1.
 */
#ifndef EK_MEAN_H
#define EK_MEAN_H

#include "ek_common.h"

#define EK_MEAN_MAX_DIMS 6

typedef struct {
    int32_t ndims;                  /* 1..EK_MEAN_MAX_DIMS */
    int32_t dims[EK_MEAN_MAX_DIMS]; /* input shape, each >= 1; unused entries 1 */
    int32_t reduce_mask;            /* bit d set: dims[d] is averaged away */
    int32_t count;                  /* inputs per output = product of reduced dims, >= 1 */
    int32_t input_zero_point;       /* -128..127 */
    int32_t multiplier;             /* Q0.31, input_scale / output_scale / count */
    int32_t shift;                  /* exponent of multiplier, -31..30 */
    int32_t output_zero_point;      /* -128..127 */
} ek_mean_params;

void ek_mean_s8(const ek_mean_params *p, const int8_t *input, int8_t *output);

/* The same for ndims == 2 and reduce_mask == 0x1 only (the mean of each column
 * over the rows: GlobalAveragePooling2D), at a few instructions per input. */
void ek_mean_s8_rows(const ek_mean_params *p, const int8_t *input, int8_t *output);

#endif /* EK_MEAN_H */
