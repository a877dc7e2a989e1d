/* ek_conv2d_s8_w4_dsp.c - 2-D convolution with w4 weights (two per byte, the portable layout;
 * ek_wcode.h) through the int8 kernels' folded GEMM (ek_conv2d_fold_dsp.h).  Same results as
 * ek_conv2d_s8_w4.
 *
 * block_rows filter rows at a time are unpacked from flash (nibbles sign-extended) into int8 rows
 * zero-padded to whole groups of four; then every output pixel's patch, four pixels at a time, is
 * split into the 4-pixel buffer and the block's rows run against the four (SMLAD on the split
 * patches, one SMMLAR requantization per output).  The patches are split again for every block:
 * block_rows is as many rows as 4 KB holds (edgekit.lower.compressed.w4_conv_block_rows), so a
 * small layer is one block.
 *
 * block: the folded form's per-channel requantization {2 * bias, M, k, R}, written by the exporter
 * (ek_conv2d.h; edgekit.lower.packing.pack_conv_fold_blocks) and passed as the bias; p->conv.mult
 * and p->conv.shift are NULL.  The exporter gives this kernel only layers within the folded
 * form's range (edgekit.lower.packing.conv_fold_range_ok), any other the portable kernel.
 * scratch (ek_wcode.h's table, 4-byte aligned): the 4-pixel buffer, block_rows unpacked rows, then
 * the K-byte patch when ek_wc_needs_patch. */
#include "ek_wdot_dsp.h"

/* Channels o0 .. o0+n-1, their rows unpacked in s.rows, of every output pixel, four pixels at a
 * time.  Out of line: once per block, with its own registers for the pixel loop. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void ek_w4_dsp_pixels(const ek_conv2d_params *c, const int8_t *input, const int32_t *block,
                             int8_t *output, ek_wc_fold_scratch s, int32_t K, int32_t o0, int32_t n)
{
    const int32_t groups = ek_wc_groups(K), pixels = c->out_h * c->out_w;
    for (int32_t px = 0; px < pixels; px += 4) {
        const int32_t count = ek_min_i32(4, pixels - px);
        ek_wc_split_patches(c, input, px, count, K, s.buf, s.col);
        ek_fold_gemm(c, s.buf, groups, count, s.rows, block + 4 * o0, output + (int64_t)px * c->out_c + o0, n);
    }
}

void ek_conv2d_s8_w4_dsp(const ek_conv2d_wc_params *p, const int8_t *input, const int32_t *block,
                         int8_t *output, int8_t *scratch)
{
    const ek_conv2d_params *c = &p->conv;
    const int32_t K = p->w.row_len, groups = ek_wc_groups(K), out_c = c->out_c, block_rows = p->w.block_rows;
    const ek_wc_fold_scratch s = ek_wc_fold_scratch_at(scratch, groups, block_rows);
    ek_wrows r = ek_wrows_start(&p->w, EK_WF_W4);
    for (int32_t o0 = 0; o0 < out_c; o0 += block_rows) {          /* each block of rows */
        const int32_t n = ek_min_i32(block_rows, out_c - o0);
        ek_wc_unpack_rows(&r, EK_WF_W4, s.rows, n, groups);
        ek_w4_dsp_pixels(c, input, block, output, s, K, o0, n);    /* against every pixel */
    }
}
