/*
 * ek_wdot.h - row dot products over encoded weights, the one-pixel im2col and
 * the Huffman row decoder shared by the ek_*_s8_<weights> kernels (internal;
 * the formats are documented in ek_wcode.h).
 *
 * Every dot returns sum_k x[k] * W[k] over one weight row, accumulated in
 * uint32 so that sums wrap modulo 2^32 (defined behaviour) like the reference
 * kernels' int32 accumulators; the caller adds the folded bias.
 *
 *   ek_wdot_s8        plain int8 row (decoded Huffman rows)
 *   ek_wdot_w4        w4 row: one byte load gives two weights
 *   ek_wdot_lut4      lut4 row: nibble index -> codebook load
 *   ek_wdot_lut8      lut8 row: byte index -> codebook load
 *   ek_wc_book_step   codebook entries from one lut4 / lut8 row's codebook to the next's
 *   ek_wdot_sparse4   sparse entries [e, end) with 4-bit deltas: pointer walk
 *   ek_wdot_sparse8   sparse entries [e, end) with 8-bit deltas: pointer walk
 *   ek_wc_patch       the K input values of one conv output pixel
 *   ek_huff_init, ek_huff_decode   the next n weights of a Huffman bitstream
 *   ek_huff_block     the next block of rows of a Huffman bitstream
 *   ek_huff_books     a decoded block of codebook indices mapped to weights
 *   ek_huff_rows      the next block of rows, each on a stride of its own (zero-padded)
 *   ek_wc_add         bias + dot, wrapping
 *   ek_wc_out_conv, ek_wc_out_fc   an accumulator requantized to a conv / FC output value
 *   ek_wrows          a walk over a layer's w4, lut4 or lut8 rows (EK_WF_*), for the _dsp
 *                     convolutions that unpack rows into scratch (ek_wdot_dsp.h)
 *   ek_wrows_unpack   the walk's current row as int8 weights
 *
 * The portable kernels (ek_conv2d_s8_<weights>.c, ek_fc_s8_<weights>.c) each hold
 * their own layer loop: for each pixel or batch row, for each output o, bias[o] +
 * the dot of the input with row o (ek_wdot_<weights>), requantized (ek_wc_out_*).
 */
#ifndef EK_WDOT_H
#define EK_WDOT_H

#include <string.h>

#include "ek_wcode.h"

/* Sign-extended low / high nibble of a byte (two's complement, 4 bits). */
static inline int32_t ek_nib_lo(uint32_t b) { return (int8_t)(uint8_t)(b << 4) >> 4; }
static inline int32_t ek_nib_hi(uint32_t b) { return (int8_t)(uint8_t)b >> 4; }

static inline uint32_t ek_wmul(int32_t x, int32_t w) { return (uint32_t)(x * w); }

static inline int32_t ek_wdot_s8(const int8_t *x, const int8_t *w, int32_t n)
{
    uint32_t acc = 0;
    for (int32_t k = n >> 2; k > 0; --k) {  /* four per pass: less loop overhead */
        acc += ek_wmul(x[0], w[0]) + ek_wmul(x[1], w[1]) + ek_wmul(x[2], w[2]) + ek_wmul(x[3], w[3]);
        x += 4;
        w += 4;
    }
    for (int32_t k = n & 3; k > 0; --k) {
        acc += ek_wmul(*x++, *w++);
    }
    return (int32_t)acc;
}

static inline int32_t ek_wdot_w4(const int8_t *x, const uint8_t *codes, int32_t n)
{
    uint32_t acc = 0;
    for (int32_t j = n >> 1; j > 0; --j) {
        const uint32_t b = *codes++;
        acc += ek_wmul(x[0], ek_nib_lo(b));
        acc += ek_wmul(x[1], ek_nib_hi(b));
        x += 2;
    }
    if (n & 1) {
        acc += ek_wmul(x[0], ek_nib_lo(*codes));
    }
    return (int32_t)acc;
}

