/*
 * ek_dot_s8_dsp.h - int8 dot products for the _dsp GEMM kernels (internal to
 * ek_conv2d_s8_1x1_dsp.c, ek_conv2d_s8_dsp.c and ek_fc_s8_dsp.c).
 *
 * Operands are int8 rows of n values (any alignment, any n >= 0).  `a` rows
 * are plain; `b` (weights) of the 2-column products is a PAIR of rows b0, b1
 * interleaved by blocks of four (the layout ek_interleave_pairs in
 * edgekit/lower/conv.py writes):
 *     b0[0..3] b1[0..3] b0[4..7] b1[4..7] ... b0[4q..n) b1[4q..n)   (q = n/4)
 * so one pointer walks both rows.  Four values at a time are read as one word and split with SXTB16 into the
 * even bytes {x0, x2} and, with SXTB16 ROR #8, the odd bytes {x1, x3}; since
 * both operands are split the same way the halves pair up, and two SMLADs add
 * x0*w0 + x2*w2 + x1*w1 + x3*w3.  The n % 4 leftover values are added one by
 * one.  Sums wrap modulo 2^32 like the reference kernels' int32 accumulators
 * (the final values are identical whenever the reference does not overflow).
 *
 *   ek_dot_s8_2x2: acc[2*r + c] += dot(a_r, b_c) for r, c in {0, 1}  (b: a pair)
 *   ek_dot_s8_1x2: acc[c]       += dot(a, b_c)   for c in {0, 1}     (b: a pair)
 *   ek_dot_s8_1x1: returns acc  +  dot(a, b)                         (b: one row)
 *
 * The folded-requantization GEMM of the convolutions (ek_conv2d.h, "folded form") splits
 * its input ONCE per pixel instead of once per output channel: ek_fold_split writes four
 * pixels' values, doubled, as halfword pairs into a word buffer; ek_dot_fold_4x1 then runs
 * one weight row against all four: per four values one LDR and two SXTB16 for the weights,
 * two LDMs and eight SMLADs (28 instructions for 32 MACs with the loop); ek_fold_requantize
 * finishes each output with one SMMLAR.
 */
#ifndef EK_DOT_S8_DSP_H
#define EK_DOT_S8_DSP_H

#include "ek_common.h"
#include "ek_dsp.h"

/* Shifts the folded form's one-SMMLAR requantization takes (right shifts of 1..23 bits); channels
 * with other shifts keep ek_requantize. edgekit (edgekit/lower/packing.py) reads these. */
#define EK_FOLD_SHIFT_MIN (-23)
#define EK_FOLD_SHIFT_MAX (-1)

static inline int32_t ek_dot_s8_mac(int32_t acc, int8_t a, int8_t b)
{
    return (int32_t)((uint32_t)acc + (uint32_t)((int32_t)a * (int32_t)b));
}

static inline void ek_dot_s8_2x2(const int8_t *a0, const int8_t *a1, const int8_t *b,
                                 int32_t n, int32_t acc[4])
{
    int32_t s00 = acc[0], s01 = acc[1], s10 = acc[2], s11 = acc[3];
    for (int32_t k = n >> 2; k > 0; --k) {
        const int32_t x0 = ek_read_s8x4(a0), x1 = ek_read_s8x4(a1);
        a0 += 4;
        a1 += 4;
        const int32_t x0e = ek_sxtb16(x0), x0o = ek_sxtb16_ror8(x0);
        const int32_t x1e = ek_sxtb16(x1), x1o = ek_sxtb16_ror8(x1);
        int32_t w = ek_read_s8x4(b);
        int32_t we = ek_sxtb16(w), wo = ek_sxtb16_ror8(w);
        s00 = ek_smlad(x0e, we, s00);
        s00 = ek_smlad(x0o, wo, s00);
        s10 = ek_smlad(x1e, we, s10);
        s10 = ek_smlad(x1o, wo, s10);
        w = ek_read_s8x4(b + 4);
        b += 8;
        we = ek_sxtb16(w);
        wo = ek_sxtb16_ror8(w);
        s01 = ek_smlad(x0e, we, s01);
        s01 = ek_smlad(x0o, wo, s01);
        s11 = ek_smlad(x1e, we, s11);
        s11 = ek_smlad(x1o, wo, s11);
    }
    const int32_t tail = n & 3;
    for (int32_t k = 0; k < tail; ++k) {
        const int8_t x0 = a0[k], x1 = a1[k], w0 = b[k], w1 = b[tail + k];
        s00 = ek_dot_s8_mac(s00, x0, w0);
        s01 = ek_dot_s8_mac(s01, x0, w1);
        s10 = ek_dot_s8_mac(s10, x1, w0);
        s11 = ek_dot_s8_mac(s11, x1, w1);
    }
    acc[0] = s00;
    acc[1] = s01;
    acc[2] = s10;
    acc[3] = s11;
}

