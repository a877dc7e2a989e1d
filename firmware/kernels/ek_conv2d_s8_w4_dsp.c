/* ek_conv2d_s8_w4_dsp.c - 2-D convolution with w4 weights (two per byte, the portable layout;
 * ek_wcode.h): block_rows rows at a time unpacked from flash (nibbles sign-extended) into
 * scratch, then every output pixel's patch, four at a time, split once and run through the int8
 * kernels' folded GEMM against them (ek_conv2d_fold_dsp.h: SMLAD on the split patches, one SMMLAR
 * requantization).  Same results as ek_conv2d_s8_w4; scratch as ek_wcode.h's table says.
 * The loops: ek_wc_conv_dsp (ek_wdot_dsp.h). */
#include "ek_wdot_dsp.h"

void ek_conv2d_s8_w4_dsp(const ek_conv2d_wc_params *p, const int8_t *input, const int32_t *bias,
                         int8_t *output, int8_t *scratch)
{
    ek_wc_conv_dsp(p, input, bias, output, scratch, EK_WF_W4);
}
