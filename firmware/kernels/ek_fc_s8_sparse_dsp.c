/* ek_fc_s8_sparse_dsp.c - fully connected layer with sparse weights (the portable layout,
 * ek_wcode.h): for every batch row and output, the row's deltas walk the input a word at a time
 * with UXTAB and the gathered inputs meet the values in SMLAD pairs (ek_wdot_sparse_dsp), then
 * the output is requantized as ek_fc_s8_dsp does.  Same results as ek_fc_s8_sparse; the cost per
 * output is proportional to the row's entries.  scratch unused. */
#include "ek_wdot_dsp.h"

/* The layer for one delta width (delta_bits 4 or 8, a constant). */
static EK_ALWAYS_INLINE void ek_fc_sparse_layer(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                                                int8_t *output, const int32_t delta_bits)
{
    const ek_wcode *w = &p->w;
    const int32_t batch = p->fc.rows, out_n = p->fc.out_n, K = w->row_len;
    const uint8_t *deltas = w->codes;
    const int8_t *values = w->values;
    const uint32_t *index = w->index;
    const ek_fc_q q = ek_fc_q_prepare(&p->fc);
    for (int32_t b = 0; b < batch; ++b) {
        const int8_t *x = input + (int64_t)b * K;
        int8_t *out = output + (int64_t)b * out_n;
        uint32_t e = index[0];
        for (int32_t o = 0; o < out_n; ++o) {            /* row o: entries e .. index[o + 1] - 1 */
            const uint32_t end = index[o + 1];
            out[o] = ek_fc_q_out(&q, ek_wdot_sparse_dsp(x, deltas, values, delta_bits, e, end - e, bias[o]), o);
            e = end;
        }
    }
}

void ek_fc_s8_sparse_dsp(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                         int8_t *output, int8_t *scratch)
{
    (void)scratch;
    if (p->w.delta_bits == 8) {
        ek_fc_sparse_layer(p, input, bias, output, 8);
    } else {
        ek_fc_sparse_layer(p, input, bias, output, 4);
    }
}
