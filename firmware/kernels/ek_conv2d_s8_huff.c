/* ek_conv2d_s8_huff.c - 2-D convolution with Huffman-coded weights; format in
 * ek_wcode.h.  block_rows filter rows at a time are decoded from flash into
 * scratch (sequentially through the whole bitstream on every call), then those
 * output channels are computed for every pixel.
 * scratch: block_rows*K decoded weights, then the K-byte patch (when
 * ek_wc_needs_patch).
 * The loops: ek_wc_conv (ek_wdot.h). */
#include "ek_wdot.h"

void ek_conv2d_s8_huff(const ek_conv2d_wc_params *p, const int8_t *input, const int32_t *bias,
                       int8_t *output, int8_t *scratch)
{
    ek_wc_conv(p, input, bias, output, scratch, EK_WF_HUFF);
}
