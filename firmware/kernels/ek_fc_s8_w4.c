/* ek_fc_s8_w4.c - fully connected layer with w4 weights (4-bit two's
 * complement, two per byte) read from flash as stored; format in ek_wcode.h.
 * The loops: ek_wc_fc (ek_wdot.h). */
#include "ek_wdot.h"

void ek_fc_s8_w4(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                 int8_t *output, int8_t *scratch)
{
    ek_wc_fc(p, input, bias, output, scratch, EK_WF_W4);
}
