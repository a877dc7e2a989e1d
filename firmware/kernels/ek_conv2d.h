/*
 * ek_conv2d.h - 2-D convolution, int8 activations, int8 per-channel weights.
 *
 * Layouts: input [in_h][in_w][in_c], filter [out_c][k_h][k_w][in_c] (TFLite
 * OHWI), bias [out_c] int32 (may be NULL), output [out_h][out_w][out_c].
 *
 * out[y][x][o] = clamp(output_offset + requantize(bias[o] +
 *     sum_{ky,kx,i} (in[iy][ix][i] + input_offset) * w[o][ky][kx][i],
 *     mult[o], shift[o]), act_min, act_max)
 * with iy = y*stride_h - pad_top + ky*dil_h (likewise ix); taps outside the
 * input contribute nothing (TFLite's implicit zero-point padding).
 *
 * Variants, all with the same signature and the same results:
 *
 *   ek_conv2d_s8            portable reference (any shape), the spec.
 *   ek_conv2d_s8_1x1_dsp    pointwise: 1x1 filter, stride 1, no padding (dilation
 *                           irrelevant), so the input is a [pixels][in_c] matrix and
 *                           the convolution a GEMM with the filter [out_c][in_c].
 *   ek_conv2d_s8_dsp        any filter, stride, padding, dilation with
 *                           k_h*k_w*in_c <= EK_CONV2D_DSP_MAX_PATCH: the GEMM on the
 *                           patches (im2col, filter order) of the output pixels.
 *                           Padding taps hold the input zero point.
 *
 * The _dsp variants take their arrays in one of two forms, built at export by
 * edgekit/lower/conv.py and told apart by p->mult.  Both fold the input offset into
 * the bias (int32, wrapping), so the inner loops add in*w only:
 *     bias_folded[o] = bias[o] + input_offset * sum_{ky,kx,i} w[o][ky][kx][i]
 * input_offset is still read (the padding value of ek_conv2d_s8_dsp).
 *
 *   folded form (p->mult = p->shift = NULL; edgekit.lower.conv.pack_conv_fold), what
 *     the exporter chooses whenever the layer fits it:
 *     filter = the OHWI rows, each padded with zeros to a multiple of 4 bytes (the
 *     dot product reads whole words); bias = per channel 4 int32
 *       {2 * bias_folded[o], M[o], 2^(R-1) + output_offset * 2^R, R}, R = -shift[o],
 *     for shifts in [-23, -1]; other shifts {2 * bias_folded[o], M[o], shift[o], 0};
 *     a channel whose weights are all zero (pruned) {0, 0, 2y + 1, 1}, y its one
 *     output value (clamped to int8) whatever its bias: M = 0 makes the requantization
 *     y.  The exporter checks |bias_folded| + patch * 2^14 < 2^30 over the other
 *     channels (no accumulator reaches 2^30) and that its scratch (below) fits
 *     EK_CONV2D_DSP_MAX_SCRATCH.  Four pixels' patches are split once, doubled, into
 *     halfword pairs (ek_fold_split; in_c % 4 == 0 straight from the input,
 *     otherwise assembled as int8 first), every channel's row runs against all four
 *     (ek_dot_fold_4x1: 28 instructions for 32 MACs) and each output is one SMMLAR,
 *     one shift and one SSAT (ek_fold_requantize; the identity and its proof are in
 *     ek_dot_s8_dsp.h).  The block's out-of-range channels take ek_requantize on the
 *     same accumulators.  The four split patches live in scratch (below).
 *     ek_conv2d_s8_1x1_dsp reads all of a block's four input pixels before it
 *     writes their outputs, so it runs in place with no gap when out_c <= in_c.
 *
 *   pair form (p->mult, p->shift set), for the other layers: bias = bias_folded
 *     [out_c]; filter = the OHWI rows interleaved by pairs (ek_dot_s8_dsp.h).  Two
 *     pixels x two channels per pass (ek_conv2d_s8_dsp: the int8 patches of two
 *     pixels in scratch), SMLAD on SXTB16-split words, each output requantized by
 *     ek_requantize.  ek_conv2d_s8_1x1_dsp runs in place with the output starting
 *     2 * in_c bytes below the input when out_c <= in_c.
 *
 * They use Armv7E-M DSP instructions on Cortex-M4/M7 and their exact C twins
 * elsewhere (ek_dsp.h, ek_dot_s8_dsp.h).
 *
 * Scratch: every variant takes a last argument `scratch`, a word-aligned buffer the caller
 * owns for the duration of the call (the generated model.c passes `arena + offset`, planned
 * by edgekit.plan as a buffer live only during this layer, so it never overlaps the layer's
 * input or output, in place or not; NULL when the size below is 0).  Bytes each needs
 * (edgekit/lower/conv.py, conv_scratch_bytes, computes the same):
 *
 *   ek_conv2d_s8                          0 (it ignores scratch)
 *   ek_conv2d_s8_1x1_dsp, pair form       0 (it ignores scratch)
 *   ek_conv2d_s8_dsp, pair form           2 * patch (two pixels' int8 patches)
 *   folded form, either variant           32 * ceil(patch / 4) (four split patches), plus
 *                                         patch (one int8 patch assembled before it is split)
 *                                         for ek_conv2d_s8_dsp with in_c % 4 != 0
 *
 * with patch = k_h * k_w * in_c.  With scratch from the caller the kernels keep no state of
 * their own between calls.
 */
