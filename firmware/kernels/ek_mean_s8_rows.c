/* ek_mean_s8_rows.c - int8 mean over the rows of a matrix (see ek_mean.h):
 * dims = {rows, cols}, reduce_mask = 0x1, the form GlobalAveragePooling2D
 * on NHWC takes after the exporter merges H and W.  The same results as
 * ek_mean_s8, without its general index walk: each column is summed by a
 * pointer stepping one row at a time, four rows per iteration. */
#include "ek_mean.h"
#include "ek_fixedpoint.h"

void ek_mean_s8_rows(const ek_mean_params *p, const int8_t *input, int8_t *output)
{
    const int32_t rows = p->dims[0];
    const int32_t cols = p->dims[1];
    const int32_t offset = p->input_zero_point * p->count;
    int32_t c;

    for (c = 0; c < cols; ++c) {
        const int8_t *in = input + c;
        int32_t sum = 0; /* |sum| <= 128 * rows: no wrap for any tensor that fits a part */
        int32_t r = rows;
        int32_t acc;

        for (; r >= 4; r -= 4) {
            sum += in[0] + in[cols] + in[2 * cols] + in[3 * cols];
            in += 4 * cols;
        }
        for (; r > 0; --r) {
            sum += *in;
            in += cols;
        }
        acc = ek_requantize(sum - offset, p->multiplier, p->shift) + p->output_zero_point;
        output[c] = ek_sat_s8(acc);
    }
}
