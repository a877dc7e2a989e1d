/* ek_fc_s8_dsp.c - fully connected layer with SMLAD (see ek_fc.h). */
#include "ek_dot_s8_dsp.h"
#include "ek_fc.h"

/* Requantization of output o, params in locals (int8 stores may alias p's fields). */
typedef struct {
    const int32_t *mult, *shift;
    int32_t output_offset, act_min, act_max;
    int32_t per_tensor, double_round;
    ek_requant_1r_q layer;    /* mult[0], shift[0] prepared, when per_tensor */
} ek_fc_out_q;

static inline int8_t ek_fc_out(const ek_fc_out_q *q, int32_t acc, int32_t o)
{
    if (q->double_round) {
        acc = ek_requantize(acc, q->mult[o], q->shift[o]);
    } else {
        acc = q->per_tensor ? ek_requant_1r_apply(&q->layer, acc)
                            : ek_requantize_1r(acc, q->mult[o], q->shift[o]);
    }
    acc += q->output_offset;
    return (int8_t)ek_clamp_i32(acc, q->act_min, q->act_max);
}

void ek_fc_s8_dsp(const ek_fc_params *p, const int8_t *input, const int8_t *weights,
                  const int32_t *bias, int8_t *output)
{
    const int32_t n = p->in_n;
    const int32_t out_n = p->out_n;
    const ek_fc_out_q q = {p->mult, p->shift, p->output_offset, p->act_min, p->act_max, p->per_tensor,
                           p->double_round,
                           ek_requant_1r_prepare(p->mult[0], p->shift[0])};
    int32_t r = 0;
    /* Two batch rows x two output rows per pass. */
    for (; r + 2 <= p->rows; r += 2) {
        const int8_t *a0 = input + r * n;
        const int8_t *a1 = a0 + n;
        int8_t *out0 = output + r * out_n;
        int8_t *out1 = out0 + out_n;
        const int8_t *w = weights;
        int32_t o = 0;
        for (; o + 2 <= out_n; o += 2, w += 2 * n) {
            int32_t acc[4] = {bias[o], bias[o + 1], bias[o], bias[o + 1]};
            ek_dot_s8_2x2(a0, a1, w, n, acc);
            out0[o] = ek_fc_out(&q, acc[0], o);
            out0[o + 1] = ek_fc_out(&q, acc[1], o + 1);
            out1[o] = ek_fc_out(&q, acc[2], o);
            out1[o + 1] = ek_fc_out(&q, acc[3], o + 1);
        }
        if (o < out_n) {
            out0[o] = ek_fc_out(&q, ek_dot_s8_1x1(a0, w, n, bias[o]), o);
            out1[o] = ek_fc_out(&q, ek_dot_s8_1x1(a1, w, n, bias[o]), o);
        }
    }
    if (r < p->rows) {   /* one batch row (the usual case): four output rows (two pairs) per pass */
        const int8_t *a = input + r * n;
        int8_t *out = output + r * out_n;
        const int8_t *w = weights;
        int32_t o = 0;
        for (; o + 4 <= out_n; o += 4, w += 4 * n) {
            int32_t acc[4] = {bias[o], bias[o + 1], bias[o + 2], bias[o + 3]};
            ek_dot_s8_1x4(a, w, w + 2 * n, n, acc);
            out[o] = ek_fc_out(&q, acc[0], o);
            out[o + 1] = ek_fc_out(&q, acc[1], o + 1);
            out[o + 2] = ek_fc_out(&q, acc[2], o + 2);
            out[o + 3] = ek_fc_out(&q, acc[3], o + 3);
        }
        if (o + 2 <= out_n) {
            int32_t acc[2] = {bias[o], bias[o + 1]};
            ek_dot_s8_1x2(a, w, n, acc);
            out[o] = ek_fc_out(&q, acc[0], o);
            out[o + 1] = ek_fc_out(&q, acc[1], o + 1);
            o += 2;
            w += 2 * n;
        }
        if (o < out_n) {
            out[o] = ek_fc_out(&q, ek_dot_s8_1x1(a, w, n, bias[o]), o);
        }
    }
}
