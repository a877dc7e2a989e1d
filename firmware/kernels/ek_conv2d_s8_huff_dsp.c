/* ek_conv2d_s8_huff_dsp.c - 2-D convolution with Huffman-coded weights (the portable layout:
 * rows in order, ek_wcode.h): block_rows filter rows at a time are decoded into scratch, each
 * zero-padded to whole groups of four, and run through the int8 kernels' folded GEMM
 * (ek_conv2d_fold_dsp.h: four output pixels' patches split once, one SMMLAR requantization) for
 * every output pixel.  Same results as ek_conv2d_s8_huff; scratch as ek_wcode.h's table says.
 * The loops: ek_wc_conv_huff_dsp (ek_wdot_dsp.h). */
#include "ek_wdot_dsp.h"

void ek_conv2d_s8_huff_dsp(const ek_conv2d_wc_params *p, const int8_t *input, const int32_t *bias,
                           int8_t *output, int8_t *scratch)
{
    ek_wc_conv_huff_dsp(p, input, bias, output, scratch);
}
