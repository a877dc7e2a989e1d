/* ek_conv2d_s8_sparse.c - 2-D convolution with sparse weights (the non-zero
 * weights of each row as delta-coded positions and int8 values), read from
 * flash as stored; format in ek_wcode.h.  Cost per output value is one
 * multiply-accumulate per entry, not per weight.
 *
 * For each output pixel (y, x), for each output channel o:
 *     acc = bias[o] + dot(the pixel's patch, row o's entries index[o] .. index[o+1]-1)
 *     output[y][x][o] = acc requantized (ek_wc_out_conv)
 * The patch is the K input values under the filter (ek_wc_patch); the dot walks
 * it from position 0 by the entries' deltas (4 or 8 bits: ek_wdot_sparse4,
 * ek_wdot_sparse8).
 * scratch: the K-byte patch; unused (NULL is fine) for a 1x1 filter without
 * padding, whose patch is the input pixel itself. */
#include "ek_wdot.h"

void ek_conv2d_s8_sparse(const ek_conv2d_wc_params *p, const int8_t *input, const int32_t *bias,
                         int8_t *output, int8_t *scratch)
{
    const ek_conv2d_params *c = &p->conv;
    const uint8_t *deltas = p->w.codes;
    const int8_t *values = p->w.values;
    const uint32_t *index = p->w.index;
    const int32_t out_c = c->out_c;
    const int four_bit = p->w.delta_bits == 4;
    for (int32_t y = 0; y < c->out_h; ++y) {
        for (int32_t x = 0; x < c->out_w; ++x, output += out_c) {
            const int8_t *patch = ek_wc_patch(c, input, y, x, scratch);
            uint32_t e = index[0];
            for (int32_t o = 0; o < out_c; ++o) {
                const uint32_t end = index[o + 1];
                const int32_t dot = four_bit ? ek_wdot_sparse4(patch, deltas, values, e, end)
                                             : ek_wdot_sparse8(patch, deltas, values, e, end);
                output[o] = ek_wc_out_conv(c, ek_wc_add(bias[o], dot), o);
                e = end;
            }
        }
    }
}
