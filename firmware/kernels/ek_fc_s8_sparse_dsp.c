/* ek_fc_s8_sparse_dsp.c - fully connected layer with sparse weights (the portable layout,
 * ek_wcode.h): the deltas walk the input a word at a time with UXTAB and the gathered inputs
 * meet the values in SMLAD pairs (ek_wdot_dsp.h).  Same results as ek_fc_s8_sparse; cost per
 * output is proportional to the row's entries.  scratch unused.
 * The loops: ek_wc_fc_dsp (ek_wdot_dsp.h). */
#include "ek_wdot_dsp.h"

void ek_fc_s8_sparse_dsp(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                         int8_t *output, int8_t *scratch)
{
    ek_wc_fc_dsp(p, input, bias, output, scratch, EK_WF_SPARSE);
}