static inline int32_t ek_wdot_lut4(const int8_t *x, const uint8_t *codes, const int8_t *table,
                                   int32_t n)
{
    uint32_t acc = 0;
    for (int32_t j = n >> 1; j > 0; --j) {
        const uint32_t b = *codes++;
        acc += ek_wmul(x[0], table[b & 15u]);
        acc += ek_wmul(x[1], table[b >> 4]);
        x += 2;
    }
    if (n & 1) {
        acc += ek_wmul(x[0], table[*codes & 15u]);
    }
    return (int32_t)acc;
}

static inline int32_t ek_wdot_lut8(const int8_t *x, const uint8_t *codes, const int8_t *table,
                                   int32_t n)
{
    uint32_t acc = 0;
    for (int32_t k = 0; k < n; ++k) {
        acc += ek_wmul(x[k], table[codes[k]]);
    }
    return (int32_t)acc;
}

/* Codebook entries from one lut4 / lut8 row's codebook to the next row's: levels when each row
 * has its own (per_channel), 0 when the layer has one. */
static inline int32_t ek_wc_book_step(const ek_wcode *w)
{
    return w->per_channel ? w->levels : 0;
}

/* Entries e .. end-1 (global numbers) of a sparse row, 4-bit deltas: nibble e
 * of `deltas`.  px walks the row from position 0. */
static inline int32_t ek_wdot_sparse4(const int8_t *x, const uint8_t *deltas, const int8_t *values,
                                      uint32_t e, uint32_t end)
{
    uint32_t acc = 0;
    const int8_t *px = x;
    if (e < end && (e & 1u)) {             /* the row starts in a high nibble */
        px += deltas[e >> 1] >> 4;
        acc += ek_wmul(*px, values[e]);
        ++e;
    }
    const uint8_t *d = deltas + (e >> 1);
    const int8_t *v = values + e;
    for (uint32_t j = (end - e) >> 1; j > 0; --j) {
        const uint32_t b = *d++;
        px += b & 15u;
        acc += ek_wmul(px[0], v[0]);
        px += b >> 4;
        acc += ek_wmul(px[0], v[1]);
        v += 2;
    }
    if ((end - e) & 1u) {                  /* the row ends in a low nibble */
        px += *d & 15u;
        acc += ek_wmul(*px, *v);
    }
    return (int32_t)acc;
}

/* Entries e .. end-1 of a sparse row, 8-bit deltas. */
static inline int32_t ek_wdot_sparse8(const int8_t *x, const uint8_t *deltas, const int8_t *values,
                                      uint32_t e, uint32_t end)
{
    uint32_t acc = 0;
    const int8_t *px = x;
    const uint8_t *d = deltas + e;
    const int8_t *v = values + e;
    for (uint32_t j = end - e; j > 0; --j) {
        px += *d++;
        acc += ek_wmul(*px, *v++);
    }
    return (int32_t)acc;
}

/* 1 when a conv output pixel's patch must be built in scratch (the patch is
 * the input pixel itself for a 1x1 filter without padding, any stride). */
static inline int ek_wc_needs_patch(const ek_conv2d_params *p)
{
    return !(p->k_h == 1 && p->k_w == 1 && p->pad_top == 0 && p->pad_left == 0);
}

/* The patch of output pixel (y, x): K = k_h*k_w*in_c values in filter order,
 * padding taps holding the input zero point.  Returns the input pixel itself
 * when !ek_wc_needs_patch(p), else `col` filled.  A tap of one channel (the
 * first layer of many audio and image models) is one byte moved in line, not a
 * memcpy / memset call. */
