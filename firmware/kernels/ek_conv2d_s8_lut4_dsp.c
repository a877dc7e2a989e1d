/* ek_conv2d_s8_lut4_dsp.c - 2-D convolution with lut4 weights (4-bit indices into int8
 * codebooks, the portable layout; ek_wcode.h) through the int8 kernels' folded GEMM
 * (ek_conv2d_fold_dsp.h).  Same results as ek_conv2d_s8_lut4.
 *
 * Four output pixels at a time: their patches are split once into the 4-pixel buffer, then the
 * filter rows, EK_WC_FOLD_ROWS at a time, are unpacked from flash (each index looked up in its
 * codebook) into int8 rows zero-padded to whole groups of four and run against the four pixels
 * (SMLAD on the split patches, one SMMLAR requantization per output).  Only a few rows are ever
 * unpacked, never the layer: they are unpacked again for every four pixels.
 *
 * block: the folded form's per-channel requantization {2 * bias, M, k, R}, written by the exporter
 * (ek_conv2d.h; edgekit.lower.packing.pack_conv_fold_blocks) and passed as the bias; p->conv.mult
 * and p->conv.shift are NULL.  The exporter gives this kernel only layers within the folded
 * form's range (edgekit.lower.packing.conv_fold_range_ok), any other the portable kernel.
 * scratch (ek_wcode.h's table, 4-byte aligned): the 4-pixel buffer, EK_WC_FOLD_ROWS unpacked
 * rows, then the K-byte patch when ek_wc_needs_patch. */
#include "ek_wdot_dsp.h"

/* Every channel of the four pixels split in s.buf (count of them real): the rows unpacked from
 * flash EK_WC_FOLD_ROWS at a time into s.rows and run against the four; out: pixel 0's outputs.
 * Out of line: once per four pixels, with its own registers for the row loop. */
#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void ek_lut4_dsp_rows(const ek_conv2d_wc_params *p, const int32_t *block, int8_t *out,
                             ek_wc_fold_scratch s, int32_t count)
{
    const ek_conv2d_params *c = &p->conv;
    const int32_t groups = ek_wc_groups(p->w.row_len), out_c = c->out_c;
    ek_wrows r = ek_wrows_start(&p->w, EK_WF_LUT4);
    for (int32_t o0 = 0; o0 < out_c; o0 += EK_WC_FOLD_ROWS) {
        const int32_t n = ek_min_i32(EK_WC_FOLD_ROWS, out_c - o0);
        ek_wc_unpack_rows(&r, EK_WF_LUT4, s.rows, n, groups);
        ek_fold_gemm(c, s.buf, groups, count, s.rows, block + 4 * o0, out + o0, n);
    }
}

void ek_conv2d_s8_lut4_dsp(const ek_conv2d_wc_params *p, const int8_t *input, const int32_t *block,
                           int8_t *output, int8_t *scratch)
{
    const ek_conv2d_params *c = &p->conv;
    const int32_t K = p->w.row_len, pixels = c->out_h * c->out_w;
    const ek_wc_fold_scratch s = ek_wc_fold_scratch_at(scratch, ek_wc_groups(K), EK_WC_FOLD_ROWS);
    for (int32_t px = 0; px < pixels; px += 4) {                    /* each four pixels */
        const int32_t count = ek_min_i32(4, pixels - px);
        ek_wc_split_patches(c, input, px, count, K, s.buf, s.col);
        ek_lut4_dsp_rows(p, block, output + (int64_t)px * c->out_c, s, count);  /* against every row */
    }
}
