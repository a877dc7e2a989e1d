/* ek_conv2d_s8_w4_dsp.c - 2-D convolution with w4 weights in the _dsp layout (nibbles
 * permuted within groups of eight, rows interleaved by pairs; ek_wcode.h), SMLAD on the
 * masked nibbles (ek_wdot_dsp.h).  Same results and scratch as ek_conv2d_s8_w4: one output
 * pixel at a time, its patch (or the input pixel itself) against every row pair.
 * The loops: ek_wc_conv_dsp (ek_wdot_dsp.h). */
#include "ek_wdot_dsp.h"

void ek_conv2d_s8_w4_dsp(const ek_conv2d_wc_params *p, const int8_t *input, const int32_t *bias,
                         int8_t *output, int8_t *scratch)
{
    ek_wc_conv_dsp(p, input, bias, output, scratch, EK_WF_W4);
}
