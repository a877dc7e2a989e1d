/*
 * ek_wdot_dsp.h - row dot products over encoded weights with the Armv7E-M SIMD
 * instructions (ek_dsp.h, whose exact C twins run the same code on the host),
 * for the ek_*_s8_<weights>_dsp kernels (internal; formats and layouts in
 * ek_wcode.h).
 *
 * Inputs are split as ek_dot_s8_dsp.h does: eight int8 x0..x7 (two words) give
 * the halfword pairs xa = {x0, x2}, xb = {x1, x3} (SXTB16 and SXTB16 ROR #8 of
 * the first word), xc = {x4, x6}, xd = {x5, x7} (of the second), and SMLAD
 * multiplies each with the matching pair of weights.
 *
 *   ek_wdot_w4_dsp_1x2   w4 _dsp layout, a pair of rows (interleaved groups)
 *   ek_wdot_w4_dsp_1x1   w4 _dsp layout, one row (an odd last row)
 *   ek_wdot_lut4_dsp     lut4 row (portable layout): codebook pairs packed per SMLAD,
 *                        against one input vector or two (two conv pixels)
 *   ek_wdot_lut8_dsp     lut8 row (portable layout): the same with byte indices
 *   ek_wdot_sparse_dsp   sparse row (4- or 8-bit deltas) against one input vector (FC; the
 *                        sparse convolution has its own four-pixel walk,
 *                        ek_conv2d_s8_sparse_dsp.c)
 *   ek_wrows_dot_dsp, ek_wrows_dot_1x2_dsp   the same for the current row (pair) of a
 *                        walk (ek_wrows, ek_wdot.h), whatever its format
 *   ek_wc_q, ek_wc_out   requantization of a conv or FC output, params in locals
 *   ek_wc_rows_dsp       every output channel of one input vector (or two)
 *   ek_wc_conv_dsp, ek_wc_fc_dsp   the _dsp kernels' layer loops, one per op for every
 *                        format (the format a compile-time constant, EK_WF_*)
 *   ek_wc_conv_huff_dsp  the Huffman convolution: decoded blocks through the folded GEMM
 *                        (ek_conv2d_fold_dsp.h), as the int8 ek_conv2d_s8_dsp runs
 *
 * w4: a group's word holds weight ORDER[j] in nibble j (ek_wcode.h), so
 * (word << 12), (word << 8), (word << 4) and word, masked with 0xF000F000, are
 * the halfword pairs 4096 * {w0, w2}, 4096 * {w1, w3}, 4096 * {w4, w6} and
 * 4096 * {w5, w7}: each nibble lands in the top four bits of its halfword,
 * where it is a signed int16 already (one AND with a shifted operand per pair,
 * no sign extension).  The SMLAD sums are 4096 times the dot product; they are
 * exact as long as they stay within int32: each product has |x * w| <= 128 * 8
 * = 2^10, so 4096 * |x * w| <= 2^22, and a run of EK_W4_DSP_GROUPS = 32 groups
 * (256 products per row) sums to at most 2^30 < 2^31 in magnitude, every
 * partial sum included.  Each run's sum, a multiple of 4096, is divided exactly
 * by an arithmetic shift of 12 and added to the row's total modulo 2^32 (as the
 * reference's int32 accumulator wraps).
 *
 * lut4 / lut8: each weight is a codebook load; two of them are packed into one
 * halfword pair (PKHBT) so that one SMLAD adds both products: per pair of
 * weights two index extractions, two loads, a pack and the SMLAD.
 *
 * sparse: the deltas are read a word at a time and each is added to the input
 * pointer with one UXTAB (zero-extended byte of a rotated word, added): four
 * 8-bit deltas per word, or eight 4-bit deltas as two words of four bytes
 * (word & 0x0F0F0F0F: the even entries; (word >> 4) & 0x0F0F0F0F: the odd ones).
 * Four values per word split by SXTB16 into {v0, v2}, {v1, v3} meet the gathered
 * inputs packed the same way: per entry about one UXTAB, one input load, and a
 * quarter of a word load, a pack and an SMLAD.  (FC only: see ek_wdot_sparse_dsp.)
 *
 * Sums wrap modulo 2^32 like the reference kernels' int32 accumulators.  The
 * requantization is ek_conv2d_s8_1x1_dsp's (conv) and ek_fc_s8_dsp's (FC), with
 * the params copied into locals.
 */
#ifndef EK_WDOT_DSP_H
#define EK_WDOT_DSP_H

#include "ek_conv2d_fold_dsp.h"
#include "ek_dot_s8_dsp.h"
#include "ek_dsp.h"
#include "ek_wdot.h"

#define EK_W4_DSP_MASK 0xF000F000u
#define EK_W4_DSP_GROUPS 32            /* groups of eight weights per exact run (see above) */

/* x, hidden from the optimizer: a constant kept in a register, so that "AND with a shifted
 * register" takes it (one instruction) instead of a shift and an AND with an immediate. */
