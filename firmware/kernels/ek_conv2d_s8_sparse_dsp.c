/* ek_conv2d_s8_sparse_dsp.c - 2-D convolution with sparse weights (the portable layout,
 * ek_wcode.h), four output pixels per pass.  Same results as ek_conv2d_s8_sparse.  scratch
 * (ek_wcode.h's table, 4-byte aligned): the 4-pixel buffer, then two int8 patches when
 * ek_wc_needs_patch.
 *
 * Per pass, the inputs of four output pixels (for a 1x1 filter without padding the input pixels
 * themselves, else their patches built by ek_wc_patch) are written once into the 4-pixel buffer
 * of scratch (4-byte aligned: LDRD): channel k is two words, X01 = x0[k] + 2^23 * x1[k] and
 * X23 = x2[k] + 2^23 * x3[k].
 * Each row's walk then reads each entry's delta and value once for the four pixels: the delta
 * moves a pointer by that many buffer channels, one LDRD brings X01 and X23, and two SMLALs add
 * value * X into two 64-bit accumulators, i.e. 2^23 * S1 + S0 and 2^23 * S3 + S2 with S_i the
 * dot product of pixel i: six instructions an entry (LDRB or UBFX, LDRSB, ADD, LDRD, 2 SMLAL)
 * for four pixels.  The two sums in one accumulator come apart exactly while |S0| < 2^22, which
 * holds for up to 255 entries (|x * w| <= 2^14): the accumulator starts at 2^22, so its low 23
 * bits are S0 + 2^22 and the bits above them S1.  Rows of more entries go in runs of
 * EK_SP_RUN entries, each run's sums taken apart and added (modulo 2^32, as the reference's
 * int32 accumulators wrap).  Pixels past the last (the final pass of fewer than four) repeat the
 * last one; their outputs are not written.
 *
 * Requantization: the one-SMMLAR "folded form" of ek_conv2d_s8_dsp (ek_fold_requantize,
 * ek_dot_s8_dsp.h) on the doubled accumulator 2 * bias + 2 * S_i, with each channel's block
 * {2 * bias, M, k, R} written by the exporter (ek_conv2d.h; edgekit.lower.packing.
 * pack_conv_fold_blocks) and passed as the bias; p->conv.mult and p->conv.shift are NULL.  The
 * exporter gives this kernel only layers whose accumulators stay under 2^30 (conv_fold_range_ok),
 * so the doubled one is an int32, and any other layer the portable kernel; a channel whose shift
 * is outside the one-SMMLAR range (its block's R = 0) is requantized by ek_fold_out_long
 * (ek_conv2d_fold_dsp.h) as in the folded GEMM.
 *
 * In place (1x1 filter, no padding, out_c <= in_c): the four pixels' inputs are all read before
 * any of their outputs is written, so the output may start at the input (gap 0). */
#include "ek_wdot_dsp.h"

#define EK_SP_HALF 23                  /* X = x_even + 2^23 * x_odd */
#define EK_SP_BIAS (1u << 22)          /* the accumulators' start: low 23 bits = S_even + 2^22 */
#define EK_SP_RUN_MAX 255u             /* entries one accumulator takes apart exactly */
#define EK_SP_RUN 248u                 /* entries per run of a longer row (a multiple of 8) */

/* The two 64-bit accumulators of a walk: (l0, h0) = 2^23 * S1 + S0, (l1, h1) = 2^23 * S3 + S2. */
typedef struct {
    uint32_t l0, h0, l1, h1;
} ek_sp_acc;

/* (l, h) += a * b as one 64-bit accumulator (SMLAL), the portable form. */
static inline void ek_sp_smlal(uint32_t *l, uint32_t *h, int32_t a, int32_t b)
{
    const uint64_t acc = (((uint64_t)*h << 32) | *l) + (uint64_t)((int64_t)a * b);
    *l = (uint32_t)acc;
    *h = (uint32_t)(acc >> 32);
}

