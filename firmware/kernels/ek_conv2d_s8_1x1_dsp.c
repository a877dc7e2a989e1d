/* ek_conv2d_s8_1x1_dsp.c - pointwise convolution as a GEMM with SMLAD (see ek_conv2d.h); also
 * the folded-form GEMM and buffer that ek_conv2d_s8_dsp shares. */
#include <stddef.h>

#include "ek_conv2d.h"
#include "ek_dot_s8_dsp.h"

/* ---- Pair form: folded bias, p->mult / p->shift, filter rows interleaved by pairs ---- */

/* The requantization of output channel o (the params copied into locals once:
 * int8 stores may alias anything, so fields read through p would be reloaded). */
typedef struct {
    const int32_t *mult, *shift;
    int32_t output_offset, act_min, act_max;
} ek_conv2d_out_q;

static inline int8_t ek_conv2d_out(const ek_conv2d_out_q *q, int32_t acc, int32_t o)
{
    acc = ek_requantize_pos(acc, q->mult[o], q->shift[o]) + q->output_offset;
    return (int8_t)ek_clamp_i32(acc, q->act_min, q->act_max);
}

static void ek_conv2d_1x1_pairs(const ek_conv2d_params *p, const int8_t *input,
                                const int8_t *filter, const int32_t *bias, int8_t *output)
{
    const int32_t n = p->in_c;
    const int32_t out_c = p->out_c;
    const int32_t pixels = p->out_h * p->out_w;
    const ek_conv2d_out_q q = {p->mult, p->shift, p->output_offset, p->act_min, p->act_max};
    int32_t px = 0;
    /* Two pixels x two output channels per pass. */
    for (; px + 2 <= pixels; px += 2) {
        const int8_t *a0 = input + px * n;
        const int8_t *a1 = a0 + n;
        int8_t *out0 = output + px * out_c;
        int8_t *out1 = out0 + out_c;
        const int8_t *w = filter;
        int32_t o = 0;
        for (; o + 2 <= out_c; o += 2, w += 2 * n) {
            int32_t acc[4] = {bias[o], bias[o + 1], bias[o], bias[o + 1]};
            ek_dot_s8_2x2(a0, a1, w, n, acc);
            out0[o] = ek_conv2d_out(&q, acc[0], o);
            out0[o + 1] = ek_conv2d_out(&q, acc[1], o + 1);
            out1[o] = ek_conv2d_out(&q, acc[2], o);
            out1[o + 1] = ek_conv2d_out(&q, acc[3], o + 1);
        }
        if (o < out_c) {   /* odd channel count: the last channel against both pixels */
            out0[o] = ek_conv2d_out(&q, ek_dot_s8_1x1(a0, w, n, bias[o]), o);
            out1[o] = ek_conv2d_out(&q, ek_dot_s8_1x1(a1, w, n, bias[o]), o);
        }
    }
    if (px < pixels) {     /* odd pixel count: the last pixel, two channels per pass */
        const int8_t *a = input + px * n;
        int8_t *out = output + px * out_c;
        const int8_t *w = filter;
        int32_t o = 0;
        for (; o + 2 <= out_c; o += 2, w += 2 * n) {
            int32_t acc[2] = {bias[o], bias[o + 1]};
            ek_dot_s8_1x2(a, w, n, acc);
            out[o] = ek_conv2d_out(&q, acc[0], o);
            out[o + 1] = ek_conv2d_out(&q, acc[1], o + 1);
        }
        if (o < out_c) {
            out[o] = ek_conv2d_out(&q, ek_dot_s8_1x1(a, w, n, bias[o]), o);
        }
    }
}

/* ---- Folded form: the per-channel block, plain filter rows, the 4-pixel buffer ---- */

int32_t ek_conv2d_dsp_buf[EK_CONV2D_DSP_BUF_BYTES / 4];

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
__attribute__((noinline))
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

/* Every output channel of `count` (1..4; a constant 4 in the main copies) pixels whose values
 * are in `x` (the 4-pixel buffer, `groups` groups); out: the first pixel's outputs.  full_range
 * is a constant in each inlined copy: the common clamp [-128, 127] is one SSAT. */
EK_FOLD_INLINE void ek_fold_gemm_body(const ek_conv2d_params *p, const int32_t *x, int32_t groups,
                                      int32_t count, const int8_t *filter, const int32_t *block,
                                      int8_t *out, int full_range, int32_t act_min, int32_t act_max)
{
    const int32_t out_c = p->out_c;
    const int8_t *w = filter;                 /* rows of 4 * groups bytes, walked by the dot */
    for (int8_t *op = out, *const op_end = out + out_c; op != op_end; ++op, block += 4) {
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

void ek_conv2d_fold_gemm_dsp(const ek_conv2d_params *p, const int32_t *x, int32_t count,
                             const int8_t *filter, const int32_t *block, int8_t *out)
{
    const int32_t groups = (p->k_h * p->k_w * p->in_c + 3) >> 2;
    const int full = p->act_min == EK_INT8_MIN && p->act_max == EK_INT8_MAX;
    if (count == 4 && full) {
        ek_fold_gemm_body(p, x, groups, 4, filter, block, out, 1, EK_INT8_MIN, EK_INT8_MAX);
    } else if (count == 4) {
        ek_fold_gemm_body(p, x, groups, 4, filter, block, out, 0, p->act_min, p->act_max);
    } else {
        ek_fold_gemm_body(p, x, groups, count, filter, block, out, 0, p->act_min, p->act_max);
    }
}

static void ek_conv2d_1x1_fold(const ek_conv2d_params *p, const int8_t *input,
                               const int8_t *filter, const int32_t *block, int8_t *output)
{
    const int32_t n = p->in_c;
    const int32_t out_c = p->out_c;
    const int32_t pixels = p->out_h * p->out_w;
    for (int32_t px = 0; px < pixels; px += 4) {
        const int32_t count = pixels - px >= 4 ? 4 : pixels - px;
        /* all of the block's input is read before any of its output is written */
        for (int32_t i = 0; i < count; ++i) {
            ek_fold_split(ek_conv2d_dsp_buf + 2 * i, input + (px + i) * n, n);
        }
        ek_conv2d_fold_gemm_dsp(p, ek_conv2d_dsp_buf, count, filter, block, output + px * out_c);
    }
}

void ek_conv2d_s8_1x1_dsp(const ek_conv2d_params *p, const int8_t *input,
                          const int8_t *filter, const int32_t *bias, int8_t *output)
{
    if (p->mult == NULL) {
        ek_conv2d_1x1_fold(p, input, filter, bias, output);
    } else {
        ek_conv2d_1x1_pairs(p, input, filter, bias, output);
    }
}