static inline uint32_t ek_in_register(uint32_t x)
{
#if defined(__GNUC__)
    __asm__("" : "+r"(x));
#endif
    return x;
}

static inline uint32_t ek_read_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);                  /* one LDR on Cortex-M (unaligned access allowed) */
    return v;
}

/* The four weight pairs of a w4 _dsp group word, times 4096, against the split inputs. */
static inline int32_t ek_w4_dsp_group(uint32_t w, uint32_t mask, int32_t xa, int32_t xb, int32_t xc,
                                      int32_t xd, int32_t acc)
{
    acc = ek_smlad(xa, (int32_t)((w << 12) & mask), acc);
    acc = ek_smlad(xb, (int32_t)((w << 8) & mask), acc);
    acc = ek_smlad(xc, (int32_t)((w << 4) & mask), acc);
    return ek_smlad(xd, (int32_t)(w & mask), acc);
}

/* acc[c] += dot(x, row c), c = 0, 1: a pair of w4 rows in the _dsp layout (their groups
 * alternating, then row 0's tail, then row 1's), K weights each. */
static inline void ek_wdot_w4_dsp_1x2(const int8_t *x, const uint8_t *b, int32_t K, int32_t acc[2])
{
    const uint32_t mask = ek_in_register(EK_W4_DSP_MASK);
    uint32_t s0 = (uint32_t)acc[0], s1 = (uint32_t)acc[1];
    for (int32_t left = K >> 3; left > 0; left -= EK_W4_DSP_GROUPS) {
        int32_t a0 = 0, a1 = 0;
        for (int32_t g = ek_min_i32(left, EK_W4_DSP_GROUPS); g > 0; --g) {
            const int32_t x0 = ek_read_s8x4(x), x1 = ek_read_s8x4(x + 4);
            x += 8;
            const int32_t xa = ek_sxtb16(x0), xb = ek_sxtb16_ror8(x0);
            const int32_t xc = ek_sxtb16(x1), xd = ek_sxtb16_ror8(x1);
            a0 = ek_w4_dsp_group(ek_read_u32(b), mask, xa, xb, xc, xd, a0);
            a1 = ek_w4_dsp_group(ek_read_u32(b + 4), mask, xa, xb, xc, xd, a1);
            b += 8;
        }
        s0 += (uint32_t)(a0 >> 12);    /* exact: a multiple of 4096 */
        s1 += (uint32_t)(a1 >> 12);
    }
    const int32_t tail = K & 7;
    if (tail) {
        s0 += (uint32_t)ek_wdot_w4(x, b, tail);
        s1 += (uint32_t)ek_wdot_w4(x, b + ((tail + 1) >> 1), tail);
    }
    acc[0] = (int32_t)s0;
    acc[1] = (int32_t)s1;
}

/* acc + dot(x, row): one w4 row in the _dsp layout (its groups, then its tail). */
static inline int32_t ek_wdot_w4_dsp_1x1(const int8_t *x, const uint8_t *b, int32_t K, int32_t acc)
{
    const uint32_t mask = ek_in_register(EK_W4_DSP_MASK);
    uint32_t s = (uint32_t)acc;
    for (int32_t left = K >> 3; left > 0; left -= EK_W4_DSP_GROUPS) {
        int32_t a = 0;
        for (int32_t g = ek_min_i32(left, EK_W4_DSP_GROUPS); g > 0; --g) {
            const int32_t x0 = ek_read_s8x4(x), x1 = ek_read_s8x4(x + 4);
            x += 8;
            a = ek_w4_dsp_group(ek_read_u32(b), mask, ek_sxtb16(x0), ek_sxtb16_ror8(x0), ek_sxtb16(x1),
                                ek_sxtb16_ror8(x1), a);
            b += 4;
        }
        s += (uint32_t)(a >> 12);
    }
    if (K & 7) {
        s += (uint32_t)ek_wdot_w4(x, b, K & 7);
    }
    return (int32_t)s;
}

/* Halfword pair {lo, hi} of two int16 values: PKHBT (GCC 12 writes UXTH and ORR for the C). */
static inline int32_t ek_pair16(int32_t lo, int32_t hi)
{
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    int32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(lo), "r"(hi));
    return r;
#else
    return (int32_t)(((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16));
#endif
}

/* *s0 += SMLAD(xv, w) and, for a second pixel (two != 0), *s1 += SMLAD(yv, w): one halfword
 * pair of weights against one or two pixels' halfword pairs. */
static EK_ALWAYS_INLINE void ek_smlad_one_or_two(int32_t *s0, int32_t *s1, const int two, int32_t xv, int32_t yv,
                                                 int32_t w)
{
    *s0 = ek_smlad(xv, w, *s0);
    if (two) {
        *s1 = ek_smlad(yv, w, *s1);
    }
}