static inline const int8_t *ek_wc_patch(const ek_conv2d_params *p, const int8_t *input,
                                        int32_t y, int32_t x, int8_t *col)
{
    const int32_t in_c = p->in_c;
    const int32_t iy0 = y * p->stride_h - p->pad_top;
    const int32_t ix0 = x * p->stride_w - p->pad_left;
    if (!ek_wc_needs_patch(p)) {
        return input + ((int64_t)iy0 * p->in_w + ix0) * in_c;
    }
    const int pad = -p->input_offset;      /* memset stores (unsigned char)pad: the int8 zero point */
    int8_t *dst = col;
    for (int32_t ky = 0; ky < p->k_h; ++ky) {
        const int32_t iy = iy0 + ky * p->dil_h;
        if (iy < 0 || iy >= p->in_h) {
            memset(dst, pad, (size_t)(p->k_w * in_c));
            dst += p->k_w * in_c;
            continue;
        }
        const int8_t *in_row = input + (int64_t)iy * p->in_w * in_c;
        if (in_c == 1) {
            for (int32_t kx = 0; kx < p->k_w; ++kx) {
                const int32_t ix = ix0 + kx * p->dil_w;
                *dst++ = (ix < 0 || ix >= p->in_w) ? (int8_t)pad : in_row[ix];
            }
            continue;
        }
        for (int32_t kx = 0; kx < p->k_w; ++kx, dst += in_c) {
            const int32_t ix = ix0 + kx * p->dil_w;
            if (ix < 0 || ix >= p->in_w) {
                memset(dst, pad, (size_t)in_c);
            } else {
                memcpy(dst, in_row + (int64_t)ix * in_c, (size_t)in_c);
            }
        }
    }
    return col;
}

/* Huffman decoding (format in ek_wcode.h): a bit buffer and a first-level table.
 *
 * buf holds the stream's next 16 + room bits MSB-aligned (the bits below them are 0); before
 * each code it is refilled two bytes at a time to room >= 0, so it holds every code (<= 15
 * bits).  table[buf >> (32 - table_bits)] gives the symbol and length of every code of at most
 * table_bits bits in one load; an entry 0 (a longer code) goes to ek_huff_long.  The refill
 * reads at most 3 bytes past the last code's byte: the encoder's zero padding.
 *
 * ek_huff_long compares the next 16 bits v with the left-aligned limits of the canonical code
 * (lim[len] = (first code of length len + counts[len]) << (16 - len), non-decreasing): the
 * code's length is the first len with v < lim[len], its symbol values[base[len] + (v >> (16 -
 * len))].  ek_huff_init computes lim and base once per kernel call. */
typedef struct {
    const uint8_t *next;       /* the next stream byte to load */
    uint32_t buf;              /* the next 16 + room bits, MSB first */
    int32_t room;              /* bits in buf minus 16: refill when < 0 */
} ek_huff_reader;

/* A stream being decoded: its reader and the canonical code's limits for ek_huff_long. */
typedef struct {
    ek_huff_reader bits;       /* where the stream is */
    uint32_t lim[EK_HUFF_MAX_BITS + 1];
    int32_t base[EK_HUFF_MAX_BITS + 1];
} ek_huff_state;

static inline void ek_huff_init(const ek_wcode *w, ek_huff_state *s)
{
    int32_t first = 0, index = 0;      /* codes of length len: the integers first .. first+count-1 */
    for (int32_t len = 1; len <= EK_HUFF_MAX_BITS; ++len) {
        const int32_t count = w->counts[len];
        s->lim[len] = (uint32_t)(first + count) << (16 - len);
        s->base[len] = index - first;
        index += count;
        first = (first + count) << 1;
    }
    s->lim[0] = 0;
    s->base[0] = 0;
    s->bits.next = w->codes;
    s->bits.buf = 0;
    s->bits.room = -16;
}

/* The code longer than table_bits at the top of buf: (len << 8) | (uint8_t)symbol.  Out of
 * line, and reading its tables from memory, so that the decode loop keeps no registers for it. */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((noinline, noipa, unused))
#elif defined(__GNUC__)
__attribute__((noinline, unused))
#endif
static uint32_t ek_huff_long(const ek_wcode *w, const ek_huff_state *s, uint32_t buf)
{
    const uint32_t v = buf >> 16;
    int32_t len = w->table_bits + 1;
    while (v >= s->lim[len]) {
        if (++len > EK_HUFF_MAX_BITS) {
            return 1u << 8;            /* no code (a stream no encoder writes): skip a bit */
        }
    }
    return ((uint32_t)len << 8) | (uint8_t)w->values[s->base[len] + (int32_t)(v >> (16 - len))];
}

