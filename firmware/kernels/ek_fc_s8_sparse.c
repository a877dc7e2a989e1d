/* ek_fc_s8_sparse.c - fully connected layer with sparse weights (the non-zero
 * weights of each row as delta-coded positions and int8 values), read from
 * flash as stored; format in ek_wcode.h.  Cost per output value is one
 * multiply-accumulate per entry, not per weight.
 * The loops: ek_wc_fc (ek_wdot.h). */
#include "ek_wdot.h"

void ek_fc_s8_sparse(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                     int8_t *output, int8_t *scratch)
{
    ek_wc_fc(p, input, bias, output, scratch, EK_WF_SPARSE);
}
