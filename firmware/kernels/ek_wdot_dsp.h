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
 *   ek_wdot_lut4_dsp     lut4 row (portable layout): codebook pairs packed per SMLAD
 *   ek_wdot_lut8_dsp     lut8 row (portable layout): the same with byte indices
 *   ek_wdot_sparse_dsp   sparse row (4- or 8-bit deltas) against one input vector (FC; the
 *                        sparse convolution has its own four-pixel walk,
 *                        ek_conv2d_s8_sparse_dsp.c)
 *   ek_fc_q, ek_fc_q_prepare, ek_fc_q_out   an FC layer's requantization, params in locals
 *   ek_wc_fold_scratch_at, ek_wc_split_patches, ek_wc_unpack_rows   the pieces of the _dsp
 *                        convolutions' folded GEMM (w4, lut4, lut8, huff): their scratch,
 *                        four pixels' patches split into the 4-pixel buffer, rows unpacked
 *
 * Each _dsp kernel's layer loop is in its own file (ek_conv2d_s8_<w>_dsp.c, ek_fc_s8_<w>_dsp.c);
 * the dot products, unpacking and requantization it calls are here, in ek_wdot.h (the rows'
 * walk ek_wrows, the patch ek_wc_patch, the Huffman decoder), ek_dot_s8_dsp.h and
 * ek_conv2d_fold_dsp.h (the folded GEMM ek_fold_gemm).
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
 * Sums wrap modulo 2^32 like the reference kernels' int32 accumulators.  The FC kernels
 * requantize as ek_fc_s8_dsp (ek_fc_q_out); the convolutions (w4, lut4, lut8, huff, sparse) take
 * the folded form's per-channel blocks from the exporter instead of bias, mult and shift (see
 * "the _dsp convolutions' folded GEMM" below).
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

/* acc + dot(x, row) for a lut4 row (portable layout) with the codebook `table`.  Nibble j of a
 * word of indices is weight j: the SMLAD pairs {0, 2}, {1, 3}, {4, 6}, {5, 7} are nibbles
 * {0, 2}, {1, 3}, {4, 6}, {5, 7}. */
static EK_ALWAYS_INLINE int32_t ek_wdot_lut4_dsp(const int8_t *x, const uint8_t *codes, const int8_t *table,
                                                 int32_t K, int32_t acc)
{
    for (int32_t g = K >> 3; g > 0; --g) {
        const uint32_t i = ek_read_u32(codes);
        const int32_t x0 = ek_read_s8x4(x), x1 = ek_read_s8x4(x + 4);
        codes += 4;
        x += 8;
        acc = ek_smlad(ek_sxtb16(x0), ek_pair16(table[i & 15u], table[(i >> 8) & 15u]), acc);
        acc = ek_smlad(ek_sxtb16_ror8(x0), ek_pair16(table[(i >> 4) & 15u], table[(i >> 12) & 15u]), acc);
        acc = ek_smlad(ek_sxtb16(x1), ek_pair16(table[(i >> 16) & 15u], table[(i >> 24) & 15u]), acc);
        acc = ek_smlad(ek_sxtb16_ror8(x1), ek_pair16(table[(i >> 20) & 15u], table[i >> 28]), acc);
    }
    return (int32_t)((uint32_t)acc + (uint32_t)ek_wdot_lut4(x, codes, table, K & 7));
}