#if defined(__GNUC__)
#define EK_UNLIKELY(c) __builtin_expect(!!(c), 0)
#else
#define EK_UNLIKELY(c) (c)
#endif

/* Load the next two stream bytes into r->buf below its bits: r->room >= 0 afterwards. */
static EK_ALWAYS_INLINE void ek_huff_refill(ek_huff_reader *r)
{
    r->buf |= ((uint32_t)r->next[0] << 8 | r->next[1]) << (uint32_t)-r->room;
    r->next += 2;
    r->room += 16;
}

/* The symbol of the code at the top of r to *dst, r advanced past it (refilled when room < 0);
 * table and drop = 32 - table_bits are w's, passed so that they stay in registers.  (Storing
 * here, before the shift, rather than returning the symbol saves GCC 12 an instruction a refill.) */
static EK_ALWAYS_INLINE void ek_huff_decode_one(int8_t *dst, ek_huff_reader *r, const uint16_t *table,
                                                uint32_t drop, const ek_wcode *w, const ek_huff_state *s)
{
    uint32_t entry = table[r->buf >> drop];
    uint32_t len = entry >> 8;
    if (EK_UNLIKELY(len == 0u)) {
        entry = ek_huff_long(w, s, r->buf);
        len = entry >> 8;
    }
    *dst = (int8_t)(uint8_t)entry;
    r->buf <<= len;
    r->room -= (int32_t)len;
    if (EK_UNLIKELY(r->room < 0)) {
        ek_huff_refill(r);
    }
}

/* Decode the next n weights of the stream into dst (two codes per loop pass).  Out of line:
 * called once per block, it keeps the whole bit reader in registers. */
#if defined(__GNUC__)
__attribute__((noinline, unused))
#endif
static void ek_huff_decode(const ek_wcode *w, ek_huff_state *s, int8_t *dst, int32_t n)
{
    const uint16_t *table = w->table;
    const uint32_t drop = 32u - (uint32_t)w->table_bits;
    ek_huff_reader r = s->bits;
    if (r.room < 0) {
        ek_huff_refill(&r);
    }
    for (int32_t k = n >> 1; k > 0; --k, dst += 2) {
        ek_huff_decode_one(dst, &r, table, drop, w, s);
        ek_huff_decode_one(dst + 1, &r, table, drop, w, s);
    }
    if (n & 1) {
        ek_huff_decode_one(dst, &r, table, drop, w, s);
    }
    s->bits = r;
}

/* Requantized, offset and clamped output value of a conv / depthwise channel
 * (double rounding, as ek_conv2d_s8). */
static inline int8_t ek_wc_out_conv(const ek_conv2d_params *p, int32_t acc, int32_t o)
{
    acc = ek_requantize(acc, p->mult[o], p->shift[o]) + p->output_offset;
    return (int8_t)ek_clamp_i32(acc, p->act_min, p->act_max);
}

/* FC output value: ek_requantize when double_round, else ek_requantize_1r. */
static inline int8_t ek_wc_out_fc(const ek_fc_params *p, int32_t acc, int32_t o, int double_round)
{
    acc = (double_round ? ek_requantize(acc, p->mult[o], p->shift[o])
                        : ek_requantize_1r(acc, p->mult[o], p->shift[o])) + p->output_offset;
    return (int8_t)ek_clamp_i32(acc, p->act_min, p->act_max);
}

/* bias + dot, wrapping. */
static inline int32_t ek_wc_add(int32_t bias, int32_t dot)
{
    return (int32_t)((uint32_t)bias + (uint32_t)dot);
}

/* The formats a walk over weight rows (ek_wrows) reads.  Every caller passes one as a constant,
 * so that its loops are compiled for that format only. */
enum {
    EK_WF_W4,          /* w4, row stride (K + 1) / 2 */
    EK_WF_LUT4,        /* lut4, row stride (K + 1) / 2 */
    EK_WF_LUT8         /* lut8, row stride K */
};

