/* ek_fc_s8_w4_dsp.c - fully connected layer with w4 weights in the _dsp layout (nibbles permuted
 * within groups of eight, rows interleaved by pairs; ek_wcode.h): for every batch row, the output
 * rows two at a time (one pass over the input for both, ek_wdot_w4_dsp_1x2: SMLAD on the masked
 * nibbles), an odd last row alone, each output requantized as ek_fc_s8_dsp does.  Same results
 * as ek_fc_s8_w4.  scratch unused. */
#include "ek_wdot_dsp.h"

void ek_fc_s8_w4_dsp(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                     int8_t *output, int8_t *scratch)
{
    (void)scratch;
    const ek_wcode *w = &p->w;
    const int32_t batch = p->fc.rows, out_n = p->fc.out_n, K = w->row_len;
    const int32_t pair_bytes = 2 * ((K + 1) >> 1);     /* a pair of rows: (K + 1) / 2 bytes each */
    const ek_fc_q q = ek_fc_q_prepare(&p->fc);
    for (int32_t b = 0; b < batch; ++b) {
        const int8_t *x = input + (int64_t)b * K;
        int8_t *out = output + (int64_t)b * out_n;
        const uint8_t *codes = w->codes;
        int32_t o = 0;
        for (; o + 2 <= out_n; o += 2, codes += pair_bytes) {
            int32_t acc[2] = {bias[o], bias[o + 1]};
            ek_wdot_w4_dsp_1x2(x, codes, K, acc);
            out[o] = ek_fc_q_out(&q, acc[0], o);
            out[o + 1] = ek_fc_q_out(&q, acc[1], o + 1);
        }
        if (o < out_n) {                                 /* an odd last row */
            out[o] = ek_fc_q_out(&q, ek_wdot_w4_dsp_1x1(x, codes, K, bias[o]), o);
        }
    }
}