/* acc[0] += dot(x, row) for a lut4 row (portable layout) with the codebook `table` and, when
 * two != 0 (a constant after inlining), acc[1] += dot(x + dp, row): two conv pixels share each
 * pair of codebook values.  Nibble j of a word of indices is weight j: the pairs {0, 2},
 * {1, 3}, {4, 6}, {5, 7} are nibbles {0, 2}, {1, 3}, {4, 6}, {5, 7}. */
static EK_ALWAYS_INLINE void ek_wdot_lut4_dsp(const int8_t *x, int32_t dp, const int two, const uint8_t *codes,
                                              const int8_t *table, int32_t K, int32_t acc[2])
{
    int32_t s0 = acc[0], s1 = two ? acc[1] : 0;
    for (int32_t g = K >> 3; g > 0; --g) {
        const uint32_t i = ek_read_u32(codes);
        const int32_t x0 = ek_read_s8x4(x), x1 = ek_read_s8x4(x + 4);
        const int32_t y0 = two ? ek_read_s8x4(x + dp) : 0, y1 = two ? ek_read_s8x4(x + dp + 4) : 0;
        codes += 4;
        x += 8;
        ek_smlad_one_or_two(&s0, &s1, two, ek_sxtb16(x0), ek_sxtb16(y0),
                            ek_pair16(table[i & 15u], table[(i >> 8) & 15u]));
        ek_smlad_one_or_two(&s0, &s1, two, ek_sxtb16_ror8(x0), ek_sxtb16_ror8(y0),
                            ek_pair16(table[(i >> 4) & 15u], table[(i >> 12) & 15u]));
        ek_smlad_one_or_two(&s0, &s1, two, ek_sxtb16(x1), ek_sxtb16(y1),
                            ek_pair16(table[(i >> 16) & 15u], table[(i >> 24) & 15u]));
        ek_smlad_one_or_two(&s0, &s1, two, ek_sxtb16_ror8(x1), ek_sxtb16_ror8(y1),
                            ek_pair16(table[(i >> 20) & 15u], table[i >> 28]));
    }
    acc[0] = (int32_t)((uint32_t)s0 + (uint32_t)ek_wdot_lut4(x, codes, table, K & 7));
    if (two) {
        acc[1] = (int32_t)((uint32_t)s1 + (uint32_t)ek_wdot_lut4(x + dp, codes, table, K & 7));
    }
}

/* The same for a lut8 row. */
static EK_ALWAYS_INLINE void ek_wdot_lut8_dsp(const int8_t *x, int32_t dp, const int two, const uint8_t *codes,
                                              const int8_t *table, int32_t K, int32_t acc[2])
{
    int32_t s0 = acc[0], s1 = two ? acc[1] : 0;
    for (int32_t g = K >> 2; g > 0; --g) {
        const int32_t x0 = ek_read_s8x4(x);
        const int32_t y0 = two ? ek_read_s8x4(x + dp) : 0;
        x += 4;
        ek_smlad_one_or_two(&s0, &s1, two, ek_sxtb16(x0), ek_sxtb16(y0), ek_pair16(table[codes[0]], table[codes[2]]));
        ek_smlad_one_or_two(&s0, &s1, two, ek_sxtb16_ror8(x0), ek_sxtb16_ror8(y0),
                            ek_pair16(table[codes[1]], table[codes[3]]));
        codes += 4;
    }
    acc[0] = (int32_t)((uint32_t)s0 + (uint32_t)ek_wdot_lut8(x, codes, table, K & 3));
    if (two) {
        acc[1] = (int32_t)((uint32_t)s1 + (uint32_t)ek_wdot_lut8(x + dp, codes, table, K & 3));
    }
}

/* p + the byte (word >> rot) & 0xFF, rot 0, 8, 16 or 24: one UXTAB (base Armv7-M).  Its rotation
 * is an immediate, so one asm per value; rot is a constant after inlining and the switch folds
 * away (and still compiles at -O0, where an "i" operand would not). */
static EK_ALWAYS_INLINE const int8_t *ek_add_byte(const int8_t *p, uint32_t word, const int rot)
{
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    switch (rot) {
    case 8:
        __asm__("uxtab %0, %0, %1, ror #8" : "+r"(p) : "r"(word));
        break;
    case 16:
        __asm__("uxtab %0, %0, %1, ror #16" : "+r"(p) : "r"(word));
        break;
    case 24:
        __asm__("uxtab %0, %0, %1, ror #24" : "+r"(p) : "r"(word));
        break;
    default:
        __asm__("uxtab %0, %0, %1" : "+r"(p) : "r"(word));
        break;
    }
    return p;
#else
    return p + ((word >> rot) & 0xFFu);
#endif
}

/* s0 + dot of four entries of a sparse walk: *px moved by each delta in turn (the bytes at
 * rotations r0 of a, r1 of b, r2 of a and r3 of b) and the input there taken; the values the four
 * int8 of v4.  The gathered inputs in pairs {0, 2}, {1, 3} meet SXTB16's {v0, v2}, {v1, v3}. */
