/*
 * ek_fixedpoint.h - gemmlowp-style fixed-point arithmetic on raw int32 values.
 *
 * A value in format Qm (m integer bits, 31-m fractional bits) is the raw
 * int32 r standing for r / 2^(31-m).  Q0 covers [-1, 1); Q5 covers [-32, 32).
 * These helpers reproduce, bit for bit, the gemmlowp functions that
 * TensorFlow Lite's reference kernels are built on (fixedpoint/fixedpoint.h
 * and tflite::GetReciprocal), so the kernels that use them match the
 * reference interpreter exactly:
 *
 *   ek_fp_mul                      FixedPoint operator*  (Qa * Qb -> Q(a+b))
 *   ek_fp_mul_pot                  SaturatingRoundingMultiplyByPOT
 *   ek_fp_rescale                  Rescale<dst>(Q<src>)
 *   ek_fp_rounding_half_sum        RoundingHalfSum
 *   ek_fp_exp_on_negative_values   exp_on_negative_values, Qm -> Q0
 *   ek_fp_one_over_one_plus_x      one_over_one_plus_x_for_x_in_0_1, Q0 -> Q0
 *   ek_fp_reciprocal               tflite::GetReciprocal
 *
 * gemmlowp adds and subtracts raw values without saturation (overflow is
 * undefined behaviour in C++ and wraps in practice); ek_fp_add / ek_fp_sub
 * wrap explicitly in unsigned arithmetic so they stay defined C.
 * No float anywhere; no libm.
 */
#ifndef EK_FIXEDPOINT_H
#define EK_FIXEDPOINT_H

#include "ek_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Raw Q0 value of 1.0 saturated to the largest representable value. */
#define EK_FP_Q0_ONE INT32_MAX

/* a + b and a - b, wrapping modulo 2^32 like gemmlowp's plain Add / Sub. */
static inline int32_t ek_fp_add(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

static inline int32_t ek_fp_sub(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a - (uint32_t)b);
}

/* Fixed-point product: Qa * Qb -> Q(a+b), i.e. the saturating rounding
 * doubling high multiply of the raw values. */
static inline int32_t ek_fp_mul(int32_t a, int32_t b)
{
    return ek_srdhm(a, b);
}

/* x * 2^exponent for exponent in [-31, 30]: a saturating left shift for
 * exponent > 0, a rounding (half away from zero) right shift for
 * exponent < 0 (gemmlowp SaturatingRoundingMultiplyByPOT). */
static inline int32_t ek_fp_mul_pot(int32_t x, int32_t exponent)
{
    if (exponent > 0) {
        const int32_t threshold = (int32_t)((INT32_C(1) << (31 - exponent)) - 1);
        if (x > threshold) {
            return INT32_MAX;
        }
        if (x < -threshold) {
            return INT32_MIN;
        }
        return ek_shl_wrap(x, exponent);
    }
    if (exponent < 0) {
        return ek_rdivpot(x, -exponent);
    }
    return x;
}

/* Change the format of x from Q(src_bits) to Q(dst_bits) (gemmlowp Rescale). */
static inline int32_t ek_fp_rescale(int32_t x, int32_t src_bits, int32_t dst_bits)
{
    return ek_fp_mul_pot(x, src_bits - dst_bits);
}

/* (a + b) / 2 rounded half away from zero, computed without overflow. */
static inline int32_t ek_fp_rounding_half_sum(int32_t a, int32_t b)
{
    const int64_t sum = (int64_t)a + (int64_t)b;
    const int64_t sign = sum >= 0 ? 1 : -1;
    return (int32_t)((sum + sign) / 2);
}


/* Number of leading zero bits of x (32 for x == 0). */
static inline int32_t ek_clz_u32(uint32_t x)
{
    int32_t n = 0;
    if (x == 0) {
        return 32;
    }
    while ((x & UINT32_C(0x80000000)) == 0) {
        x <<= 1;
        ++n;
    }
    return n;
}

/* exp(a) for a in [-1/4, 0), a and result in Q0: a 4th-order Taylor expansion
 * around -1/8 (gemmlowp exp_on_interval_between_negative_one_quarter_and_0_excl). */
