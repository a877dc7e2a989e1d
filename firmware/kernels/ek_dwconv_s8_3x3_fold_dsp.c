/* ek_dwconv_s8_3x3_fold_dsp.c - 3x3 depthwise convolution, channel multiplier 1,
 * input offset folded into the bias, every pixel on one path (see ek_dwconv.h for
 * the filter and bias layouts). */
#include "ek_dwconv.h"
#include "ek_dsp.h"

/* Requantization of one channel, output offset included (ek_dwconv.h gives the block):
 *   r = (a*M + P - [a < 0] * 2^31) >> (31 + R),   P = 2^30 + 2^(30+R) + off * 2^(31+R),
 * equals ek_requantize(a, M, -R) + off for M in [0, 2^31), R in [2, 23], |off| <= 128 and
 * any int32 a:
 *  - SRDHM's (a*M + nudge) / 2^31, truncating, is q = floor((a*M + 2^30) / 2^31)
 *    for M >= 0 (the argument of ek_requantize_pos in ek_dot_s8_dsp.h);
 *  - RDivPOT(q, R) with ties away from zero is floor((q + 2^(R-1) - [q < 0]) / 2^R),
 *    and floor((floor(t / 2^31) + k) / 2^R) = floor((t + k*2^31) / 2^(31+R)) for integer k;
 *  - [q < 0] may be replaced by [a < 0]: they differ only when q = 0, never a tie for R >= 1;
 *  - adding off * 2^(31+R) adds off after the shift.
 * |t| < 2^62 + 2^61, so its high word is an int32 and r = high word >> (R - 1).  The low
 * word of P is 2^30 (R >= 2); the block stores the high word 2^(R-2) + off * 2^(R-1). */
static inline int32_t ek_dw_fold_requantize(int32_t a, int32_t multiplier, int32_t p_high, int32_t r_minus_1)
{
    const int64_t p = (int64_t)p_high * (INT64_C(1) << 32) + (INT64_C(1) << 30);
    const int64_t t = p - ((int64_t)((uint32_t)a >> 31) << 31) + (int64_t)a * multiplier;
    return (int32_t)(t >> 32) >> r_minus_1;
}

/* The first n (1..3) int8 at p as one word, missing bytes 0 (the tail group). */
static inline int32_t ek_dw_fold_read_partial(const int8_t *p, int32_t n)
{
    uint32_t v = 0;
    for (int32_t i = 0; i < n; ++i) {
        v |= (uint32_t)(uint8_t)p[i] << (8 * i);
    }
    return (int32_t)v;
}

/* One tap for four channels c..c+3: acc[i] += x[c+i] * w[i], v holding x[c..c+3] (no offset:
 * it is in the bias), w the tap's 8 filter bytes {w0, w2} and {w1, w3} as halfwords. */
static EK_ALWAYS_INLINE void ek_dw_fold_tap(int32_t acc[4], int32_t v, const int8_t *w)
{
    const int32_t x02 = ek_sxtb16(v);
    const int32_t x13 = ek_sxtb16_ror8(v);
    const int32_t w02 = ek_read_s8x4(w);
    const int32_t w13 = ek_read_s8x4(w + 4);
    acc[0] = ek_smlabb(x02, w02, acc[0]);
    acc[2] = ek_smlatt(x02, w02, acc[2]);
    acc[1] = ek_smlabb(x13, w13, acc[1]);
    acc[3] = ek_smlatt(x13, w13, acc[3]);
}

/* Output value of channel i (0..3) of a group from its accumulator: requantized with the
 * group's block blk, clamped (full_range, a constant in each inlined copy of ek_dw_fold_body:
 * one SSAT to [-128, 127]). */
