/* ek_fc_s8_lut4_dsp.c - fully connected layer with lut4 weights (4-bit indices into int8
 * codebooks, the portable layout; ek_wcode.h): for every batch row and output, the row's weights
 * looked up in its codebook two at a time and packed into one halfword pair per SMLAD
 * (ek_wdot_lut4_dsp), then requantized as ek_fc_s8_dsp does.  Same results as ek_fc_s8_lut4.
 * scratch unused. */
#include "ek_wdot_dsp.h"

void ek_fc_s8_lut4_dsp(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                       int8_t *output, int8_t *scratch)
{
    (void)scratch;
    const ek_wcode *w = &p->w;
    const int32_t batch = p->fc.rows, out_n = p->fc.out_n, K = w->row_len;
    const int32_t row_bytes = (K + 1) >> 1;                        /* two indices a byte */
    const int32_t book_step = w->per_channel ? w->levels : 0;      /* per_channel: one codebook per row */
    const ek_fc_q q = ek_fc_q_prepare(&p->fc);
    for (int32_t b = 0; b < batch; ++b) {
        const int8_t *x = input + (int64_t)b * K;
        int8_t *out = output + (int64_t)b * out_n;
        const uint8_t *codes = w->codes;
        const int8_t *book = w->values;
        for (int32_t o = 0; o < out_n; ++o, codes += row_bytes, book += book_step) {
            out[o] = ek_fc_q_out(&q, ek_wdot_lut4_dsp(x, codes, book, K, bias[o]), o);
        }
    }
}