static inline int32_t ek_fp_exp_on_interval_neg_quarter_to_0(int32_t a)
{
    const int32_t exp_minus_one_eighth = 1895147668; /* exp(-1/8) in Q0 */
    const int32_t one_third = 715827883;             /* 1/3 in Q0 */
    const int32_t x = ek_fp_add(a, INT32_C(1) << 28); /* a + 1/8 */
    const int32_t x2 = ek_fp_mul(x, x);
    const int32_t x3 = ek_fp_mul(x2, x);
    const int32_t x4 = ek_fp_mul(x2, x2);
    const int32_t x4_over_4 = ek_fp_mul_pot(x4, -2);
    const int32_t poly = ek_fp_mul_pot(
        ek_fp_add(ek_fp_mul(ek_fp_add(x4_over_4, x3), one_third), x2), -1);
    return ek_fp_add(exp_minus_one_eighth,
                     ek_fp_mul(exp_minus_one_eighth, ek_fp_add(x, poly)));
}

/* exp(a) for a <= 0 given in Q(integer_bits), integer_bits in [0, 29];
 * result in Q0 (gemmlowp exp_on_negative_values).  a is split into
 * (a mod 1/4) - 1/4, evaluated by the polynomial above, times a product of
 * exp(-2^k) constants selected by the bits of the remainder. */
static inline int32_t ek_fp_exp_on_negative_values(int32_t a, int32_t integer_bits)
{
    /* exp(-2^k) in Q0 for k = -2 .. 4 */
    static const int32_t exp_neg_pow2[7] = {
        1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242
    };
    const int32_t fractional_bits = 31 - integer_bits;
    const int32_t one_quarter = INT32_C(1) << (fractional_bits - 2);
    const int32_t a_mod_quarter_minus_quarter =
        ek_fp_sub(a & (one_quarter - 1), one_quarter);
    const int32_t remainder = ek_fp_sub(a_mod_quarter_minus_quarter, a);
    int32_t result = ek_fp_exp_on_interval_neg_quarter_to_0(
        ek_fp_rescale(a_mod_quarter_minus_quarter, integer_bits, 0));
    int32_t k;

    for (k = -2; k <= 4; ++k) {
        if (integer_bits > k) {
            const int32_t bit = INT32_C(1) << (fractional_bits + k);
            if ((remainder & bit) != 0) {
                result = ek_fp_mul(result, exp_neg_pow2[k + 2]);
            }
        }
    }
    if (integer_bits > 5) {
        /* below -32 the result is exactly zero */
        const int32_t minus_32 = -(INT32_C(1) << (36 - integer_bits));
        if (a < minus_32) {
            result = 0;
        }
    }
    if (a == 0) {
        result = EK_FP_Q0_ONE;
    }
    return result;
}

/* 1 / (1 + a) for a in [0, 1), a and result in Q0: three Newton-Raphson
 * steps from the 48/17 - 32/17 * d initial guess, computed in Q2
 * (gemmlowp one_over_one_plus_x_for_x_in_0_1). */
static inline int32_t ek_fp_one_over_one_plus_x(int32_t a)
{
    const int32_t q2_one = INT32_C(1) << 29;
    const int32_t q2_48_over_17 = 1515870810;
    const int32_t q2_neg_32_over_17 = -1010580540;
    const int32_t half_denominator = ek_fp_rounding_half_sum(a, EK_FP_Q0_ONE);
    int32_t x = ek_fp_add(q2_48_over_17, ek_fp_mul(half_denominator, q2_neg_32_over_17));
    int32_t i;

    for (i = 0; i < 3; ++i) {
        const int32_t half_denominator_times_x = ek_fp_mul(half_denominator, x);
        const int32_t one_minus = ek_fp_sub(q2_one, half_denominator_times_x);
        x = ek_fp_add(x, ek_fp_rescale(ek_fp_mul(x, one_minus), 4, 2));
    }
    /* x / 2 read as Q1, then rescaled to Q0 */
    return ek_fp_rescale(x, 1, 0);
}

/* 1 / x for x > 0 in Q(integer_bits): returns a Q0 value s and sets
 * *bits_over_unit so that 1/x = s * 2^-bits_over_unit (tflite::GetReciprocal).
 * x must be positive (x <= 0 is outside the reference's domain). */
static inline int32_t ek_fp_reciprocal(int32_t x, int32_t integer_bits, int32_t *bits_over_unit)
{
    const int32_t headroom_plus_one = ek_clz_u32((uint32_t)x);
    const int32_t shifted_minus_one =
        (int32_t)(((uint32_t)x << headroom_plus_one) - UINT32_C(0x80000000));
    *bits_over_unit = integer_bits - headroom_plus_one;
    return ek_fp_one_over_one_plus_x(shifted_minus_one);
}

#ifdef __cplusplus
}
#endif

#endif /* EK_FIXEDPOINT_H */
