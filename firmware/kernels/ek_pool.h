/*
 * ek_pool.h - average and max pooling, int8 (input and output share one scale
 * and zero point, as TFLite requires).
 *
 * Layouts: input [in_h][in_w][c], output [out_h][out_w][c].  The window of
 * output (y, x) starts at (y*stride_h - pad_top, x*stride_w - pad_left) and is
 * clipped to the input; padding taps are not counted.
 *   average: sum / count, rounded half away from zero (integer division),
 *   max:     the largest value in the window (-128 for an empty window);
 * then clamped to [act_min, act_max].
 *
 * Variants (same signature, same results bit for bit; edgekit/lower/pool.py picks one):
 *   ek_avgpool_s8_dsp   average pooling with k_w <= 255: one 32-bit load per tap
 *                       reads four channels, SXTAB16 / SXTAB16 ROR #8 add them into
 *                       halfword sums {c, c+2} and {c+1, c+3}, widened to 32 bits
 *                       every floor(255 / window width) window rows (|half| <=
 *                       255 * 128 < 2^15); the last c % 4 channels are summed one
 *                       by one.  Runs on any core (ek_dsp.h's C twins).
 */
#ifndef EK_POOL_H
#define EK_POOL_H

#include "ek_common.h"

typedef struct {
    int32_t in_h, in_w, c;
    int32_t out_h, out_w;
    int32_t k_h, k_w;
    int32_t stride_h, stride_w;
    int32_t pad_top, pad_left;
    int32_t act_min, act_max;
} ek_pool_params;

void ek_avgpool_s8(const ek_pool_params *p, const int8_t *input, int8_t *output);
void ek_avgpool_s8_dsp(const ek_pool_params *p, const int8_t *input, int8_t *output);
void ek_maxpool_s8(const ek_pool_params *p, const int8_t *input, int8_t *output);

#endif /* EK_POOL_H */