/* One entry: px moved by delta channels (two words each), acc += value * {X01, X23} there;
 * returns the moved px.  On a DSP core one ADD, one LDRD and two SMLALs (in asm: GCC would
 * rather split the LDRD into two loads and an add). */
static EK_ALWAYS_INLINE const int32_t *ek_sp_entry(const int32_t *px, uint32_t delta, int32_t value, ek_sp_acc *acc)
{
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    int32_t xa, xb;
    __asm__("add %[px], %[px], %[d], lsl #3\n\t"
            "ldrd %[xa], %[xb], [%[px]]\n\t"
            "smlal %[l0], %[h0], %[xa], %[v]\n\t"
            "smlal %[l1], %[h1], %[xb], %[v]"
            : [l0] "+r"(acc->l0), [h0] "+r"(acc->h0), [l1] "+r"(acc->l1), [h1] "+r"(acc->h1), [px] "+r"(px),
              [xa] "=&r"(xa), [xb] "=&r"(xb)
            : [d] "r"(delta), [v] "r"(value) : "memory");
#else
    px += 2u * delta;
    ek_sp_smlal(&acc->l0, &acc->h0, px[0], value);
    ek_sp_smlal(&acc->l1, &acc->h1, px[1], value);
#endif
    return px;
}

/* S_even and S_odd of an accumulator (l, h) that started at EK_SP_BIAS. */
static inline uint32_t ek_sp_even(uint32_t l) { return (l & ((1u << EK_SP_HALF) - 1u)) - EK_SP_BIAS; }
static inline uint32_t ek_sp_odd(uint32_t l, uint32_t h) { return (l >> EK_SP_HALF) | (h << (32 - EK_SP_HALF)); }

/* The buffer words of a pixel pair (a the even pixel, b the odd one) for channels 0..n-1 into
 * dst[0], dst[2], dst[4], ... (the pair's slot of the 4-pixel buffer). */
static void ek_sp_split_pair(int32_t *dst, const int8_t *a, const int8_t *b, int32_t n)
{
    for (int32_t k = n >> 2; k > 0; --k) {
        dst[0] = a[0] + b[0] * (1 << EK_SP_HALF);
        dst[2] = a[1] + b[1] * (1 << EK_SP_HALF);
        dst[4] = a[2] + b[2] * (1 << EK_SP_HALF);
        dst[6] = a[3] + b[3] * (1 << EK_SP_HALF);
        dst += 8;
        a += 4;
        b += 4;
    }
    for (int32_t k = 0; k < (n & 3); ++k) {
        dst[2 * k] = a[k] + b[k] * (1 << EK_SP_HALF);
    }
}

#if defined(__GNUC__) && !defined(__clang__)
#define EK_SP_UNROLL _Pragma("GCC unroll 4")
#else
#define EK_SP_UNROLL
#endif

/* acc (l0, h0, l1, h1) += the n entries of a sparse row from global entry e on (any nibble for
 * 4-bit deltas), *ppx walked from its place (delta_bits a constant). */