static inline void ek_dot_s8_1x2(const int8_t *a, const int8_t *b, int32_t n, int32_t acc[2])
{
    int32_t s0 = acc[0], s1 = acc[1];
    for (int32_t k = n >> 2; k > 0; --k) {
        const int32_t x = ek_read_s8x4(a), w0 = ek_read_s8x4(b), w1 = ek_read_s8x4(b + 4);
        a += 4;
        b += 8;
        const int32_t xe = ek_sxtb16(x), xo = ek_sxtb16_ror8(x);
        s0 = ek_smlad(xe, ek_sxtb16(w0), s0);
        s0 = ek_smlad(xo, ek_sxtb16_ror8(w0), s0);
        s1 = ek_smlad(xe, ek_sxtb16(w1), s1);
        s1 = ek_smlad(xo, ek_sxtb16_ror8(w1), s1);
    }
    const int32_t tail = n & 3;
    for (int32_t k = 0; k < tail; ++k) {
        s0 = ek_dot_s8_mac(s0, a[k], b[k]);
        s1 = ek_dot_s8_mac(s1, a[k], b[tail + k]);
    }
    acc[0] = s0;
    acc[1] = s1;
}

static inline int32_t ek_dot_s8_1x1(const int8_t *a, const int8_t *b, int32_t n, int32_t acc)
{
    for (int32_t k = n >> 2; k > 0; --k) {
        const int32_t x = ek_read_s8x4(a), w = ek_read_s8x4(b);
        a += 4;
        b += 4;
        acc = ek_smlad(ek_sxtb16(x), ek_sxtb16(w), acc);
        acc = ek_smlad(ek_sxtb16_ror8(x), ek_sxtb16_ror8(w), acc);
    }
    for (int32_t k = n & 3; k > 0; --k) {
        acc = ek_dot_s8_mac(acc, *a++, *b++);
    }
    return acc;
}

/* ek_requantize() (double rounding, ek_common.h) for multipliers in [2^30, 2^31),
 * which the exporter guarantees, in one 64-bit multiply.  Exact: M > 0 rules out
 * SRDHM's saturating case, and for a*M < 0 its "add 1 - 2^30, divide by 2^31
 * truncating" equals floor((a*M + 2^30) / 2^31) too (ceil(t/2^31) =
 * floor((t + 2^31 - 1)/2^31) with t = a*M + 1 - 2^30), so both signs share the
 * arithmetic shift below; RDivPOT is ek_rdivpot itself. */
static inline int32_t ek_requantize_pos(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    const int64_t ab = (int64_t)ek_shl_wrap(x, left) * multiplier;
    return ek_rdivpot((int32_t)((ab + (INT64_C(1) << 30)) >> 31), right);
}

/* acc[c] += dot(a, b_c) for c in 0..3, where b01 and b23 are two interleaved PAIRS of rows
 * (b01 = rows 0 and 1, b23 = rows 2 and 3, each in the ek_dot_s8_1x2 layout): one input
 * word load and split serves four rows. */