static EK_ALWAYS_INLINE int32_t ek_sparse_quad(const int8_t **px, int32_t s0, uint32_t a, uint32_t b, const int r0,
                                               const int r1, const int r2, const int r3, int32_t v4)
{
    const int8_t *p = *px;
    p = ek_add_byte(p, a, r0);
    const int32_t x0 = p[0];
    p = ek_add_byte(p, b, r1);
    const int32_t x1 = p[0];
    p = ek_add_byte(p, a, r2);
    const int32_t x2 = p[0];
    p = ek_add_byte(p, b, r3);
    const int32_t x3 = p[0];
    *px = p;
    s0 = ek_smlad(ek_pair16(x0, x2), ek_sxtb16(v4), s0);
    return ek_smlad(ek_pair16(x1, x3), ek_sxtb16_ror8(v4), s0);
}

/* s0 + x * w, wrapping (one entry of a sparse walk). */
static inline int32_t ek_mac_wrap(int32_t s0, int32_t x, int32_t w) { return (int32_t)((uint32_t)s0 + ek_wmul(x, w)); }

/* acc + dot(x, row) over the n entries of a sparse row starting at entry e (global number;
 * delta_bits 4 or 8). */
static EK_ALWAYS_INLINE int32_t ek_wdot_sparse_dsp(const int8_t *x, const uint8_t *deltas, const int8_t *values,
                                                   const int32_t delta_bits, uint32_t e, uint32_t n, int32_t acc)
{
    const int8_t *px = x;
    const int8_t *v = values + e;
    int32_t s0 = acc;
    if (delta_bits == 8) {
        const uint8_t *d = deltas + e;
        for (uint32_t j = n >> 2; j > 0; --j) {
            const uint32_t d4 = ek_read_u32(d);
            const int32_t v4 = ek_read_s8x4(v);
            d += 4;
            v += 4;
            s0 = ek_sparse_quad(&px, s0, d4, d4, 0, 8, 16, 24, v4);
        }
        for (uint32_t j = n & 3u; j > 0; --j) {
            px += *d++;
            s0 = ek_mac_wrap(s0, px[0], *v++);
        }
    } else {
        if (n > 0 && (e & 1u)) {           /* the row starts in a high nibble */
            px += deltas[e >> 1] >> 4;
            s0 = ek_mac_wrap(s0, px[0], *v++);
            ++e;
            --n;
        }
        /* entry 2i: byte i of even, entry 2i+1: byte i of odd */
        const uint8_t *d = deltas + (e >> 1);
        const uint32_t low = ek_in_register(0x0F0F0F0Fu);
        for (uint32_t j = n >> 3; j > 0; --j) {
            const uint32_t d8 = ek_read_u32(d);
            const uint32_t even = d8 & low, odd = (d8 >> 4) & low;
            d += 4;
            s0 = ek_sparse_quad(&px, s0, even, odd, 0, 0, 8, 8, ek_read_s8x4(v));
            s0 = ek_sparse_quad(&px, s0, even, odd, 16, 16, 24, 24, ek_read_s8x4(v + 4));
            v += 8;
        }
        if (n & 4u) {                       /* four more entries: two bytes of deltas */
            const uint32_t d4 = (uint32_t)d[0] | (uint32_t)d[1] << 8;
            const uint32_t even = d4 & low, odd = (d4 >> 4) & low;
            d += 2;
            s0 = ek_sparse_quad(&px, s0, even, odd, 0, 0, 8, 8, ek_read_s8x4(v));
            v += 4;
        }
        for (uint32_t j = (n & 3u) >> 1; j > 0; --j) {  /* a byte: two entries, low nibble first */
            const uint32_t b = *d++;
            px += b & 15u;
            s0 = ek_mac_wrap(s0, px[0], v[0]);
            px += b >> 4;
            s0 = ek_mac_wrap(s0, px[0], v[1]);
            v += 2;
        }
        if (n & 1u) {                       /* the row ends in a low nibble */
            px += *d & 15u;
            s0 = ek_mac_wrap(s0, px[0], *v);
        }
    }
    return s0;
}

/* acc[0] += dot(x, the walk's row) (ek_wrows, ek_wdot.h) and, for a second vector (two != 0;
 * lut4 and lut8 only), acc[1] += dot(x + dp, row); the walk moved to the next row.  W4
 * and S8 take this for the odd last row of their _dsp layouts (a W4 row's groups then its tail;
 * a plain S8 row), their pairs ek_wrows_dot_1x2_dsp. */
static EK_ALWAYS_INLINE void ek_wrows_dot_dsp(ek_wrows *r, const int fmt, const int8_t *x, int32_t dp,
                                              const int two, int32_t acc[2])
{
    switch (fmt) {
    case EK_WF_S8:
        acc[0] = ek_dot_s8_1x1(x, ek_wrows_s8_row(r), r->K, acc[0]);
        break;
    case EK_WF_W4:
        acc[0] = ek_wdot_w4_dsp_1x1(x, r->codes, r->K, acc[0]);
        break;
    case EK_WF_LUT4:
        ek_wdot_lut4_dsp(x, dp, two, r->codes, r->table, r->K, acc);
        break;
    case EK_WF_LUT8:
        ek_wdot_lut8_dsp(x, dp, two, r->codes, r->table, r->K, acc);
        break;
    default:                                /* SPARSE4, SPARSE8 */
        acc[0] = ek_wdot_sparse_dsp(x, r->codes, r->table, fmt == EK_WF_SPARSE4 ? 4 : 8, r->e,
                                    *r->index - r->e, acc[0]);
        break;
    }
    ek_wrows_next(r, fmt);
}

