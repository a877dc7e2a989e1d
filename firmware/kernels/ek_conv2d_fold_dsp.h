/* ek_conv2d_fold_dsp.h - the folded-form GEMM body (ek_conv2d.h, folded form), internal to the
 * _dsp convolutions: ek_conv2d_s8_1x1_dsp / ek_conv2d_s8_dsp (all of a layer's channels against
 * the int8 filter) and the compressed ones (ek_wdot_dsp.h: w4, lut4, lut8 and huff, a few
 * unpacked or decoded channels at a time; the sparse one shares ek_fold_out_long).
 *
 * ek_fold_gemm_body: channels o0 .. o0+n-1 of `count` (1..4) output pixels whose patches are
 * split in x (ek_fold_split's 4-pixel buffer, `groups` groups), the n filter rows in `filter`
 * (4 * groups bytes each, zero-padded), their per-channel blocks {2 * bias, M, k, R} in
 * `block`; out: pixel 0's output for channel o0 (pixel i's at out + i * out_c). */
#ifndef EK_CONV2D_FOLD_DSP_H
#define EK_CONV2D_FOLD_DSP_H

#include "ek_conv2d.h"
#include "ek_dot_s8_dsp.h"

#if defined(__GNUC__)
#define EK_FOLD_INLINE static inline __attribute__((always_inline))
#else
#define EK_FOLD_INLINE static inline
#endif

#if defined(__GNUC__) && !defined(__clang__)
#define EK_FOLD_UNROLL _Pragma("GCC unroll 4")
#else
#define EK_FOLD_UNROLL
#endif

/* A channel whose shift (held in its block's k) is outside [-23, -1]: ek_requantize_pos on the
 * halved (exact) accumulators, as the pair form does. */
#if defined(__GNUC__)
__attribute__((noinline, unused))
#endif
static void ek_fold_out_long(const ek_conv2d_params *p, int8_t *op, int32_t count, int32_t a0, int32_t a1,
                             int32_t a2, int32_t a3, int32_t m, int32_t shift)
{
    const int32_t acc[4] = {a0, a1, a2, a3};   /* by value: the caller's stay in registers */
    for (int32_t i = 0; i < count; ++i) {
        const int32_t y = ek_requantize_pos(acc[i] >> 1, m, shift) + p->output_offset;
        op[i * p->out_c] = (int8_t)ek_clamp_i32(y, p->act_min, p->act_max);
    }
}

/* n channels of `count` (1..4; a constant 4 in the main copies) pixels (see above).  full_range
 * is a constant in each inlined copy: the common clamp [-128, 127] is one SSAT. */
EK_FOLD_INLINE void ek_fold_gemm_body(const ek_conv2d_params *p, const int32_t *x, int32_t groups,
                                      int32_t count, const int8_t *filter, const int32_t *block,
                                      int8_t *out, int32_t n, int full_range, int32_t act_min, int32_t act_max)
{
    const int32_t out_c = p->out_c;
    const int8_t *w = filter;                 /* rows of 4 * groups bytes, walked by the dot */
    for (int8_t *op = out, *const op_end = out + n; op != op_end; ++op, block += 4) {
        int32_t acc[4] = {block[0], block[0], block[0], block[0]};     /* 2 * bias */
        w = ek_dot_fold_4x1(x, w, groups, acc);
        /* m, k, r read after the dot product (fewer live registers), before the stores */
        const int32_t m = block[1], k = block[2], r = block[3];
        if (r == 0) {
            ek_fold_out_long(p, op, count, acc[0], acc[1], acc[2], acc[3], m, k);
            continue;
        }
        EK_FOLD_UNROLL
        for (int32_t i = 0; i < count; ++i) {
            const int32_t y = ek_fold_requantize(acc[i], m, k, r);
            op[i * out_c] = (int8_t)(full_range ? ek_ssat8(y) : ek_clamp_i32(y, act_min, act_max));
        }
    }
}

/* ek_fold_gemm_body with the clamp and count dispatched to its three inlined copies. */
EK_FOLD_INLINE void ek_fold_gemm(const ek_conv2d_params *p, const int32_t *x, int32_t groups, int32_t count,
                                 const int8_t *filter, const int32_t *block, int8_t *out, int32_t n)
{
    const int full = p->act_min == EK_INT8_MIN && p->act_max == EK_INT8_MAX;
    if (count == 4 && full) {
        ek_fold_gemm_body(p, x, groups, 4, filter, block, out, n, 1, EK_INT8_MIN, EK_INT8_MAX);
    } else if (count == 4) {
        ek_fold_gemm_body(p, x, groups, 4, filter, block, out, n, 0, p->act_min, p->act_max);
    } else {
        ek_fold_gemm_body(p, x, groups, count, filter, block, out, n, 0, p->act_min, p->act_max);
    }
}

#endif /* EK_CONV2D_FOLD_DSP_H */
