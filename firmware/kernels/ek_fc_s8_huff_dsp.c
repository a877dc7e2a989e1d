/* ek_fc_s8_huff_dsp.c - fully connected layer with Huffman-coded weights in the _dsp layout
 * (each block's rows interleaved by pairs, ek_wcode.h): block_rows rows at a time are decoded
 * into scratch (block_rows*K bytes), which then holds them exactly as ek_fc_s8_dsp's filter,
 * and the SMLAD dot products of ek_dot_s8_dsp.h run on them.  Same results as ek_fc_s8_huff.
 * The loops: ek_wc_fc_dsp (ek_wdot_dsp.h). */
#include "ek_wdot_dsp.h"

void ek_fc_s8_huff_dsp(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                       int8_t *output, int8_t *scratch)
{
    ek_wc_fc_dsp(p, input, bias, output, scratch, EK_WF_HUFF);
}