/* acc[c] += dot(x, row c) for the walk's next pair of rows (W4 _dsp layout, or S8 rows of a
 * decoded _dsp Huffman block: interleaved), the walk moved past them. */
static EK_ALWAYS_INLINE void ek_wrows_dot_1x2_dsp(ek_wrows *r, const int fmt, const int8_t *x, int32_t acc[2])
{
    if (fmt == EK_WF_S8) {
        ek_dot_s8_1x2(x, ek_wrows_s8_row(r), r->K, acc);
    } else {
        ek_wdot_w4_dsp_1x2(x, r->codes, r->K, acc);
    }
    r->codes += 2 * r->stride;
}

/* Requantization with the params in locals (int8 stores may alias the params' fields):
 *   conv (ek_wc_q_conv): ek_requantize_pos, as ek_conv2d_s8_1x1_dsp (multipliers in
 *        [2^30, 2^31), which the exporter guarantees);
 *   FC (ek_wc_q_fc): as ek_fc_s8_dsp, double rounding when double_round, else single rounding
 *        with a per-tensor multiplier prepared once.
 * q.fc is a constant: a kernel's loops hold one of the two.  (The prepare functions are always
 * inlined so that the constant is seen from the first passes on; folded late, it cost FC
 * kernels a register in their loops.) */
typedef struct {
    const int32_t *mult, *shift;
    int32_t output_offset, act_min, act_max;
    int32_t fc, double_round, per_tensor;
    ek_requant_1r_q layer;             /* FC: mult[0], shift[0] prepared */
} ek_wc_q;

static EK_ALWAYS_INLINE ek_wc_q ek_wc_q_conv(const ek_conv2d_params *p)
{
    const ek_wc_q q = {.mult = p->mult, .shift = p->shift, .output_offset = p->output_offset,
                       .act_min = p->act_min, .act_max = p->act_max, .fc = 0};
    return q;
}

static EK_ALWAYS_INLINE ek_wc_q ek_wc_q_fc(const ek_fc_params *p)
{
    const ek_wc_q q = {.mult = p->mult, .shift = p->shift, .output_offset = p->output_offset,
                       .act_min = p->act_min, .act_max = p->act_max, .fc = 1,
                       .double_round = p->double_round != 0, .per_tensor = p->per_tensor,
                       .layer = ek_requant_1r_prepare(p->mult[0], p->shift[0])};
    return q;
}

/* The int8 output of channel o for the accumulator acc. */
static EK_ALWAYS_INLINE int8_t ek_wc_out(const ek_wc_q *q, int32_t acc, int32_t o)
{
    if (!q->fc) {
        acc = ek_requantize_pos(acc, q->mult[o], q->shift[o]);
    } else if (q->double_round) {
        acc = ek_requantize(acc, q->mult[o], q->shift[o]);
    } else {
        acc = q->per_tensor ? ek_requant_1r_apply(&q->layer, acc)
                            : ek_requantize_1r(acc, q->mult[o], q->shift[o]);
    }
    acc += q->output_offset;
    return (int8_t)ek_clamp_i32(acc, q->act_min, q->act_max);
}

/* out[o] = the output of bias[o] + dot(x, row o) for o = o0 .. end-1, the rows walked from
 * `rows` (at row o0), and when two != 0 (lut4, lut8) out[dout + o] that of x + dp.
 * S8 rows go by two pairs (ek_dot_s8_1x4), S8 and W4 rows by pairs, the rest one at a time. */
static EK_ALWAYS_INLINE void ek_wc_rows_dsp(ek_wrows r, const int fmt, const int8_t *x, int32_t dp,
                                            const int two, const int32_t *bias, const ek_wc_q *q,
                                            int8_t *out, int32_t dout, int32_t o0, int32_t end)
{
    int32_t o = o0;
    if (fmt == EK_WF_S8) {
        for (; o + 4 <= end; o += 4) {
            int32_t acc[4] = {bias[o], bias[o + 1], bias[o + 2], bias[o + 3]};
            ek_dot_s8_1x4(x, ek_wrows_s8_row(&r), ek_wrows_s8_row(&r) + 2 * r.K, r.K, acc);
            r.codes += 4 * r.stride;
            for (int32_t j = 0; j < 4; ++j) {
                out[o + j] = ek_wc_out(q, acc[j], o + j);
            }
        }
    }
    if (fmt == EK_WF_S8 || fmt == EK_WF_W4) {
        for (; o + 2 <= end; o += 2) {
            int32_t acc[2] = {bias[o], bias[o + 1]};
            ek_wrows_dot_1x2_dsp(&r, fmt, x, acc);
            out[o] = ek_wc_out(q, acc[0], o);
            out[o + 1] = ek_wc_out(q, acc[1], o + 1);
        }
        if (o < end) {                     /* an odd last row */
            int32_t acc[2] = {bias[o], 0};
            ek_wrows_dot_dsp(&r, fmt, x, 0, 0, acc);
            out[o] = ek_wc_out(q, acc[0], o);
        }
        return;
    }
    for (; o < end; ++o) {
        int32_t acc[2] = {bias[o], bias[o]};
        ek_wrows_dot_dsp(&r, fmt, x, dp, two, acc);
        out[o] = ek_wc_out(q, acc[0], o);
        if (two) {
            out[dout + o] = ek_wc_out(q, acc[1], o);
        }
    }
}