static EK_ALWAYS_INLINE void ek_sp_walk(const int delta_bits, const int32_t **ppx, const uint8_t *deltas,
                                        const int8_t *values, uint32_t e, uint32_t n, uint32_t acc[4])
{
    const int32_t *px = *ppx;
    const int8_t *v = values + e;
    ek_sp_acc a = {acc[0], acc[1], acc[2], acc[3]};
    if (delta_bits == 8) {
        const uint8_t *d = deltas + e;
        for (uint32_t j = n >> 2; j > 0; --j) {
            px = ek_sp_entry(px, d[0], v[0], &a);
            px = ek_sp_entry(px, d[1], v[1], &a);
            px = ek_sp_entry(px, d[2], v[2], &a);
            px = ek_sp_entry(px, d[3], v[3], &a);
            d += 4;
            v += 4;
        }
        for (uint32_t j = n & 3u; j > 0; --j) {
            px = ek_sp_entry(px, *d++, *v++, &a);
        }
    } else {
        if (n > 0 && (e & 1u)) {                /* the row starts in a high nibble */
            px = ek_sp_entry(px, (uint32_t)deltas[e >> 1] >> 4, *v++, &a);
            --n;
            ++e;
        }
        const uint8_t *d = deltas + (e >> 1);
        for (uint32_t j = n >> 3; j > 0; --j) {
            const uint32_t d8 = ek_read_u32(d);
            d += 4;
            px = ek_sp_entry(px, d8 & 15u, v[0], &a);
            px = ek_sp_entry(px, (d8 >> 4) & 15u, v[1], &a);
            px = ek_sp_entry(px, (d8 >> 8) & 15u, v[2], &a);
            px = ek_sp_entry(px, (d8 >> 12) & 15u, v[3], &a);
            px = ek_sp_entry(px, (d8 >> 16) & 15u, v[4], &a);
            px = ek_sp_entry(px, (d8 >> 20) & 15u, v[5], &a);
            px = ek_sp_entry(px, (d8 >> 24) & 15u, v[6], &a);
            px = ek_sp_entry(px, d8 >> 28, v[7], &a);
            v += 8;
        }
        for (uint32_t j = (n & 7u) >> 1; j > 0; --j) {   /* a byte: two entries, low nibble first */
            const uint32_t b = *d++;
            px = ek_sp_entry(px, b & 15u, v[0], &a);
            px = ek_sp_entry(px, b >> 4, v[1], &a);
            v += 2;
        }
        if (n & 1u) {                           /* the row ends in a low nibble */
            px = ek_sp_entry(px, *d & 15u, *v, &a);
        }
    }
    acc[0] = a.l0;
    acc[1] = a.h0;
    acc[2] = a.l1;
    acc[3] = a.h1;
    *ppx = px;
}

/* s[i] = S_i of a row of more than EK_SP_RUN_MAX entries: runs of EK_SP_RUN entries, each run's
 * sums taken apart and added.  Out of line (rare: K > EK_SP_RUN_MAX and a dense row). */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void ek_sp_long_row(const int delta_bits, const int32_t *buf, const uint8_t *deltas, const int8_t *values,
                           uint32_t e, uint32_t n, uint32_t s[4])
{
    const int32_t *px = buf;
    s[0] = s[1] = s[2] = s[3] = 0;
    while (n > 0) {
        const uint32_t run = n < EK_SP_RUN ? n : EK_SP_RUN;
        uint32_t acc[4] = {EK_SP_BIAS, 0, EK_SP_BIAS, 0};
        if (delta_bits == 8) {
            ek_sp_walk(8, &px, deltas, values, e, run, acc);
        } else {
            ek_sp_walk(4, &px, deltas, values, e, run, acc);
        }
        s[0] += ek_sp_even(acc[0]);
        s[1] += ek_sp_odd(acc[0], acc[1]);
        s[2] += ek_sp_even(acc[2]);
        s[3] += ek_sp_odd(acc[2], acc[3]);
        e += run;
        n -= run;
    }
}

/* Every output channel of the four pixels in buf; out: pixel 0's outputs, count (1..4) of them
 * written; block: the channels' requantization blocks.  delta_bits: 4 or 8 (a
 * constant); full: the clamp is [-128, 127]. */
