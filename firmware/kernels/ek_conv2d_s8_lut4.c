/* ek_conv2d_s8_lut4.c - 2-D convolution with lut4 weights (4-bit indices into
 * int8 codebooks) read from flash as stored; format in ek_wcode.h.
 *
 * For each output pixel (y, x), for each output channel o:
 *     acc = bias[o] + dot(the pixel's patch, row o's indices looked up in row o's codebook)
 *     output[y][x][o] = acc requantized (ek_wc_out_conv)
 * The patch is the K input values under the filter (ek_wc_patch).  Row o's
 * indices start at codes + o * (K + 1) / 2, its codebook at values + o * levels
 * (one codebook per row) or values (one for the layer).
 * scratch: the K-byte patch; unused (NULL is fine) for a 1x1 filter without
 * padding, whose patch is the input pixel itself. */
#include "ek_wdot.h"

void ek_conv2d_s8_lut4(const ek_conv2d_wc_params *p, const int8_t *input, const int32_t *bias,
                       int8_t *output, int8_t *scratch)
{
    const ek_conv2d_params *c = &p->conv;
    const int32_t K = p->w.row_len, out_c = c->out_c;
    const int32_t row_bytes = (K + 1) >> 1, book_step = ek_wc_book_step(&p->w);
    for (int32_t y = 0; y < c->out_h; ++y) {
        for (int32_t x = 0; x < c->out_w; ++x, output += out_c) {
            const int8_t *patch = ek_wc_patch(c, input, y, x, scratch);
            const uint8_t *codes = p->w.codes;
            const int8_t *book = p->w.values;
            for (int32_t o = 0; o < out_c; ++o) {
                const int32_t dot = ek_wdot_lut4(patch, codes, book, K);
                codes += row_bytes;
                book += book_step;
                output[o] = ek_wc_out_conv(c, ek_wc_add(bias[o], dot), o);
            }
        }
    }
}
