/* ek_conv2d_s8_huff.c - 2-D convolution with Huffman-coded weights; format in
 * ek_wcode.h.
 *
 * For each block of block_rows filter rows o0 .. o0+n-1 (the last block may be
 * shorter), in order through the whole bitstream on every call:
 *     decode the block into scratch (ek_huff_block: n*K int8 weights, row o at
 *     scratch + (o - o0) * K)
 *     for each output pixel (y, x), for each output channel o of the block:
 *         acc = bias[o] + dot(the pixel's patch, decoded row o)
 *         output[y][x][o] = acc requantized (ek_wc_out_conv)
 * The patch is the K input values under the filter (ek_wc_patch: built in
 * scratch after the block, or the input pixel itself for a 1x1 filter without
 * padding).  scratch: block_rows*K decoded weights, then the K-byte patch
 * (when ek_wc_needs_patch). */
#include "ek_wdot.h"

void ek_conv2d_s8_huff(const ek_conv2d_wc_params *p, const int8_t *input, const int32_t *bias,
                       int8_t *output, int8_t *scratch)
{
    const ek_conv2d_params *c = &p->conv;
    const ek_wcode *w = &p->w;
    const int32_t K = w->row_len, out_c = c->out_c;
    int8_t *col = scratch + (int64_t)w->block_rows * K;
    ek_huff_state bits;
    ek_huff_init(w, &bits);
    for (int32_t o0 = 0; o0 < out_c; o0 += w->block_rows) {
        const int32_t n = ek_huff_block(w, &bits, scratch, o0, out_c, /* rows in order */ 0);
        int8_t *out = output;
        for (int32_t y = 0; y < c->out_h; ++y) {
            for (int32_t x = 0; x < c->out_w; ++x, out += out_c) {
                const int8_t *patch = ek_wc_patch(c, input, y, x, col);
                const int8_t *row = scratch;
                for (int32_t o = o0; o < o0 + n; ++o) {
                    const int32_t dot = ek_wdot_s8(patch, row, K);
                    row += K;
                    out[o] = ek_wc_out_conv(c, ek_wc_add(bias[o], dot), o);
                }
            }
        }
    }
}