static inline void ek_dot_s8_1x4(const int8_t *a, const int8_t *b01, const int8_t *b23,
                                 int32_t n, int32_t acc[4])
{
    int32_t s0 = acc[0], s1 = acc[1], s2 = acc[2], s3 = acc[3];
    for (int32_t k = n >> 2; k > 0; --k) {
        const int32_t x = ek_read_s8x4(a);
        a += 4;
        const int32_t xe = ek_sxtb16(x), xo = ek_sxtb16_ror8(x);
        int32_t w = ek_read_s8x4(b01);
        s0 = ek_smlad(xe, ek_sxtb16(w), s0);
        s0 = ek_smlad(xo, ek_sxtb16_ror8(w), s0);
        w = ek_read_s8x4(b01 + 4);
        b01 += 8;
        s1 = ek_smlad(xe, ek_sxtb16(w), s1);
        s1 = ek_smlad(xo, ek_sxtb16_ror8(w), s1);
        w = ek_read_s8x4(b23);
        s2 = ek_smlad(xe, ek_sxtb16(w), s2);
        s2 = ek_smlad(xo, ek_sxtb16_ror8(w), s2);
        w = ek_read_s8x4(b23 + 4);
        b23 += 8;
        s3 = ek_smlad(xe, ek_sxtb16(w), s3);
        s3 = ek_smlad(xo, ek_sxtb16_ror8(w), s3);
    }
    const int32_t tail = n & 3;
    for (int32_t k = 0; k < tail; ++k) {
        s0 = ek_dot_s8_mac(s0, a[k], b01[k]);
        s1 = ek_dot_s8_mac(s1, a[k], b01[tail + k]);
        s2 = ek_dot_s8_mac(s2, a[k], b23[k]);
        s3 = ek_dot_s8_mac(s3, a[k], b23[tail + k]);
    }
    acc[0] = s0;
    acc[1] = s1;
    acc[2] = s2;
    acc[3] = s3;
}

/* ek_requantize_1r() (single rounding) with the multiplier and shift of a whole layer
 * prepared once (per-tensor quantization).  For shift <= -1 the rounding constant
 * 2^(30-shift) is a multiple of 2^31 and the total shift 31-shift >= 32, so
 * (x*M + round) >> (31-shift) = ((x*M + round) >> 32) >> (-shift-1) exactly (nested
 * floors): one SMLAL and one ASR.  Other shifts take ek_requantize_1r itself. */
typedef struct {
    int32_t mult, shift;
    int32_t hi_shift;   /* -shift - 1, or -1: use ek_requantize_1r */
    int64_t round;      /* 2^(30 - shift) when hi_shift >= 0 */
} ek_requant_1r_q;

static inline ek_requant_1r_q ek_requant_1r_prepare(int32_t multiplier, int32_t shift)
{
    ek_requant_1r_q q = {multiplier, shift, -1, 0};
    if (shift <= -1) {
        q.hi_shift = -shift - 1;
        q.round = INT64_C(1) << (30 - shift);
    }
    return q;
}

static inline int32_t ek_requant_1r_apply(const ek_requant_1r_q *q, int32_t x)
{
    if (q->hi_shift >= 0) {
        return (int32_t)(((int64_t)x * q->mult + q->round) >> 32) >> q->hi_shift;
    }
    return ek_requantize_1r(x, q->mult, q->shift);
}

/* ---- The folded-requantization GEMM (ek_conv2d.h, folded form) ---- */

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
/* acc + ((a*b + 2^31) >> 32): SMMLAR (Armv7E-M DSP); no ACLE intrinsic. */
static inline int32_t ek_smmlar(int32_t a, int32_t b, int32_t acc)
{
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}
/* Both halfwords doubled (SADD16 x, x; no half overflows for doubled int8). */
static inline int32_t ek_dbl16(int32_t x) { return (int32_t)__sadd16((uint32_t)x, (uint32_t)x); }
/* Half a group: the four buffer words at p {xa_even, xa_odd, xb_even, xb_odd} (two pixels),
 * *sa += xa . {we, wo}, *sb += xb . {we, wo}; returns p + 4.  One LDM and four SMLADs, in asm
 * because LDM needs ascending registers (r4..r7 here) and GCC, left to itself, spends a spare
 * register on SMLAD temporaries and then spills the loop bound. */
