/* ek_fc_s8_w4.c - fully connected layer with w4 weights (4-bit two's
 * complement, two per byte) read from flash as stored; format in ek_wcode.h.
 *
 * For each batch row b, for each output o:
 *     acc = bias[o] + dot(input row b, row o's K nibbles)
 *     output[b][o] = acc requantized (ek_wc_out_fc)
 * Row o starts at codes + o * (K + 1) / 2.  scratch: unused. */
#include "ek_wdot.h"

void ek_fc_s8_w4(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                 int8_t *output, int8_t *scratch)
{
    const ek_fc_params *f = &p->fc;
    const int32_t K = p->w.row_len, out_n = f->out_n, row_bytes = (K + 1) >> 1;
    const int double_round = f->double_round != 0;
    (void)scratch;
    for (int32_t b = 0; b < f->rows; ++b) {
        const int8_t *x = input + (int64_t)b * K;
        int8_t *out = output + (int64_t)b * out_n;
        const uint8_t *row = p->w.codes;
        for (int32_t o = 0; o < out_n; ++o) {
            const int32_t dot = ek_wdot_w4(x, row, K);
            row += row_bytes;
            out[o] = ek_wc_out_fc(f, ek_wc_add(bias[o], dot), o, double_round);
        }
    }
}
