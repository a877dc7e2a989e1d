/* ek_fc_s8_huff.c - fully connected layer with Huffman-coded weights; format
 * in ek_wcode.h.  block_rows weight rows at a time are decoded from flash into
 * scratch (block_rows*K bytes; sequentially through the whole bitstream on
 * every call), then those outputs are computed for every batch row.
 * The loops: ek_wc_fc (ek_wdot.h). */
#include "ek_wdot.h"

void ek_fc_s8_huff(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                   int8_t *output, int8_t *scratch)
{
    ek_wc_fc(p, input, bias, output, scratch, EK_WF_HUFF);
}