/* Output channels o0 .. end-1 of every output pixel of a conv layer, the rows walked from
 * `rows`; col: the patch's scratch.  Formats that take two vectors (lut4, lut8) take
 * two output pixels at a time when a 1x1 filter without padding reads the input pixels
 * themselves (in raster order, their outputs written channel by channel: out0[o], out1[o], then
 * o + 1). */
static EK_ALWAYS_INLINE void ek_wc_conv_rows_dsp(const ek_conv2d_params *c, const ek_wc_q *q,
                                                 const ek_wrows rows, const int fmt, const int8_t *input,
                                                 const int32_t *bias, int8_t *output, int8_t *col,
                                                 int32_t o0, int32_t end)
{
    const int32_t out_c = c->out_c, out_w = c->out_w;
    const int32_t pixels = c->out_h * out_w;
    const int pairs = fmt == EK_WF_LUT4 || fmt == EK_WF_LUT8;
    int32_t px = 0;
    if (pairs && !ek_wc_needs_patch(c)) {
        for (; px + 2 <= pixels; px += 2, output += 2 * out_c) {
            const int8_t *a0 = ek_wc_patch(c, input, px / out_w, px % out_w, NULL);
            const int8_t *a1 = ek_wc_patch(c, input, (px + 1) / out_w, (px + 1) % out_w, NULL);
            ek_wc_rows_dsp(rows, fmt, a0, (int32_t)(a1 - a0), 1, bias, q, output, out_c, o0, end);
        }
    }
    for (int32_t y = px / out_w, x = px % out_w; y < c->out_h; ++y, x = 0) {  /* one pixel at a time */
        for (; x < out_w; ++x, output += out_c) {
            const int8_t *patch = ek_wc_patch(c, input, y, x, col);
            ek_wc_rows_dsp(rows, fmt, patch, 0, 0, bias, q, output, 0, o0, end);
        }
    }
}

/* Outputs o0 .. end-1 of each of the `batch` rows of an FC layer (inputs of K = rows.K, outputs
 * of out_n), the rows walked from `rows`. */
static EK_ALWAYS_INLINE void ek_wc_fc_rows_dsp(const ek_wc_q *q, const ek_wrows rows, const int fmt,
                                               const int8_t *input, int32_t batch, int32_t out_n,
                                               const int32_t *bias, int8_t *output, int32_t o0, int32_t end)
{
    for (int32_t b = 0; b < batch; ++b) {
        const int8_t *in_b = input + (int64_t)b * rows.K;
        ek_wc_rows_dsp(rows, fmt, in_b, 0, 0, bias, q, output + (int64_t)b * out_n, 0, o0, end);
    }
}

/* The folded form (ek_conv2d.h) for a format convolution, when every channel's doubled
 * accumulator stays within int32 (|bias_folded| <= 2^28 and K < 2^15: |2a| < 2^29 + 2^30) and
 * the output offset is an int8: then ek_wc_fold_blocks writes each channel's block
 * {2 * bias, M, k, R} (as the exporter's pack_conv_fold does for int8 layers) into `block`. */
static inline int ek_wc_fold_blocks(const ek_conv2d_params *c, const int32_t *bias, int32_t K,
                                         int32_t *block)
{
    const int32_t off = c->output_offset;
    if (K >= 32768 || off < EK_INT8_MIN || off > EK_INT8_MAX) {
        return 0;
    }
    for (int32_t o = 0; o < c->out_c; ++o) {
        if (bias[o] < -(1 << 28) || bias[o] > (1 << 28)) {
            return 0;
        }
    }
    for (int32_t o = 0; o < c->out_c; ++o, block += 4) {
        const int32_t sh = c->shift[o];
        const int fold = sh >= EK_FOLD_SHIFT_MIN && sh <= EK_FOLD_SHIFT_MAX;
        block[0] = 2 * bias[o];
        block[1] = c->mult[o];
        block[2] = fold ? (1 << (-sh - 1)) + off * (1 << -sh) : sh;
        block[3] = fold ? -sh : 0;
    }
    return 1;
}

