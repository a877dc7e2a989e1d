/* ek_conv2d_s8_1x1_dsp.c - pointwise convolution as a GEMM with SMLAD (see ek_conv2d.h); also
 * the folded-form GEMM that ek_conv2d_s8_dsp shares. */
#include <stddef.h>

#include "ek_conv2d.h"
#include "ek_conv2d_fold_dsp.h"
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

/* ---- Folded form: the per-channel block, plain filter rows, the 4-pixel buffer in scratch ---- */

void ek_conv2d_fold_gemm_dsp(const ek_conv2d_params *p, const int32_t *x, int32_t count,
                             const int8_t *filter, const int32_t *block, int8_t *out)
{
    ek_fold_gemm(p, x, (p->k_h * p->k_w * p->in_c + 3) >> 2, count, filter, block, out, p->out_c);
}

static void ek_conv2d_1x1_fold(const ek_conv2d_params *p, const int8_t *input,
                               const int8_t *filter, const int32_t *block, int8_t *output, int32_t *buf)
{
    const int32_t n = p->in_c;
    const int32_t out_c = p->out_c;
    const int32_t pixels = p->out_h * p->out_w;
    for (int32_t px = 0; px < pixels; px += 4) {
        const int32_t count = pixels - px >= 4 ? 4 : pixels - px;
        /* all of the block's input is read before any of its output is written */
        for (int32_t i = 0; i < count; ++i) {
            ek_fold_split(buf + 2 * i, input + (px + i) * n, n);
        }
        ek_conv2d_fold_gemm_dsp(p, buf, count, filter, block, output + px * out_c);
    }
}

void ek_conv2d_s8_1x1_dsp(const ek_conv2d_params *p, const int8_t *input,
                          const int8_t *filter, const int32_t *bias, int8_t *output, int8_t *scratch)
{
    if (p->mult == NULL) {
        ek_conv2d_1x1_fold(p, input, filter, bias, output, (int32_t *)(void *)scratch);
    } else {
        ek_conv2d_1x1_pairs(p, input, filter, bias, output);
    }
}