#ifndef EK_CONV2D_H
#define EK_CONV2D_H

#include "ek_common.h"

typedef struct {
    int32_t in_h, in_w, in_c;        /* input dims */
    int32_t out_h, out_w, out_c;     /* output dims */
    int32_t k_h, k_w;                /* filter size */
    int32_t stride_h, stride_w;      /* >= 1 */
    int32_t dil_h, dil_w;            /* >= 1 */
    int32_t pad_top, pad_left;       /* implicit padding before the first row/column */
    int32_t input_offset;            /* -input zero point, in [-127, 128] */
    int32_t output_offset;           /* output zero point, in [-128, 127] */
    int32_t act_min, act_max;        /* fused activation clamp, within [-128, 127] */
    const int32_t *mult;             /* [out_c] Q0.31 multipliers */
    const int32_t *shift;            /* [out_c] exponents, positive = left */
} ek_conv2d_params;

/* Largest patch (k_h*k_w*in_c) ek_conv2d_s8_dsp accepts; the exporter
 * (edgekit/lower/conv.py, CONV_DSP_MAX_PATCH) uses the same value. */
#ifndef EK_CONV2D_DSP_MAX_PATCH
#define EK_CONV2D_DSP_MAX_PATCH 1024
#endif

/* The most scratch one layer may ask of the _dsp variants, in bytes: a per-layer cap, not a
 * buffer (each call's scratch is its own, in the arena).  The exporter (edgekit/lower/conv.py,
 * CONV_DSP_MAX_SCRATCH) takes the folded form only for layers whose scratch fits it (four
 * 3x3x64 patches fill it); the pair form needs at most 2 * EK_CONV2D_DSP_MAX_PATCH. */
#define EK_CONV2D_DSP_MAX_SCRATCH 4608

void ek_conv2d_s8(const ek_conv2d_params *p, const int8_t *input,
                  const int8_t *filter, const int32_t *bias, int8_t *output, int8_t *scratch);
void ek_conv2d_s8_1x1_dsp(const ek_conv2d_params *p, const int8_t *input,
                          const int8_t *filter, const int32_t *bias, int8_t *output, int8_t *scratch);
void ek_conv2d_s8_dsp(const ek_conv2d_params *p, const int8_t *input,
                      const int8_t *filter, const int32_t *bias, int8_t *output, int8_t *scratch);

/* Internal to the _dsp variants (defined in ek_conv2d_s8_1x1_dsp.c): the folded-form GEMM of
 * `count` (1..4) pixels split into x (ek_fold_split's 4-pixel layout) against every output
 * channel, writing the first pixel's outputs at out. */
void ek_conv2d_fold_gemm_dsp(const ek_conv2d_params *p, const int32_t *x, int32_t count,
                             const int8_t *filter, const int32_t *block, int8_t *out);

#endif /* EK_CONV2D_H */
