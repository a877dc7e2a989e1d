/* ek_fc_s8_lut4.c - fully connected layer with lut4 weights (4-bit indices
 * into int8 codebooks) read from flash as stored; format in ek_wcode.h.
 *
 * For each batch row b, for each output o:
 *     acc = bias[o] + dot(input row b, row o's indices looked up in row o's codebook)
 *     output[b][o] = acc requantized (ek_wc_out_fc)
 * Row o's indices start at codes + o * (K + 1) / 2, its codebook at
 * values + o * levels (one codebook per row) or values (one for the layer).
 * scratch: unused. */
#include "ek_wdot.h"

void ek_fc_s8_lut4(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                   int8_t *output, int8_t *scratch)
{
    const ek_fc_params *f = &p->fc;
    const int32_t K = p->w.row_len, out_n = f->out_n;
    const int32_t row_bytes = (K + 1) >> 1, book_step = ek_wc_book_step(&p->w);
    const int double_round = f->double_round != 0;
    (void)scratch;
    for (int32_t b = 0; b < f->rows; ++b) {
        const int8_t *x = input + (int64_t)b * K;
        int8_t *out = output + (int64_t)b * out_n;
        const uint8_t *codes = p->w.codes;
        const int8_t *book = p->w.values;
        for (int32_t o = 0; o < out_n; ++o) {
            const int32_t dot = ek_wdot_lut4(x, codes, book, K);
            codes += row_bytes;
            book += book_step;
            out[o] = ek_wc_out_fc(f, ek_wc_add(bias[o], dot), o, double_round);
        }
    }
}
