/* ek_fc_s8_huff_dsp.c - fully connected layer with Huffman-coded weights in the _dsp layout (each
 * block's rows interleaved by pairs, ek_wcode.h): block_rows rows at a time are decoded into
 * scratch (block_rows * K bytes), which then holds them exactly as ek_fc_s8_dsp's filter, and
 * every batch row runs against them with the SMLAD dot products of ek_dot_s8_dsp.h: four rows
 * (two pairs) per pass over the input, then a pair, then an odd last row; each output requantized
 * as ek_fc_s8_dsp does.  Same results as ek_fc_s8_huff.  The stream is decoded once per call. */
#include "ek_wdot_dsp.h"

/* out[o] for o = o0 .. end-1: the input row x against the decoded block at rows (row o0 first,
 * pairs interleaved). */
static EK_ALWAYS_INLINE void ek_fc_huff_block(const ek_fc_q *q, const int8_t *x, const int8_t *rows, int32_t K,
                                              const int32_t *bias, int8_t *out, int32_t o0, int32_t end)
{
    int32_t o = o0;
    for (; o + 4 <= end; o += 4, rows += 4 * K) {       /* two pairs */
        int32_t acc[4] = {bias[o], bias[o + 1], bias[o + 2], bias[o + 3]};
        ek_dot_s8_1x4(x, rows, rows + 2 * K, K, acc);
        for (int32_t j = 0; j < 4; ++j) {
            out[o + j] = ek_fc_q_out(q, acc[j], o + j);
        }
    }
    for (; o + 2 <= end; o += 2, rows += 2 * K) {       /* a pair */
        int32_t acc[2] = {bias[o], bias[o + 1]};
        ek_dot_s8_1x2(x, rows, K, acc);
        out[o] = ek_fc_q_out(q, acc[0], o);
        out[o + 1] = ek_fc_q_out(q, acc[1], o + 1);
    }
    if (o < end) {                                      /* an odd last row */
        out[o] = ek_fc_q_out(q, ek_dot_s8_1x1(x, rows, K, bias[o]), o);
    }
}

void ek_fc_s8_huff_dsp(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                       int8_t *output, int8_t *scratch)
{
    /* the shape in locals: the decoder is a call, after which p's fields would be loaded again */
    const ek_wcode *w = &p->w;
    const int32_t batch = p->fc.rows, out_n = p->fc.out_n, K = w->row_len, block_rows = w->block_rows;
    const ek_fc_q q = ek_fc_q_prepare(&p->fc);
    ek_huff_state bits;
    ek_huff_init(w, &bits);
    for (int32_t o0 = 0; o0 < out_n; o0 += block_rows) {           /* each block of rows */
        const int32_t end = o0 + ek_huff_block(w, &bits, scratch, o0, out_n, 1);
        for (int32_t b = 0; b < batch; ++b) {                       /* against every batch row */
            ek_fc_huff_block(&q, input + (int64_t)b * K, scratch, K, bias, output + (int64_t)b * out_n, o0, end);
        }
    }
}