static EK_ALWAYS_INLINE const int32_t *ek_fold_half(const int32_t *p, int32_t we, int32_t wo, int32_t *sa,
                                                    int32_t *sb)
{
    __asm__("ldmia %[x]!, {r4, r5, r6, r7}\n\t"
            "smlad %[a], r4, %[e], %[a]\n\t"
            "smlad %[a], r5, %[o], %[a]\n\t"
            "smlad %[b], r6, %[e], %[b]\n\t"
            "smlad %[b], r7, %[o], %[b]"
            : [a] "+r"(*sa), [b] "+r"(*sb), [x] "+r"(p)
            : [e] "r"(we), [o] "r"(wo), "m"(*(const int32_t(*)[4])p)
            : "r4", "r5", "r6", "r7");
    return p;
}
/* The word at *p (any alignment), *p += 4: one post-indexed LDR (GCC would rather add once for
 * two loads at [p] and [p, #4]). */
static EK_ALWAYS_INLINE int32_t ek_fold_read_s8x4_next(const int8_t **p)
{
    int32_t v;
    __asm__("ldr %0, [%1], #4" : "=r"(v), "+r"(*p) : "m"(*(const int8_t(*)[4])*p));
    return v;
}
/* dst[0] = e, dst[1] = o; returns dst + EK_FOLD_GROUP_WORDS: one post-indexed STRD (dst
 * word-aligned). */
static EK_ALWAYS_INLINE int32_t *ek_fold_store_pair(int32_t *dst, int32_t e, int32_t o)
{
    __asm__("strd %2, %3, [%0], #32" : "+r"(dst), "=m"(*(int32_t(*)[2])dst) : "r"(e), "r"(o));
    return dst;
}
#else
static inline int32_t ek_smmlar(int32_t a, int32_t b, int32_t acc)
{
    const int64_t hi = ((int64_t)a * b + (INT64_C(1) << 31)) >> 32;      /* |a*b| <= 2^62 */
    return (int32_t)((uint32_t)acc + (uint32_t)(int32_t)hi);
}
static inline int32_t ek_dbl16(int32_t x)
{
    const int32_t lo = (int32_t)(int16_t)(uint16_t)((uint32_t)x & 0xFFFFu);
    const int32_t hi = (int32_t)(int16_t)(uint16_t)((uint32_t)x >> 16);
    return (int32_t)(((uint32_t)(uint16_t)(2 * lo)) | ((uint32_t)(uint16_t)(2 * hi) << 16));
}
static inline const int32_t *ek_fold_half(const int32_t *p, int32_t we, int32_t wo, int32_t *sa, int32_t *sb)
{
    *sa = ek_smlad(p[1], wo, ek_smlad(p[0], we, *sa));
    *sb = ek_smlad(p[3], wo, ek_smlad(p[2], we, *sb));
    return p + 4;
}
static inline int32_t ek_fold_read_s8x4_next(const int8_t **p)
{
    const int32_t v = ek_read_s8x4(*p);
    *p += 4;
    return v;
}
static inline int32_t *ek_fold_store_pair(int32_t *dst, int32_t e, int32_t o)
{
    dst[0] = e;
    dst[1] = o;
    return dst + 8;
}
#endif

/* The first n (0..3) int8 at p as one word, missing bytes 0. */
static inline int32_t ek_read_s8x4_partial(const int8_t *p, int32_t n)
{
    uint32_t v = 0;
    for (int32_t i = 0; i < n; ++i) {
        v |= (uint32_t)(uint8_t)p[i] << (8 * i);
    }
    return (int32_t)v;
}

/* Words per group of four values in the 4-pixel buffer: {x_i[even], x_i[odd]} for i = 0..3. */
#define EK_FOLD_GROUP_WORDS 8

/* One pixel's n values x[0..n) into its slot of the 4-pixel buffer: for each group g of
 * four, dst[8g] = {2x[4g], 2x[4g+2]} and dst[8g+1] = {2x[4g+1], 2x[4g+3]} (low, high half),
 * values past n read as 0.  Returns dst past the last group. */
