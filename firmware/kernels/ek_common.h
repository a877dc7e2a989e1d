/*
 * ek_common.h - types and integer helpers shared by every edgekit kernel.
 *
 * All float work (scales -> multiplier + shift, clamp ranges) is done by the
 * Python exporter; kernels only ever see integers.  The two requantization
 * helpers below are the one place where edgekit's rounding is defined; each
 * kernel uses the one that TensorFlow Lite's reference kernel for that op
 * uses, as LiteRT 2.3 (the reference edgekit is tested against) builds them:
 *
 *   ek_requantize()     "double rounding", TFLite's MultiplyByQuantizedMultiplier:
 *                       RDivPOT(SRDHM(x * 2^max(s,0), M), max(-s,0)), where SRDHM
 *                       rounds x*M/2^31 half away from zero and RDivPOT is a
 *                       rounding right shift (half away from zero).
 *                       Used by CONV_2D, DEPTHWISE_CONV_2D, ADD, requantize.
 *   ek_requantize_1r()  "single rounding": (x*M + 2^(30-s)) >> (31-s) in 64 bits,
 *                       rounded half up.  Used by FULLY_CONNECTED, whose LiteRT
 *                       reference kernel rounds this way (measured: double
 *                       rounding differs on ~0.7% of ad01's outputs).
 *
 * Tensors are int8, NHWC, batch 1.  Multipliers are Q0.31 in [2^30, 2^31),
 * shifts are signed exponents (positive = left shift).
 */
#ifndef EK_COMMON_H
#define EK_COMMON_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EK_INT8_MIN (-128)
#define EK_INT8_MAX 127

/* Inlined even where GCC would not: a hot loop's helper, whose accumulators must stay in the
 * caller's registers and whose constant arguments (a format, a rotation) remove branches. */
#if defined(__GNUC__)
#define EK_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define EK_ALWAYS_INLINE inline
#endif

/* No instruction: keeps GCC from moving loads across this point (in a hot loop, the next step's
 * loads above this step's multiplies, which runs the M4 out of registers). */
static inline void ek_compiler_barrier(void)
{
#if defined(__GNUC__)
    __asm__ volatile("" ::: "memory");
#endif
}

static inline int32_t ek_min_i32(int32_t a, int32_t b) { return a < b ? a : b; }
static inline int32_t ek_max_i32(int32_t a, int32_t b) { return a > b ? a : b; }
static inline int32_t ek_clamp_i32(int32_t x, int32_t lo, int32_t hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/* Saturating rounding doubling high multiply: round(a * b / 2^31), ties away
 * from zero; the single overflow case (INT32_MIN * INT32_MIN) saturates. */
static inline int32_t ek_srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int64_t nudge = ab >= 0 ? (INT64_C(1) << 30) : (1 - (INT64_C(1) << 30));
    return (int32_t)((ab + nudge) / (INT64_C(1) << 31));
}

/* Rounding arithmetic right shift by 0..31, ties away from zero. */
static inline int32_t ek_rdivpot(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)((INT64_C(1) << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* x * 2^shift as TFLite computes it: in 32 bits, wrapping on overflow
 * (done in unsigned arithmetic to stay defined behaviour). */
static inline int32_t ek_shl_wrap(int32_t x, int32_t shift)
{
    return (int32_t)((uint32_t)x << shift);
}

/* TFLite MultiplyByQuantizedMultiplier (double rounding): x * M * 2^shift. */
static inline int32_t ek_requantize(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    return ek_rdivpot(ek_srdhm(ek_shl_wrap(x, left), multiplier), right);
}

/* TFLite MultiplyByQuantizedMultiplierSmallerThanOneExp: shift <= 0. */
static inline int32_t ek_requantize_lt1(int32_t x, int32_t multiplier, int32_t shift)
{
    return ek_rdivpot(ek_srdhm(x, multiplier), -shift);
}

/* Single rounding: x * M * 2^(shift-31) rounded half up, in 64 bits.
 * M in [0, 2^31), shift in [-31, 30] (the exporter guarantees both). */
static inline int32_t ek_requantize_1r(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t total_shift = 31 - shift;
    const int64_t round = INT64_C(1) << (total_shift - 1);
    return (int32_t)(((int64_t)x * multiplier + round) >> total_shift);
}

static inline int8_t ek_sat_s8(int32_t x)
{
    return (int8_t)ek_clamp_i32(x, EK_INT8_MIN, EK_INT8_MAX);
}

#ifdef __cplusplus
}
#endif

#endif /* EK_COMMON_H */
