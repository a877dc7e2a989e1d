/*
 * ek_dsp.h - the Armv7E-M DSP instructions the _dsp kernels use, with exact
 * portable C twins.
 *
 * On a core with the DSP extension (__ARM_FEATURE_DSP: Cortex-M4, M7, M33 with
 * DSP) these map to the instructions through <arm_acle.h>.  Elsewhere (the host
 * build of the same export, which `edgekit verify` and the tests run under
 * AddressSanitizer) they are plain C with the same results, so one _dsp
 * algorithm is tested bit for bit on the host and on the emulated boards.
 *
 *   ek_sxtb16(x)        halfwords {sext(x[7:0]), sext(x[23:16])}
 *   ek_sxtb16_ror8(x)   halfwords {sext(x[15:8]), sext(x[31:24])}
 *   ek_smlad(a, b, acc) acc + a.lo*b.lo + a.hi*b.hi (signed 16-bit halves,
 *                       32-bit wrap-around; the Q flag is not used)
 *   ek_sxtab16(a, x)    halfwords {a.lo + sext(x[7:0]), a.hi + sext(x[23:16])}
 *                       (each half wraps at 16 bits)
 *   ek_sxtab16_ror8(a, x) halfwords {a.lo + sext(x[15:8]), a.hi + sext(x[31:24])}
 *   ek_smlabb(a, b, acc) acc + a.lo*b.lo (signed 16-bit halves, 32-bit wrap-around)
 *   ek_smlatt(a, b, acc) acc + a.hi*b.hi (signed 16-bit halves, 32-bit wrap-around)
 *   ek_read_s8x4(p)     four int8 as one little-endian word (unaligned ok)
 */
#ifndef EK_DSP_H
#define EK_DSP_H

#include <stdint.h>
#include <string.h>

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>

/* GCC 12 has no __ror; one instruction. */
static inline uint32_t ek_ror(uint32_t x, uint32_t n)
{
    return (x >> n) | (x << ((32u - n) & 31u));
}

static inline int32_t ek_sxtb16(int32_t x) { return (int32_t)__sxtb16((uint32_t)x); }
/* GCC 12 does not fold the rotation into SXTB16's ROR #8 operand: one instruction by hand. */
static inline int32_t ek_sxtb16_ror8(int32_t x)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
static inline int32_t ek_smlad(int32_t a, int32_t b, int32_t acc)
{
    return (int32_t)__smlad((uint32_t)a, (uint32_t)b, (uint32_t)acc);
}
static inline int32_t ek_sxtab16(int32_t a, int32_t x)
{
    return (int32_t)__sxtab16((uint32_t)a, (uint32_t)x);
}
static inline int32_t ek_sxtab16_ror8(int32_t a, int32_t x)
{
    /* GCC 12 does not fold the rotation into SXTAB16's ROR field: say it. */
    int32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}
static inline int32_t ek_smlabb(int32_t a, int32_t b, int32_t acc) { return __smlabb(a, b, acc); }
static inline int32_t ek_smlatt(int32_t a, int32_t b, int32_t acc) { return __smlatt(a, b, acc); }

#else /* portable twins with identical results */

static inline int32_t ek_pack16(int32_t lo, int32_t hi)
{
    return (int32_t)(((uint32_t)(uint16_t)(int16_t)lo) | ((uint32_t)(uint16_t)(int16_t)hi << 16));
}
static inline int32_t ek_sxtb16(int32_t x)
{
    return ek_pack16((int8_t)(uint8_t)((uint32_t)x & 0xFFu), (int8_t)(uint8_t)(((uint32_t)x >> 16) & 0xFFu));
}
static inline int32_t ek_sxtb16_ror8(int32_t x)
{
    return ek_pack16((int8_t)(uint8_t)(((uint32_t)x >> 8) & 0xFFu), (int8_t)(uint8_t)((uint32_t)x >> 24));
}
static inline int32_t ek_smlad(int32_t a, int32_t b, int32_t acc)
{
    const int32_t lo = (int32_t)(int16_t)(uint16_t)((uint32_t)a & 0xFFFFu) *
                       (int32_t)(int16_t)(uint16_t)((uint32_t)b & 0xFFFFu);
    const int32_t hi = (int32_t)(int16_t)(uint16_t)((uint32_t)a >> 16) *
                       (int32_t)(int16_t)(uint16_t)((uint32_t)b >> 16);
    return (int32_t)((uint32_t)acc + (uint32_t)lo + (uint32_t)hi);
}
static inline int32_t ek_sxtab16(int32_t a, int32_t x)
{
    const int32_t lo = (int32_t)(int16_t)(uint16_t)((uint32_t)a & 0xFFFFu) +
                       (int8_t)(uint8_t)((uint32_t)x & 0xFFu);
    const int32_t hi = (int32_t)(int16_t)(uint16_t)((uint32_t)a >> 16) +
                       (int8_t)(uint8_t)(((uint32_t)x >> 16) & 0xFFu);
    return ek_pack16(lo, hi);
}
static inline int32_t ek_sxtab16_ror8(int32_t a, int32_t x)
{
    return ek_sxtab16(a, (int32_t)(((uint32_t)x >> 8) | ((uint32_t)x << 24)));
}
static inline int32_t ek_smlabb(int32_t a, int32_t b, int32_t acc)
{
    const int32_t prod = (int32_t)(int16_t)(uint16_t)((uint32_t)a & 0xFFFFu) *
                         (int32_t)(int16_t)(uint16_t)((uint32_t)b & 0xFFFFu);
    return (int32_t)((uint32_t)acc + (uint32_t)prod);
}
static inline int32_t ek_smlatt(int32_t a, int32_t b, int32_t acc)
{
    const int32_t prod = (int32_t)(int16_t)(uint16_t)((uint32_t)a >> 16) *
                         (int32_t)(int16_t)(uint16_t)((uint32_t)b >> 16);
    return (int32_t)((uint32_t)acc + (uint32_t)prod);
}

#endif

static inline int32_t ek_read_s8x4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);   /* compiles to one LDR on Cortex-M (unaligned access allowed) */
    return v;
}

/* ek_ssat8(x): x clamped to [-128, 127] (SSAT #8 on Arm; SSAT is in every Armv7-M). */
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
static inline int32_t ek_ssat8(int32_t x) { return __ssat(x, 8); }
#else
static inline int32_t ek_ssat8(int32_t x) { return x < -128 ? -128 : (x > 127 ? 127 : x); }
#endif

#endif /* EK_DSP_H */