static inline int32_t *ek_fold_split(int32_t *dst, const int8_t *x, int32_t n)
{
    for (int32_t k = n >> 2; k > 0; --k) {
        const int32_t v = ek_fold_read_s8x4_next(&x);
        const int32_t e = ek_dbl16(ek_sxtb16(v)), o = ek_dbl16(ek_sxtb16_ror8(v));
        dst = ek_fold_store_pair(dst, e, o);
    }
    if (n & 3) {
        const int32_t v = ek_read_s8x4_partial(x, n & 3);
        const int32_t e = ek_dbl16(ek_sxtb16(v)), o = ek_dbl16(ek_sxtb16_ror8(v));
        dst = ek_fold_store_pair(dst, e, o);
    }
    return dst;
}

/* `groups` groups of the constant pair {even, odd} (padding taps) into a pixel's slot. */
static inline int32_t *ek_fold_fill(int32_t *dst, int32_t even, int32_t odd, int32_t groups)
{
    for (; groups > 0; --groups) {
        dst = ek_fold_store_pair(dst, even, odd);
    }
    return dst;
}

/* One group of ek_dot_fold_4x1: the next weight word (at *w) against the four pixels' pairs
 * (at *x), s[i] += their dot products; *w and *x move past them. */
static EK_ALWAYS_INLINE void ek_fold_group(const int32_t **x, const int8_t **w, int32_t s[4])
{
    const int32_t v = ek_fold_read_s8x4_next(w);
    const int32_t we = ek_sxtb16(v), wo = ek_sxtb16_ror8(v);
    *x = ek_fold_half(*x, we, wo, &s[0], &s[1]);
    *x = ek_fold_half(*x, we, wo, &s[2], &s[3]);
}

/* acc[i] += dot(2 * x_i, w) for the four pixels i of the buffer x (`groups` groups) and one
 * weight row w of 4 * groups int8 (any alignment); returns w + 4 * groups, the next row of a
 * filter whose rows are padded to whole groups.  Two groups per iteration: 28 instructions
 * for 32 MACs. */
static EK_ALWAYS_INLINE const int8_t *ek_dot_fold_4x1(const int32_t *x, const int8_t *w, int32_t groups,
                                                      int32_t acc[4])
{
    int32_t s[4] = {acc[0], acc[1], acc[2], acc[3]};
    const int32_t *const end = x + EK_FOLD_GROUP_WORDS * groups;
    if (groups & 1) {
        ek_fold_group(&x, &w, s);
    }
    while (x != end) {
        ek_fold_group(&x, &w, s);
        ek_compiler_barrier();     /* the next group's weight load stays below these SMLADs */
        ek_fold_group(&x, &w, s);
    }
    acc[0] = s[0];
    acc[1] = s[1];
    acc[2] = s[2];
    acc[3] = s[3];
    return w;
}

/* ek_requantize(a, M, -R) + off from the doubled accumulator a2 = 2a, with
 * k = 2^(R-1) + off * 2^R, for M in [0, 2^31), R in [1, 23], off in [-128, 127], |a| < 2^30:
 *     (SMMLAR(a2, M, k + (a2 >> 31))) >> R
 * Proof.  SMMLAR(a2, M, c) = c + floor((2aM + 2^31) / 2^32) = c + q with
 * q = floor((aM + 2^30) / 2^31), which is SRDHM(a, M) for M >= 0 (ek_requantize_pos above).
 * RDivPOT(q, R), ties away from zero, is floor((q + 2^(R-1) - [q < 0]) / 2^R): TFLite adds 1
 * to q >> R when the remainder exceeds 2^(R-1) - 1 + [q < 0].  [q < 0] may be read as
 * [a < 0] = -(a2 >> 31): they differ only at q = 0 (a < 0, aM >= -2^30), not a tie for
 * R >= 1.  off * 2^R inside the floor is off outside it.  No step leaves int32: |q| <= 2^30,
 * |k| = 2^(R-1) * |1 + 2 off| <= 255 * 2^22, so |q + k - 1| < 2^31.  Five instructions an output
 * with the store: ADD (k + (a2 ASR #31)), SMMLAR, ASR, SSAT, STRB. */
static inline int32_t ek_fold_requantize(int32_t a2, int32_t multiplier, int32_t k, int32_t r)
{
    return ek_smmlar(a2, multiplier, k + (a2 >> 31)) >> r;
}

#endif /* EK_DOT_S8_DSP_H */