/* acc + dot(x, row) for a lut8 row (portable layout): byte j of a word of indices is weight j. */
static EK_ALWAYS_INLINE int32_t ek_wdot_lut8_dsp(const int8_t *x, const uint8_t *codes, const int8_t *table,
                                                 int32_t K, int32_t acc)
{
    for (int32_t g = K >> 2; g > 0; --g) {
        const int32_t x0 = ek_read_s8x4(x);
        x += 4;
        acc = ek_smlad(ek_sxtb16(x0), ek_pair16(table[codes[0]], table[codes[2]]), acc);
        acc = ek_smlad(ek_sxtb16_ror8(x0), ek_pair16(table[codes[1]], table[codes[3]]), acc);
        codes += 4;
    }
    return (int32_t)((uint32_t)acc + (uint32_t)ek_wdot_lut8(x, codes, table, K & 3));
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

/* FC requantization with the params in locals (int8 stores may alias the params' fields), as
 * ek_fc_s8_dsp: double rounding when double_round, else single rounding, with a per-tensor
 * multiplier prepared once.  (ek_fc_q_prepare is always inlined so that the struct's fields
 * become locals from the first passes on: folded late, they cost the loops a register.) */
typedef struct {
    const int32_t *mult, *shift;
    int32_t output_offset, act_min, act_max;
    int32_t double_round, per_tensor;
    ek_requant_1r_q layer;             /* mult[0], shift[0] prepared */
} ek_fc_q;

static EK_ALWAYS_INLINE ek_fc_q ek_fc_q_prepare(const ek_fc_params *p)
{
    const ek_fc_q q = {.mult = p->mult, .shift = p->shift, .output_offset = p->output_offset,
                       .act_min = p->act_min, .act_max = p->act_max, .double_round = p->double_round != 0,
                       .per_tensor = p->per_tensor, .layer = ek_requant_1r_prepare(p->mult[0], p->shift[0])};
    return q;
}

/* The int8 output of FC output o for the accumulator acc (the folded bias included). */
static EK_ALWAYS_INLINE int8_t ek_fc_q_out(const ek_fc_q *q, int32_t acc, int32_t o)
{
    if (q->double_round) {
        acc = ek_requantize(acc, q->mult[o], q->shift[o]);
    } else {
        acc = q->per_tensor ? ek_requant_1r_apply(&q->layer, acc) : ek_requantize_1r(acc, q->mult[o], q->shift[o]);
    }
    acc += q->output_offset;
    return (int8_t)ek_clamp_i32(acc, q->act_min, q->act_max);
}

/* ---- the _dsp convolutions' folded GEMM (w4, lut4, lut8, huff) ---------------------------------
 * Their arrays are the folded form's (ek_conv2d.h), written by the exporter: the bias argument
 * holds each output channel's block {2 * bias, M, k, R} (edgekit.lower.packing.
 * pack_conv_fold_blocks) and the params' mult and shift are NULL; the exporter gives these
 * kernels only layers whose accumulators stay under 2^30 (conv_fold_range_ok; any other layer
 * takes the portable kernel).  Four output pixels' patches are split once, doubled, into the
 * 4-pixel buffer (ek_wc_split_patches), weight rows are unpacked or decoded into int8 rows
 * zero-padded to whole groups of four, and ek_fold_gemm (ek_conv2d_fold_dsp.h) runs them against
 * the four pixels (ek_dot_fold_4x1: SMLAD on the split patches) and requantizes each output with
 * one SMMLAR. */

/* Rows the lut4 and lut8 _dsp convolutions unpack at a time, for every four output pixels: the
 * folded GEMM's call and loop overheads spread over this many channels. */
#define EK_WC_FOLD_ROWS 4

/* Groups of four weights in a row of K (each unpacked row takes 4 * groups bytes). */
static inline int32_t ek_wc_groups(int32_t K) { return (K + 3) >> 2; }

/* The scratch of a _dsp format convolution (ek_wcode.h's table), 4-byte aligned: */
typedef struct {
    int32_t *buf;              /* the 4-pixel buffer: EK_FOLD_GROUP_WORDS * groups words */
    int8_t *rows;              /* the unpacked or decoded rows: row_count * 4 * groups bytes */
    int8_t *col;               /* the K-byte patch of a pixel, when ek_wc_needs_patch */
} ek_wc_fold_scratch;

static inline ek_wc_fold_scratch ek_wc_fold_scratch_at(int8_t *scratch, int32_t groups, int32_t row_count)
{
    ek_wc_fold_scratch s;
    s.buf = (int32_t *)(void *)scratch;
    s.rows = (int8_t *)(s.buf + EK_FOLD_GROUP_WORDS * groups);
    s.col = s.rows + row_count * 4 * groups;
    return s;
}

/* The patches of output pixels px .. px+count-1 (count 1..4) split, doubled, into the 4-pixel
 * buffer buf (ek_fold_split); col: scratch for a patch that is built. */
static inline void ek_wc_split_patches(const ek_conv2d_params *c, const int8_t *input, int32_t px, int32_t count,
                                       int32_t K, int32_t *buf, int8_t *col)
{
    for (int32_t i = 0; i < count; ++i) {
        const int8_t *patch = ek_wc_patch(c, input, (px + i) / c->out_w, (px + i) % c->out_w, col);
        ek_fold_split(buf + 2 * i, patch, K);
    }
}

/* The walk's next n rows (W4, LUT4 or LUT8) as int8 rows of 4 * groups bytes each (zero-padded)
 * into rows. */
static EK_ALWAYS_INLINE void ek_wc_unpack_rows(ek_wrows *r, const int fmt, int8_t *rows, int32_t n, int32_t groups)
{
    for (int32_t j = 0; j < n; ++j) {
        ek_wrows_unpack(r, fmt, rows + j * 4 * groups, 4 * groups);
    }
}

#endif /* EK_WDOT_DSP_H */
