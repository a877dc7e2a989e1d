/* ek_fc_s8_w4_dsp.c - fully connected layer with w4 weights in the _dsp layout (nibbles
 * permuted within groups of eight, rows interleaved by pairs; ek_wcode.h), SMLAD on the
 * masked nibbles (ek_wdot_dsp.h).  Same results as ek_fc_s8_w4.  scratch unused.
 * The loops: ek_wc_fc_dsp (ek_wdot_dsp.h). */
#include "ek_wdot_dsp.h"

void ek_fc_s8_w4_dsp(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                     int8_t *output, int8_t *scratch)
{
    ek_wc_fc_dsp(p, input, bias, output, scratch, EK_WF_W4);
}
