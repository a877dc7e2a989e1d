/* ek_conv2d_s8_huff_dsp.c - 2-D convolution with Huffman-coded weights in the _dsp layout
 * (each block's rows interleaved by pairs, ek_wcode.h): block_rows filter rows at a time are
 * decoded into scratch, which then holds them as ek_conv2d_s8_1x1_dsp's filter, and every
 * output pixel's patch runs against them with the SMLAD dot products of ek_dot_s8_dsp.h.
 * Same results and scratch as ek_conv2d_s8_huff (the decoded rows, then the patch).
 * The loops: ek_wc_conv_dsp (ek_wdot_dsp.h). */
#include "ek_wdot_dsp.h"

void ek_conv2d_s8_huff_dsp(const ek_conv2d_wc_params *p, const int8_t *input, const int32_t *bias,
                           int8_t *output, int8_t *scratch)
{
    ek_wc_conv_dsp(p, input, bias, output, scratch, EK_WF_HUFF);
}
