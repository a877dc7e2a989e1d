/* ek_conv2d_s8_lut8.c - 2-D convolution with lut8 weights (byte indices into
 * int8 codebooks) read from flash as stored; format in ek_wcode.h.
 * The loops: ek_wc_conv (ek_wdot.h). */
#include "ek_wdot.h"

void ek_conv2d_s8_lut8(const ek_conv2d_wc_params *p, const int8_t *input, const int32_t *bias,
                       int8_t *output, int8_t *scratch)
{
    ek_wc_conv(p, input, bias, output, scratch, EK_WF_LUT8);
}
