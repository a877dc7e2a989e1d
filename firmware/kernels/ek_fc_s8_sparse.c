/* ek_fc_s8_sparse.c - fully connected layer with sparse weights (the non-zero
 * weights of each row as delta-coded positions and int8 values), read from
 * flash as stored; format in ek_wcode.h.  Cost per output value is one
 * multiply-accumulate per entry, not per weight.
 *
 * For each batch row b, for each output o:
 *     acc = bias[o] + dot(input row b, row o's entries index[o] .. index[o+1]-1)
 *     output[b][o] = acc requantized (ek_wc_out_fc)
 * The dot walks the input from position 0 by the entries' deltas (4 or 8 bits:
 * ek_wdot_sparse4, ek_wdot_sparse8).  scratch: unused. */
#include "ek_wdot.h"

void ek_fc_s8_sparse(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                     int8_t *output, int8_t *scratch)
{
    const ek_fc_params *f = &p->fc;
    const uint8_t *deltas = p->w.codes;
    const int8_t *values = p->w.values;
    const uint32_t *index = p->w.index;
    const int32_t K = p->w.row_len, out_n = f->out_n;
    const int four_bit = p->w.delta_bits == 4;
    const int double_round = f->double_round != 0;
    (void)scratch;
    for (int32_t b = 0; b < f->rows; ++b) {
        const int8_t *x = input + (int64_t)b * K;
        int8_t *out = output + (int64_t)b * out_n;
        uint32_t e = index[0];
        for (int32_t o = 0; o < out_n; ++o) {
            const uint32_t end = index[o + 1];
            const int32_t dot = four_bit ? ek_wdot_sparse4(x, deltas, values, e, end)
                                         : ek_wdot_sparse8(x, deltas, values, e, end);
            out[o] = ek_wc_out_fc(f, ek_wc_add(bias[o], dot), o, double_round);
            e = end;
        }
    }
}