static EK_ALWAYS_INLINE int8_t ek_dw_fold_out(const int32_t *blk, int32_t i, int32_t acc, const int full_range,
                                              int32_t act_min, int32_t act_max)
{
    const int32_t r = ek_dw_fold_requantize(acc, blk[4 + i], blk[8 + i], blk[12 + i]);
    return (int8_t)(full_range ? ek_ssat8(r) : ek_clamp_i32(r, act_min, act_max));
}

/* The kernel for one clamp range; inlined twice so the common [-128, 127] range
 * has constant bounds (one SSAT). */
static EK_ALWAYS_INLINE void ek_dw_fold_body(
    const ek_dwconv_params *p, const int8_t *input, const int8_t *filter, const int32_t *bias,
    int8_t *output, int full_range, int32_t act_min, int32_t act_max)
{
    const int32_t c = p->in_c;
    const int32_t groups = (c + 3) >> 2;
    const int32_t full = c >> 2;                 /* groups of four real channels */
    const int8_t *pad = filter + groups * 72;    /* groups * 4 bytes of the input zero point */
    const int32_t in_h = p->in_h, in_w = p->in_w;

    for (int32_t y = 0; y < p->out_h; ++y) {
        const int32_t iy0 = y * p->stride_h - p->pad_top;
        for (int32_t x = 0; x < p->out_w; ++x) {
            const int32_t ix0 = x * p->stride_w - p->pad_left;
            /* each tap's pixel (channel 0), or the zero-point row for taps outside the image */
            const int8_t *tap[9];
            /* element offset of tap (0, 0), maybe outside the image (then never dereferenced) */
            int32_t row_at = (iy0 * in_w + ix0) * c;
            for (int32_t ky = 0; ky < 3; ++ky, row_at += in_w * c) {
                const int row_inside = (uint32_t)(iy0 + ky) < (uint32_t)in_h;
                for (int32_t kx = 0; kx < 3; ++kx) {
                    const int inside = row_inside && (uint32_t)(ix0 + kx) < (uint32_t)in_w;
                    tap[ky * 3 + kx] = inside ? input + (row_at + kx * c) : pad;
                }
            }
            int8_t *out = output + ((int64_t)y * p->out_w + x) * c;
            const int8_t *w = filter;
            const int32_t *blk = bias;
            int32_t ch = 0;
            for (int32_t g = 0; g < full; ++g, ch += 4, w += 72, blk += 16) {
                int32_t acc[4] = {blk[0], blk[1], blk[2], blk[3]};
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 9
#endif
                for (int32_t t = 0; t < 9; ++t) {
                    ek_dw_fold_tap(acc, ek_read_s8x4(tap[t] + ch), w + 8 * t);
                    ek_compiler_barrier();   /* the next tap's loads stay below these multiplies */
                }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 4
#endif
                for (int32_t i = 0; i < 4; ++i) {
                    out[ch + i] = ek_dw_fold_out(blk, i, acc[i], full_range, act_min, act_max);
                }
            }
            if (ch < c) {
                const int32_t n = c - ch;        /* 1..3 channels left */
                int32_t acc[4] = {blk[0], blk[1], blk[2], blk[3]};
                for (int32_t t = 0; t < 9; ++t) {
                    ek_dw_fold_tap(acc, ek_dw_fold_read_partial(tap[t] + ch, n), w + 8 * t);
                }
                for (int32_t i = 0; i < n; ++i) {
                    out[ch + i] = ek_dw_fold_out(blk, i, acc[i], full_range, act_min, act_max);
                }
            }
        }
    }
}

void ek_dwconv_s8_3x3_fold_dsp(const ek_dwconv_params *p, const int8_t *input,
                               const int8_t *filter, const int32_t *bias, int8_t *output)
{
    if (p->act_min == EK_INT8_MIN && p->act_max == EK_INT8_MAX) {
        ek_dw_fold_body(p, input, filter, bias, output, 1, EK_INT8_MIN, EK_INT8_MAX);
    } else {
        ek_dw_fold_body(p, input, filter, bias, output, 0, p->act_min, p->act_max);
    }
}
