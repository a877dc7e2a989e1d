/* ek_fc_s8_huff.c - fully connected layer with Huffman-coded weights; format
 * in ek_wcode.h.
 *
 * For each block of block_rows weight rows o0 .. o0+n-1 (the last block may be
 * shorter), in order through the whole bitstream on every call:
 *     decode the block into scratch (ek_huff_block: n*K int8 weights, row o at
 *     scratch + (o - o0) * K)
 *     for each batch row b, for each output o of the block:
 *         acc = bias[o] + dot(input row b, decoded row o)
 *         output[b][o] = acc requantized (ek_wc_out_fc)
 * scratch: block_rows*K bytes. */
#include "ek_wdot.h"

void ek_fc_s8_huff(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                   int8_t *output, int8_t *scratch)
{
    const ek_fc_params *f = &p->fc;
    const ek_wcode *w = &p->w;
    const int32_t K = w->row_len, out_n = f->out_n;
    const int double_round = f->double_round != 0;
    ek_huff_state bits;
    ek_huff_init(w, &bits);
    for (int32_t o0 = 0; o0 < out_n; o0 += w->block_rows) {
        const int32_t n = ek_huff_block(w, &bits, scratch, o0, out_n, /* rows in order */ 0);
        for (int32_t b = 0; b < f->rows; ++b) {
            const int8_t *x = input + (int64_t)b * K;
            int8_t *out = output + (int64_t)b * out_n;
            const int8_t *row = scratch;
            for (int32_t o = o0; o < o0 + n; ++o) {
                const int32_t dot = ek_wdot_s8(x, row, K);
                row += K;
                out[o] = ek_wc_out_fc(f, ek_wc_add(bias[o], dot), o, double_round);
            }
        }
    }
}