/* A walk over a layer's weight rows in one format, row by row from the first, with the
 * encoding's fields in locals (int8 stores may alias the params' fields):
 *   codes   the current row's first byte
 *   table   LUT4, LUT8: the current row's codebook */
typedef struct {
    const uint8_t *codes;
    const int8_t *table;
    int32_t K, stride, table_step;     /* row length; bytes and codebook entries per row */
} ek_wrows;

/* The walk over the encoded rows of w, at row 0. */
static EK_ALWAYS_INLINE ek_wrows ek_wrows_start(const ek_wcode *w, const int fmt)
{
    const int lut = fmt == EK_WF_LUT4 || fmt == EK_WF_LUT8;
    const ek_wrows r = {w->codes, w->values, w->row_len, fmt == EK_WF_LUT8 ? w->row_len : (w->row_len + 1) >> 1,
                        lut ? ek_wc_book_step(w) : 0};
    return r;
}

/* The walk moved to the next row. */
static EK_ALWAYS_INLINE void ek_wrows_next(ek_wrows *r, const int fmt)
{
    r->codes += r->stride;
    if (fmt == EK_WF_LUT4 || fmt == EK_WF_LUT8) {
        r->table += r->table_step;
    }
}

/* The current row (W4, LUT4 or LUT8) as its K int8 weights into dst, zeros after them up to n
 * (>= K); the walk moved to the next row. */
static EK_ALWAYS_INLINE void ek_wrows_unpack(ek_wrows *r, const int fmt, int8_t *dst, int32_t n)
{
    const uint8_t *c = r->codes;
    const int8_t *t = r->table;
    const int32_t K = r->K;
    int32_t j = 0;
    if (fmt == EK_WF_LUT8) {                   /* four indices (one word) to one word */
        for (; j + 4 <= K; j += 4) {
            uint32_t b;
            memcpy(&b, c + j, 4);
            const uint32_t word = (uint32_t)(uint8_t)t[b & 255u] | (uint32_t)(uint8_t)t[(b >> 8) & 255u] << 8 |
                                  (uint32_t)(uint8_t)t[(b >> 16) & 255u] << 16 |
                                  (uint32_t)(uint8_t)t[b >> 24] << 24;
            memcpy(dst + j, &word, 4);
        }
        for (; j < K; ++j) {
            dst[j] = t[c[j]];
        }
    } else {
        if (fmt == EK_WF_W4) {                 /* four nibbles (two bytes) to one word */
            for (; j + 4 <= K; j += 4, c += 2) {
                const uint32_t b = (uint32_t)c[0] | (uint32_t)c[1] << 8;
                const uint32_t word = (uint32_t)(uint8_t)ek_nib_lo(b) | (uint32_t)(uint8_t)ek_nib_hi(b & 255u) << 8 |
                                      (uint32_t)(uint8_t)ek_nib_lo(b >> 8) << 16 |
                                      (uint32_t)(uint8_t)ek_nib_hi(b >> 8) << 24;
                memcpy(dst + j, &word, 4);
            }
        }
        if (fmt == EK_WF_LUT4) {               /* four indices (two bytes) to one word */
            for (; j + 4 <= K; j += 4, c += 2) {
                const uint32_t b = (uint32_t)c[0] | (uint32_t)c[1] << 8;
                const uint32_t word = (uint32_t)(uint8_t)t[b & 15u] | (uint32_t)(uint8_t)t[(b >> 4) & 15u] << 8 |
                                      (uint32_t)(uint8_t)t[(b >> 8) & 15u] << 16 |
                                      (uint32_t)(uint8_t)t[b >> 12] << 24;
                memcpy(dst + j, &word, 4);
            }
        }
        for (; j + 2 <= K; j += 2) {
            const uint32_t b = *c++;
            dst[j] = (int8_t)(fmt == EK_WF_W4 ? ek_nib_lo(b) : t[b & 15u]);
            dst[j + 1] = (int8_t)(fmt == EK_WF_W4 ? ek_nib_hi(b) : t[b >> 4]);
        }
        if (j < K) {
            dst[j] = (int8_t)(fmt == EK_WF_W4 ? ek_nib_lo(*c) : t[*c & 15u]);
            ++j;
        }
    }
    for (; j < n; ++j) {
        dst[j] = 0;
    }
    ek_wrows_next(r, fmt);
}

