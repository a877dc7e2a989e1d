/* ek_dwconv_s8_w4_3x3_dsp.c - 3x3 depthwise convolution with int4 weights, for the layers
 * ek_dwconv_s8_3x3_dsp or ek_dwconv_s8_3x3_fold_dsp takes (ek_dwconv.h): the filter is held as
 * nibbles in those kernels' order (edgekit.lower.dwconv: pack_dw3x3_filter's int16 halves, one
 * nibble each, low nibble first: codes, rows = 1, row_len = 9 * ceil(C / 4) * 4) and unpacked
 * at every call into scratch as its int16 halves; then, when p->dw.mult is NULL (the folded
 * form: bias = pack_dw3x3_fold's blocks), the row of the input zero point is appended and
 * ek_dwconv_s8_3x3_fold_dsp runs, else ek_dwconv_s8_3x3_dsp (bias and mult / shift as it takes
 * them).  Same results as ek_dwconv_s8_w4 and ek_dwconv_s8.  scratch: 2 * row_len bytes, plus
 * row_len / 9 in the folded form, 4-byte aligned.  Unpacking costs about two instructions a
 * weight, once per call. */
#include <string.h>

#include "ek_wdot.h"

void ek_dwconv_s8_w4_3x3_dsp(const ek_dwconv_wc_params *p, const int8_t *input, const int32_t *bias,
                             int8_t *output, int8_t *scratch)
{
    const int32_t n = p->w.row_len;
    const uint8_t *codes = p->w.codes;
    int16_t *filter = (int16_t *)(void *)scratch;
    for (int32_t j = 0; j + 2 <= n; j += 2) {
        const uint32_t b = *codes++;
        filter[j] = (int16_t)ek_nib_lo(b);
        filter[j + 1] = (int16_t)ek_nib_hi(b);
    }
    if (n & 1) {
        filter[n - 1] = (int16_t)ek_nib_lo(*codes);
    }
    if (p->dw.mult == NULL) {
        memset(scratch + 2 * n, (uint8_t)(int8_t)(-p->dw.input_offset), (size_t)(n / 9));
        ek_dwconv_s8_3x3_fold_dsp(&p->dw, input, scratch, bias, output);
    } else {
        ek_dwconv_s8_3x3_dsp(&p->dw, input, scratch, bias, output);
    }
}
