/* ek_fc_s8_lut4_dsp.c - fully connected layer with lut4 weights (4-bit indices into int8
 * codebooks; the portable layout, ek_wcode.h): two codebook values packed per SMLAD
 * (ek_wdot_dsp.h).  Same results as ek_fc_s8_lut4.  scratch unused.
 * The loops: ek_wc_fc_dsp (ek_wdot_dsp.h). */
#include "ek_wdot_dsp.h"

void ek_fc_s8_lut4_dsp(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                      int8_t *output, int8_t *scratch)
{
    ek_wc_fc_dsp(p, input, bias, output, scratch, EK_WF_LUT4);
}