/* Codebook indices -> weights in place: the n bytes at dst are indices into book (levels
 * entries, read as uint8_t). */
static inline void ek_huff_remap(const int8_t *book, int8_t *dst, int32_t n)
{
    const uint8_t *idx = (const uint8_t *)dst;
    for (; n >= 4; n -= 4, dst += 4, idx += 4) {
        const int8_t a = book[idx[0]], b = book[idx[1]], c = book[idx[2]], d = book[idx[3]];
        dst[0] = a;
        dst[1] = b;
        dst[2] = c;
        dst[3] = d;
    }
    for (; n > 0; --n, ++dst, ++idx) {
        *dst = book[*idx];
    }
}

/* Out of line: once per block.  A decoded block of n rows from row o0 whose symbols are codebook
 * indices (w->book != NULL) mapped through each row's codebook: rows one after another, or
 * (pairs, the _dsp layout) each pair of rows interleaved by four weights then both rows' K % 4
 * last weights, an odd last row as it is. */
#if defined(__GNUC__)
__attribute__((noinline, unused))
#endif
static void ek_huff_books(const ek_wcode *w, int8_t *dst, int32_t o0, int32_t n, int pairs)
{
    const int32_t K = w->row_len, L = w->levels;
    const int8_t *book = w->book + (int64_t)o0 * L;
    int32_t r = 0;
    if (pairs) {
        const int32_t q = K & ~3;
        for (; r + 1 < n; r += 2, book += 2 * L) {
            for (int32_t j = 0; j < q; j += 4, dst += 8) {
                ek_huff_remap(book, dst, 4);
                ek_huff_remap(book + L, dst + 4, 4);
            }
            ek_huff_remap(book, dst, K - q);
            ek_huff_remap(book + L, dst + (K - q), K - q);
            dst += 2 * (K - q);
        }
    }
    for (; r < n; ++r, book += L, dst += K) {
        ek_huff_remap(book, dst, K);
    }
}

/* The block of a Huffman layer of `rows` rows that starts at row o0 (the stream's next rows):
 * n = min(block_rows, rows - o0) rows decoded into dst (n*K bytes), as weights (through the
 * rows' codebooks when the symbols are indices; pairs: the _dsp layout); returns n. */
static inline int32_t ek_huff_block(const ek_wcode *w, ek_huff_state *s, int8_t *dst, int32_t o0,
                                    int32_t rows, int pairs)
{
    const int32_t n = ek_min_i32(w->block_rows, rows - o0);
    ek_huff_decode(w, s, dst, n * w->row_len);
    if (w->book != NULL) {
        ek_huff_books(w, dst, o0, n, pairs);
    }
    return n;
}

/* The block of a Huffman layer of `rows` rows that starts at row o0, its rows (plain, in
 * row-major stream order) decoded `stride` bytes apart into dst (stride >= K; the bytes past
 * each row's K are set to 0), as weights; returns the number of rows n. */
static inline int32_t ek_huff_rows(const ek_wcode *w, ek_huff_state *s, int8_t *dst, int32_t o0, int32_t rows,
                                   int32_t stride)
{
    const int32_t n = ek_min_i32(w->block_rows, rows - o0), K = w->row_len;
    for (int32_t r = 0; r < n; ++r, dst += stride) {
        ek_huff_decode(w, s, dst, K);
        if (w->book != NULL) {
            ek_huff_remap(w->book + (int64_t)(o0 + r) * w->levels, dst, K);
        }
        memset(dst + K, 0, (size_t)(stride - K));
    }
    return n;
}

#endif /* EK_WDOT_H */