static EK_ALWAYS_INLINE void ek_sp_rows(const ek_conv2d_params *c, const ek_wcode *w, const int delta_bits,
                                        const int32_t *buf, const int32_t *block, int8_t *out, int32_t out_c,
                                        int32_t count, const int full, int32_t act_min, int32_t act_max)
{
    const uint32_t *index = w->index;
    const uint8_t *deltas = w->codes;
    const int8_t *values = w->values;
    uint32_t e = index[0];
    for (int8_t *op = out, *const op_end = out + out_c; op != op_end; ++op, block += 4) {
        const uint32_t end = *++index;
        uint32_t s[4];
        if (end - e <= EK_SP_RUN_MAX) {
            const int32_t *px = buf;
            uint32_t acc[4] = {EK_SP_BIAS, 0, EK_SP_BIAS, 0};
            ek_sp_walk(delta_bits, &px, deltas, values, e, end - e, acc);
            s[0] = ek_sp_even(acc[0]);
            s[1] = ek_sp_odd(acc[0], acc[1]);
            s[2] = ek_sp_even(acc[2]);
            s[3] = ek_sp_odd(acc[2], acc[3]);
        } else {
            ek_sp_long_row(delta_bits, buf, deltas, values, e, end - e, s);
        }
        e = end;
        /* the block read after the walk (fewer live registers); a = 2 * bias + 2 * S_i */
        const uint32_t b2 = (uint32_t)block[0];
        const int32_t m = block[1], k = block[2], r = block[3];
        const int32_t a0 = (int32_t)(b2 + (s[0] << 1)), a1 = (int32_t)(b2 + (s[1] << 1));
        const int32_t a2 = (int32_t)(b2 + (s[2] << 1)), a3 = (int32_t)(b2 + (s[3] << 1));
        if (r == 0) {
            ek_fold_out_long(c, op, count, a0, a1, a2, a3, m, k);
            continue;
        }
        const int32_t acc[4] = {a0, a1, a2, a3};
        EK_SP_UNROLL
        for (int32_t i = 0; i < count; ++i) {
            const int32_t y = ek_fold_requantize(acc[i], m, k, r);
            op[i * out_c] = (int8_t)(full ? ek_ssat8(y) : ek_clamp_i32(y, act_min, act_max));
        }
    }
}

/* The kernel for one delta width (delta_bits, a constant): four output pixels at a time, their inputs
 * split into the buffer, then every channel's row walked once for the four. */
static EK_ALWAYS_INLINE void ek_sp_conv(const ek_conv2d_wc_params *p, const int8_t *input, const int32_t *block,
                                        int8_t *output, int8_t *scratch, const int delta_bits)
{
    const ek_conv2d_params *c = &p->conv;
    const ek_wcode *w = &p->w;
    const int32_t out_c = c->out_c, out_w = c->out_w, K = w->row_len;
    const int32_t pixels = c->out_h * out_w;
    const int32_t act_min = c->act_min, act_max = c->act_max;
    const int full = act_min == EK_INT8_MIN && act_max == EK_INT8_MAX;
    /* scratch: the 4-pixel buffer, then (patches) two int8 patches */
    int32_t *buf = (int32_t *)(void *)scratch;
    int8_t *col = (int8_t *)(buf + 8 * ((K + 3) >> 2));
    const int patch = ek_wc_needs_patch(c);
    for (int32_t px = 0; px < pixels; px += 4) {
        const int32_t count = pixels - px >= 4 ? 4 : pixels - px;
        for (int32_t h = 0; h < 2; ++h) {      /* pixel pairs (0, 1) and (2, 3) */
            const int32_t p0 = px + ek_min_i32(2 * h, count - 1), p1 = px + ek_min_i32(2 * h + 1, count - 1);
            const int8_t *a = ek_wc_patch(c, input, p0 / out_w, p0 % out_w, col);
            const int8_t *b = ek_wc_patch(c, input, p1 / out_w, p1 % out_w, col + (patch ? K : 0));
            ek_sp_split_pair(buf + h, a, b, K);
        }
        int8_t *out = output + (int64_t)px * out_c;
        if (count == 4 && full) {
            ek_sp_rows(c, w, delta_bits, buf, block, out, out_c, 4, 1, EK_INT8_MIN, EK_INT8_MAX);
        } else if (count == 4) {
            ek_sp_rows(c, w, delta_bits, buf, block, out, out_c, 4, 0, act_min, act_max);
        } else {
            ek_sp_rows(c, w, delta_bits, buf, block, out, out_c, count, 0, act_min, act_max);
        }
    }
}

void ek_conv2d_s8_sparse_dsp(const ek_conv2d_wc_params *p, const int8_t *input, const int32_t *block,
                             int8_t *output, int8_t *scratch)
{
    if (p->w.delta_bits == 8) {
        ek_sp_conv(p, input, block, output, scratch, 8);
    } else {
        ek_sp_conv(p, input, block, output, scratch, 4);
    }
}
