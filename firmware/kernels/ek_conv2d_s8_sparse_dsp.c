/* ek_conv2d_s8_sparse_dsp.c - 2-D convolution with sparse weights (the portable layout,
 * ek_wcode.h): the deltas walk the patch a word at a time with UXTAB and the gathered inputs
 * meet the values in SMLAD pairs (ek_wdot_dsp.h).  Same results and scratch as
 * ek_conv2d_s8_sparse; cost per output is proportional to the row's entries.
 *
 * A 1x1 filter without padding reads the input pixels themselves: two output pixels (in
 * raster order) share each row's walk, their outputs written channel by channel (out0[o],
 * out1[o], then o + 1).  Other filters build one patch at a time in scratch.
 * The loops: ek_wc_conv_dsp (ek_wdot_dsp.h). */
#include "ek_wdot_dsp.h"

void ek_conv2d_s8_sparse_dsp(const ek_conv2d_wc_params *p, const int8_t *input, const int32_t *bias,
                             int8_t *output, int8_t *scratch)
{
    ek_wc_conv_dsp(p, input, bias, output, scratch, EK_WF_SPARSE);
}
