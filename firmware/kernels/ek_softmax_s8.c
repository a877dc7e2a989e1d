/* ek_softmax_s8.c - portable reference int8 softmax (see ek_softmax.h). */
#include "ek_softmax.h"
#include "ek_fixedpoint.h"

#define EK_SOFTMAX_DIFF_BITS 5   /* scaled differences are Q5.26 */
#define EK_SOFTMAX_ACCUM_BITS 12 /* the sum of exponentials is Q12.19 */

/* exp of the difference d = x - max (d <= 0), in Q0.31: d is scaled to Q5.26 by
 * TFLite's MultiplyByQuantizedMultiplierGreaterThanOne (double rounding; diff_min
 * guarantees the left shift cannot overflow). */
static int32_t ek_softmax_exp(const ek_softmax_params *p, int32_t diff)
{
    const int32_t scaled = ek_srdhm(ek_shl_wrap(diff, p->input_left_shift), p->input_multiplier);
    return ek_fp_exp_on_negative_values(scaled, EK_SOFTMAX_DIFF_BITS);
}

/* Rounding (half away from zero) arithmetic right shift of an int32 by
 * 0..63 bits; equals ek_rdivpot for 0..31. */
static int32_t ek_softmax_rdivpot_wide(int32_t x, int32_t exponent)
{
    int64_t mask, remainder, threshold;
    if (exponent <= 31) {
        return ek_rdivpot(x, exponent);
    }
    mask = (int64_t)((UINT64_C(1) << exponent) - 1);
    remainder = (int64_t)x & mask;
    threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (int32_t)(((int64_t)x >> exponent) + (remainder > threshold ? 1 : 0));
}

void ek_softmax_s8(const ek_softmax_params *p, const int8_t *input, int8_t *output)
{
    int32_t r, c;
    for (r = 0; r < p->rows; ++r) {
        const int8_t *in = input + (int64_t)r * p->depth;
        int8_t *out = output + (int64_t)r * p->depth;
        int32_t max_in_row = EK_INT8_MIN;
        int32_t sum_of_exps = 0;
        int32_t bits_over_unit, reciprocal, exponent;

        for (c = 0; c < p->depth; ++c) {
            max_in_row = ek_max_i32(max_in_row, in[c]);
        }
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = in[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t e = ek_fp_rescale(ek_softmax_exp(p, diff), 0, EK_SOFTMAX_ACCUM_BITS);
                sum_of_exps = ek_min_i32(INT32_MAX - e, sum_of_exps) + e; /* saturating */
            }
        }
        /* sum_of_exps >= 1.0 (the maximum itself contributes exp(0)) */
        reciprocal = ek_fp_reciprocal(sum_of_exps, EK_SOFTMAX_ACCUM_BITS, &bits_over_unit);
        exponent = bits_over_unit + 31 - 8;
        for (c = 0; c < p->depth; ++c) {
            const int32_t diff = in[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t e = ek_softmax_exp(p, diff);
                const int32_t unsat = ek_softmax_rdivpot_wide(ek_fp_mul(reciprocal, e), exponent);
                out[c] = ek_sat_s8(unsat + EK_INT8_MIN);
            } else {
                out[c] = (int8_t)EK_INT8_MIN;
            }
        }
    }
}