/* The patches of output pixels px .. px+count-1 (count 1..4) split into the 4-pixel buffer buf;
 * col: scratch for a patch that is built. */
static inline void ek_wc_fold_patches(const ek_conv2d_params *c, const int8_t *input, int32_t px, int32_t count,
                                      int32_t K, int32_t *buf, int8_t *col)
{
    for (int32_t i = 0; i < count; ++i) {
        const int8_t *patch = ek_wc_patch(c, input, (px + i) / c->out_w, (px + i) % c->out_w, col);
        ek_fold_split(buf + 2 * i, patch, K);
    }
}

/* Channels o0 .. o0+n-1 of every output pixel, four at a time, from the block's n rows (4 *
 * groups bytes each, zero-padded) through the folded GEMM; block: their {2 * bias, M, k, R}
 * blocks; output: the layer's output (channel o0 of pixel 0 at output + o0). */
static inline void ek_wc_fold_rows(const ek_conv2d_params *c, const int8_t *input, int32_t K, int32_t groups,
                                   const int8_t *rows, const int32_t *block, int8_t *output, int32_t o0,
                                   int32_t n, int32_t *buf, int8_t *col)
{
    const int32_t pixels = c->out_h * c->out_w;
    for (int32_t px = 0; px < pixels; px += 4) {
        const int32_t count = pixels - px >= 4 ? 4 : pixels - px;
        ek_wc_fold_patches(c, input, px, count, K, buf, col);
        ek_fold_gemm(c, buf, groups, count, rows, block + 4 * o0, output + (int64_t)px * c->out_c + o0, n);
    }
}

/* The _dsp Huffman convolution: block_rows rows at a time decoded into scratch, zero-padded to
 * whole groups of four, then every output pixel's patch, four pixels at a time, split into the
 * 4-pixel buffer and run through the folded GEMM against the block's channels.  scratch (ek_wcode.h):
 * the channel blocks (16 * out_c bytes), the 4-pixel buffer (32 * ceil(K / 4)), the decoded rows
 * (block_rows * 4 * ceil(K / 4)), then the K-byte patch when ek_wc_needs_patch.  A layer outside
 * the folded form's range (ek_wc_fold_blocks) runs the portable loops on plain decoded rows
 * in the same scratch (its patch after them).  Patches are rebuilt for every block. */
static inline void ek_wc_conv_huff_dsp(const ek_conv2d_wc_params *p, const int8_t *input, const int32_t *bias,
                                       int8_t *output, int8_t *scratch)
{
    const ek_conv2d_params *c = &p->conv;
    const ek_wcode *w = &p->w;
    const int32_t K = w->row_len, groups = (K + 3) >> 2, out_c = c->out_c;
    int32_t *block = (int32_t *)(void *)scratch;
    int32_t *buf = block + 4 * out_c;
    int8_t *rows = (int8_t *)(buf + EK_FOLD_GROUP_WORDS * groups);
    int8_t *col = rows + (int64_t)w->block_rows * 4 * groups;
    ek_huff_state bits;
    ek_huff_init(w, &bits);
    if (!ek_wc_fold_blocks(c, bias, K, block)) {
        for (int32_t o0 = 0; o0 < out_c; o0 += w->block_rows) {
            const int32_t n = ek_huff_rows(w, &bits, rows, o0, out_c, K);
            ek_wc_conv_rows(c, ek_wrows_s8(rows, K), EK_WF_S8, input, bias, output, col, o0, n);
        }
        return;
    }
    for (int32_t o0 = 0; o0 < out_c; o0 += w->block_rows) {
        const int32_t n = ek_huff_rows(w, &bits, rows, o0, out_c, 4 * groups);
        ek_wc_fold_rows(c, input, K, groups, rows, block, output, o0, n, buf, col);
    }
}

/* Rows unpacked at a time by ek_wc_conv_dsp: the folded GEMM's call and loop overheads spread
 * over this many channels. */
#define EK_WC_FOLD_ROWS 4

/* The _dsp conv kernel of format fmt (W4, LUT4 or LUT8; the portable layouts of ek_wcode.h).
 * lut4, lut8: four output pixels' patches split once into the 4-pixel buffer, then
 * EK_WC_FOLD_ROWS rows at a time unpacked from flash into a small buffer (indices looked up in
 * their codebook; a few rows, never the layer) and run through the int8 kernels' folded GEMM
 * (ek_conv2d_fold_dsp.h) against the four.  w4: w->block_rows rows at a time unpacked once
 * (nibbles sign-extended), then every output pixel's patch, four at a time, against them (the
 * patches rebuilt for every block, as the Huffman kernel does).  scratch (ek_wcode.h): the
 * channel blocks (16 * out_c bytes), the 4-pixel buffer (32 * ceil(K / 4)), the unpacked rows
 * (EK_WC_FOLD_ROWS or block_rows, times 4 * ceil(K / 4)), then the K-byte patch when
 * ek_wc_needs_patch.  A layer outside the folded form's range (ek_wc_fold_blocks) takes the
 * row-by-row dot products of ek_wc_conv_rows_dsp (lut4, lut8) or ek_wc_conv_rows (w4) straight
 * from flash, its patch in the same place. */
static EK_ALWAYS_INLINE void ek_wc_conv_dsp(const ek_conv2d_wc_params *p, const int8_t *input,
                                            const int32_t *bias, int8_t *output, int8_t *scratch, const int fmt)
{
    const ek_conv2d_params *c = &p->conv;
    const int32_t K = p->w.row_len, groups = (K + 3) >> 2, out_c = c->out_c;
    const int32_t pixels = c->out_h * c->out_w;
    int32_t *block = (int32_t *)(void *)scratch;
    int32_t *buf = block + 4 * out_c;
    int8_t *rows = (int8_t *)(buf + EK_FOLD_GROUP_WORDS * groups);
    int8_t *col = rows + (fmt == EK_WF_W4 ? p->w.block_rows : EK_WC_FOLD_ROWS) * 4 * groups;
    if (!ek_wc_fold_blocks(c, bias, K, block)) {
        if (fmt == EK_WF_W4) {
            ek_wc_conv_rows(c, ek_wrows_start(&p->w, fmt), fmt, input, bias, output, col, 0, out_c);
        } else {
            const ek_wc_q q = ek_wc_q_conv(c);
            ek_wc_conv_rows_dsp(c, &q, ek_wrows_start(&p->w, fmt), fmt, input, bias, output, col, 0, out_c);
        }
        return;
    }
    if (fmt == EK_WF_W4) {                 /* blocks of rows unpacked once, run over every pixel */
        const int32_t block_rows = p->w.block_rows > 0 ? p->w.block_rows : 1;
        ek_wrows r = ek_wrows_start(&p->w, fmt);
        for (int32_t o0 = 0; o0 < out_c; o0 += block_rows) {
            const int32_t n = ek_min_i32(block_rows, out_c - o0);
            for (int32_t j = 0; j < n; ++j) {
                ek_wrows_unpack(&r, fmt, rows + j * 4 * groups, 4 * groups);
            }
            ek_wc_fold_rows(c, input, K, groups, rows, block, output, o0, n, buf, col);
        }
        return;
    }
    for (int32_t px = 0; px < pixels; px += 4) {
        const int32_t count = pixels - px >= 4 ? 4 : pixels - px;
        ek_wc_fold_patches(c, input, px, count, K, buf, col);
        ek_wrows r = ek_wrows_start(&p->w, fmt);
        int8_t *out = output + (int64_t)px * out_c;
        for (int32_t o0 = 0; o0 < out_c; o0 += EK_WC_FOLD_ROWS) {
            const int32_t n = ek_min_i32(EK_WC_FOLD_ROWS, out_c - o0);
            for (int32_t j = 0; j < n; ++j) {
                ek_wrows_unpack(&r, fmt, rows + j * 4 * groups, 4 * groups);
            }
            ek_fold_gemm(c, buf, groups, count, rows, block + 4 * o0, out + o0, n);
        }
    }
}

/* The _dsp FC kernel of format fmt (W4, LUT4, LUT8, SPARSE or HUFF; scratch: the Huffman block
 * only), with one loop per sparse delta width.  The
 * shape in locals: the Huffman decoder is a call, after which p's fields would be loaded again. */
static EK_ALWAYS_INLINE void ek_wc_fc_dsp(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                                          int8_t *output, int8_t *scratch, const int fmt)
{
    const ek_wcode *w = &p->w;
    const int32_t batch = p->fc.rows, out_n = p->fc.out_n, K = w->row_len;
    const ek_wc_q q = ek_wc_q_fc(&p->fc);
    if (fmt == EK_WF_HUFF) {
        const int32_t block_rows = w->block_rows;
        ek_huff_state bits;
        ek_huff_init(w, &bits);
        for (int32_t o0 = 0; o0 < out_n; o0 += block_rows) {
            const int32_t end = o0 + ek_huff_block(w, &bits, scratch, o0, out_n, 1);
            ek_wc_fc_rows_dsp(&q, ek_wrows_s8(scratch, K), EK_WF_S8, input, batch, out_n, bias, output, o0, end);
        }
    } else if (fmt == EK_WF_SPARSE && w->delta_bits == 8) {
        ek_wc_fc_rows_dsp(&q, ek_wrows_start(w, EK_WF_SPARSE8), EK_WF_SPARSE8, input, batch, out_n, bias,
                          output, 0, out_n);
    } else if (fmt == EK_WF_SPARSE) {
        ek_wc_fc_rows_dsp(&q, ek_wrows_start(w, EK_WF_SPARSE4), EK_WF_SPARSE4, input, batch, out_n, bias,
                          output, 0, out_n);
    } else {
        ek_wc_fc_rows_dsp(&q, ek_wrows_start(w, fmt), fmt, input, batch, out_n, bias, output, 0, out_n);
    }
}

#endif /* EK_WDOT_DSP_H */
