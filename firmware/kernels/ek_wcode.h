/*
 * ek_wcode.h - compressed int8 weights that kernels execute directly from flash.
 *
 * Every format is a LOSSLESS encoding of a layer's int8 weight matrix W
 * [rows][row_len]; a format kernel gives, byte for byte, the output of the
 * portable int8 kernel (ek_conv2d_s8, ek_fc_s8, ek_dwconv_s8) run on the
 * decoded W.  The encoder and its exact numpy inverse are edgekit/formats.py.
 *
 *   layer            rows    row_len K               W[o][k]
 *   CONV_2D          out_c   k_h * k_w * in_c        filter[o][ky][kx][i] (OHWI), k = (ky*k_w + kx)*in_c + i
 *   FULLY_CONNECTED  out_n   in_n                    weights[o][i]
 *   DEPTHWISE (w4)   1       k_h * k_w * out_c       filter[ky][kx][o],  k = (ky*k_w + kx)*out_c + o
 *
 * Kernels (naming: ek_<op>_s8_<weights>[_dsp]; same signature within an op):
 *
 *   format   conv                  fc                  depthwise
 *   w4       ek_conv2d_s8_w4       ek_fc_s8_w4         ek_dwconv_s8_w4
 *   lut4     ek_conv2d_s8_lut4     ek_fc_s8_lut4       -
 *   lut8     ek_conv2d_s8_lut8     ek_fc_s8_lut8       -
 *   sparse   ek_conv2d_s8_sparse   ek_fc_s8_sparse     -
 *   huff     ek_conv2d_s8_huff     ek_fc_s8_huff       -
 *
 * Every conv and FC kernel has a _dsp variant (ek_conv2d_s8_w4_dsp, ...) for
 * cores with the Armv7E-M DSP extension: the same results with SMLAD inner
 * loops (ek_wdot_dsp.h; through ek_dsp.h's exact C twins elsewhere, so the host
 * runs them too).  ek_fc_s8_w4_dsp and ek_fc_s8_huff_dsp read the "_dsp
 * layout" of their format (below): the same bytes (w4) or the same code (huff)
 * in another order; every other kernel reads the one (portable) layout.  The
 * _dsp convolutions work on four output pixels at a time, their patches split
 * once into a buffer in scratch: ek_conv2d_s8_sparse_dsp reads each entry's
 * delta and value once for the four (ek_conv2d_s8_sparse_dsp.c); the w4, lut4,
 * lut8 and huff ones unpack a few rows at a time (EK_WC_FOLD_ROWS = 4; huff:
 * its decoded block) into scratch and run them through the int8 kernels'
 * folded GEMM (ek_conv2d_fold_dsp.h).  edgekit.formats.encode(...,
 * layout="dsp") writes the _dsp layout; wformats.kernel_layout(op, fmt, dsp)
 * names the layout a kernel reads.
 *
 * Conv and FC kernels take the FOLDED bias (never NULL; the _dsp convolutions take each
 * channel's folded-requantization block instead, {2 * folded bias, M, k, R} from
 * edgekit.lower.packing.pack_conv_fold_blocks, as ek_conv2d_s8_dsp does), computed at export by
 * edgekit.lower.conv.fold_input_offset:
 *     bias_folded[o] = bias[o] + input_offset * sum_k W[o][k]   (int32, wrapping)
 * so their inner loops add x*w only.  A conv kernel builds each output pixel's
 * patch of K int8 values in filter order (im2col of one pixel) in `scratch`,
 * taps in the padding holding the input zero point (-input_offset), which the
 * folded bias turns into a zero contribution exactly as the reference skips
 * them; a 1x1 filter without padding (any stride) reads the input pixel itself.
 * FC kernels read the input rows directly and need weight_offset = 0; they
 * requantize with ek_requantize when fc.double_round is 1 (TFLM) and with
 * ek_requantize_1r when it is 0 (LiteRT), like ek_fc_s8.  ek_dwconv_s8_w4 has
 * ek_dwconv_s8's semantics exactly: unfolded bias (may be NULL), taps outside
 * the input skipped, input_offset added per tap (multipliers in [2^30, 2^31) or
 * 0, as the exporter writes them).  Sums wrap modulo 2^32 like
 * the reference kernels' int32 accumulators (the results are identical
 * whenever the reference does not overflow).
 *
 * Scratch (int8, any alignment unless said; live during the call only):
 *
 *   kernel                          bytes
 *   ek_conv2d_s8_{w4,lut4,lut8,sparse}   K, or 0 when k_h = k_w = 1 and
 *                                        pad_top = pad_left = 0 (then NULL is fine)
 *   ek_conv2d_s8_huff               block_rows*K + (the same K or 0): the decoded
 *                                   rows first, the patch after them
 *   ek_fc_s8_{w4,lut4,lut8,sparse}  0 (NULL is fine)
 *   ek_fc_s8_huff                   block_rows*K
 *   ek_dwconv_s8_w4                 4*out_c, 4-byte aligned (int32 accumulators;
 *                                   edgekit's planner aligns every arena buffer to 4)
 *   ek_dwconv_s8_w4_3x3_dsp         2*row_len, plus row_len/9 in the folded form
 *                                   (dw.mult NULL), 4-byte aligned: the unpacked int16
 *                                   filter, the zero-point row
 *   ek_conv2d_s8_sparse_dsp         32*ceil(K/4), plus 2*K when it builds patches (not
 *                                   k_h = k_w = 1 with pad_top = pad_left = 0); 4-byte
 *                                   aligned: the 4-pixel buffer, then two int8 patches
 *   ek_conv2d_s8_{w4,lut4,lut8}_dsp 32*ceil(K/4) + R*4*ceil(K/4), plus K when it builds
 *   ek_conv2d_s8_huff_dsp           patches, with R = 4 (EK_WC_FOLD_ROWS) or, for w4 and
 *                                   huff, block_rows (w4: as many rows of 4*ceil(K/4)
 *                                   bytes as 4096 holds, at least one, at most out_c:
 *                                   edgekit.lower.compressed.w4_conv_block_rows); 4-byte
 *                                   aligned: the 4-pixel buffer, the unpacked or decoded
 *                                   rows (zero-padded to whole words), the patch
 *   other _dsp variants             as their portable kernel
 *
 * The _dsp convolutions' per-channel requantization blocks {2*bias, M, k, R} take no
 * scratch: the exporter writes them to flash and passes them as the bias (the folded
 * form of ek_conv2d.h; conv.mult and conv.shift NULL).
 * edgekit.lower.compressed.scratch_bytes() returns the same numbers.
 *
 * In place: a conv kernel whose filter is 1x1 without padding reads only the
 * input pixel of the output pixel it computes, pixels in raster order, so with
 * out_c <= in_c its output may start out_c bytes below its input (0 for the _dsp
 * kernels, which copy four pixels' inputs into scratch before they write their
 * outputs; Huffman and the w4 _dsp kernel only when one block holds every row).
 * edgekit.lower.compressed.conv_inplace declares it, with the argument.
 *
 * ---------------------------------------------------------------------------
 * Formats.  "nibble j of a byte stream" is byte j/2, LOW nibble for even j,
 * HIGH nibble for odd j (CMSIS-NN's s4 order: [0x1, 0x2, 0x3, 0x4] packed as
 * [0x21, 0x43]).  Every array has at least one element (an unused 0 when the
 * format would leave it empty), so no C array has length 0.
 *
 * w4 (codes): W in [-8, 7], two's-complement nibbles.  Row o starts on a byte
 *   boundary: codes + o * ((K + 1) / 2); its W[o][k] is nibble k of the row;
 *   an odd K leaves the high nibble of the row's last byte 0.
 *     K = 5, row [1, -2, 3, -8, 7]: nibbles 0x1 0xE 0x3 0x8 0x7
 *       -> codes [0xE1, 0x83, 0x07]
 *   A nibble is sign-extended as (int8_t)(b << 4) >> 4 (low), (int8_t)b >> 4 (high).
 *
 *   _dsp layout (ek_fc_s8_w4_dsp): the same rows*((K + 1) / 2) bytes.  A row is q = K / 8 groups
 *   of eight weights, each group one 4-byte little-endian word whose nibble j
 *   (bits 4j..4j+3) holds the group's weight ORDER[j], ORDER = {0, 1, 4, 5, 2,
 *   3, 6, 7}, then a tail of the last K % 8 weights packed as above
 *   ((K % 8 + 1) / 2 bytes).  Rows go in pairs (2p, 2p+1): the pair's groups
 *   alternate (row 2p group 0, row 2p+1 group 0, row 2p group 1, ...), then row
 *   2p's tail, then row 2p+1's; an odd last row: its groups, then its tail.
 *   So (word << 12), (word << 8), (word << 4) and word, each ANDed with
 *   0xF000F000, are the halfword pairs 4096 * {w0, w2}, {w1, w3}, {w4, w6},
 *   {w5, w7} that SMLAD takes with the inputs split by SXTB16 (ek_wdot_dsp.h).
 *     rows [-8 -7 ... -1] and [0 1 ... 7] (K = 8): codes [0x98, 0xDC, 0xBA,
 *       0xFE, 0x10, 0x54, 0x32, 0x76]
 *
 * lut4 (codes, values, levels, per_channel): a codebook values[groups][levels]
 *   int8, groups = rows when per_channel = 1 (row o looks up values + o*levels),
 *   else 1 (every row uses values[0..levels)); levels <= 16.  W[o][k] =
 *   codebook[index], index = nibble k of row o, rows packed exactly as w4
 *   (row stride (K + 1) / 2 bytes, pad nibble 0).  The encoder sorts each
 *   codebook ascending; unused entries of a per-channel codebook are 0.
 *     codebook [-40, 0, 25, 90], row [90, 0, 0, -40, 25]: indices 3 1 1 0 2
 *       -> codes [0x13, 0x01, 0x02]
 *
 * lut8 (codes, values, levels, per_channel): as lut4 with levels <= 256 and one
 *   index byte per weight: W[o][k] = codebook[codes[o*K + k]] (row stride K).
 *
 * sparse (codes = deltas, values, index, delta_bits): the entries of row o are
 *   e = index[o] .. index[o+1]-1 (global numbering; index has rows+1 entries,
 *   index[0] = 0, index[rows] = total entries E).  Entry e has a delta d[e] and
 *   a value values[e] (int8).  Positions within the row:
 *       pos = d[index[o]]                 (the row's first entry: from 0)
 *       pos = previous pos + d[e]         (every later entry)
 *   and W[o][pos] = values[e]; every other weight of the row is 0.  Real
 *   entries are the non-zero weights in increasing position (deltas >= 1 after
 *   the first); a gap wider than the delta range (15 for delta_bits = 4, 255 for
 *   8) is bridged by filler entries of the maximum delta and value 0, so every
 *   pos is < K.  Zeros after a row's last non-zero weight take no entries; an
 *   all-zero row has none.  delta_bits = 4: d[e] is nibble e of `codes` (global
 *   e: a row may start in a high nibble); delta_bits = 8: d[e] = codes[e].
 *   Cost is proportional to E, not to rows * K.
 *     K = 40, one row, non-zeros W[2] = 5, W[3] = -1, W[30] = 7:
 *       delta_bits 4: d = [2, 1, 15, 12], values [5, -1, 0, 7]
 *                     (the filler lands on pos 18), codes [0x12, 0xCF]
 *       delta_bits 8: codes [2, 1, 27], values [5, -1, 7]
 *       index [0, 4] or [0, 3]
 *
 * huff (codes = bitstream, values, counts, table, table_bits, block_rows; book
 *   and levels when the symbols are codebook indices): a canonical Huffman code
 *   over the layer's int8 values (or codebook indices, below), lengths 1..
 *   EK_HUFF_MAX_BITS (length-limited).  counts[len] = number of codes of length
 *   len for len = 0 .. EK_HUFF_MAX_BITS (counts[0] = 0); values[] = the symbols
 *   in canonical order (by code length, then by value ascending).  Codes are assigned in that
 *   order: the first code of length len is (first(len-1) + counts[len-1]) << 1,
 *   first(0) = 0, and each next symbol of the same length takes the next
 *   integer.  The bitstream holds the codes of all of W in row-major order
 *   (rows are not byte-aligned), MSB-first within each byte, the last byte
 *   padded with 0 bits, then 3 zero bytes (the decoder refills its bit buffer
 *   two bytes at a time and may read that far ahead).  A layer whose weights
 *   are all one value has one symbol with the 1-bit code 0 (counts[1] = 1),
 *   i.e. K*rows zero bits.
 *   table[1 << table_bits] (uint16) decodes every code of at most table_bits
 *   bits in one look-up of the next table_bits bits i: table[i] = (len << 8) |
 *   (uint8_t)symbol when the code of length len <= table_bits starts i, else 0
 *   (a longer code: the kernel extends it bit by bit from length table_bits+1
 *   with counts and values, as zlib's puff).  table_bits = min(the longest
 *   code, about log2 of the stream's bytes / 16 within 6..EK_HUFF_TABLE_MAX_BITS):
 *   a table of at most an eighth of the stream (edgekit.formats.huff_table_bits).
 *   Symbols are either the int8 weights themselves (book NULL) or codebook
 *   indices (book != NULL): then values[] holds indices 0..levels-1 (as the
 *   bytes' uint8_t value), book[o*levels + i] is weight i of row o's codebook,
 *   and a decoded index i of row o stands for book[o*levels + i] (entries of a
 *   row's codebook past its distinct values are 0 and never indexed; the
 *   encoder orders each codebook by value or by frequency in the row, whichever
 *   codes shorter, and keeps whichever of weights or indices is smaller).  A layer
 *   clustered to 16 values and quantized per channel holds 30-40 int8 values
 *   but at most 16 per row: its indices code shorter (ek_huff_books maps a
 *   decoded block back to weights in place, about 2.5 instructions a weight).
 *     W = [[1, 1, 1, 4], [2, 2, 2, 8]]: levels 2, book [1, 4, 2, 8], indices
 *       [0, 0, 0, 1, 0, 0, 0, 1] -> codes 0 = 0, 1 = 1; values [0, 1], counts
 *       [0, 2, 0, ...], codes [0x11, 0, 0, 0], table_bits 1, table [0x100, 0x101]
 *       (46 bytes; coding the four values 1, 2, 4, 8 instead takes 50).
 *   The kernel decodes block_rows rows at a time into scratch, sequentially
 *   through the whole layer on every call, and computes those output channels
 *   for every pixel (conv) or batch row (FC) before the next block.
 *     W = [0, 0, 0, 5, 0, -3, 0, 0]: lengths 0:1, -3:2, 5:2 -> codes
 *       0 = 0, -3 = 10, 5 = 11; counts [0, 1, 2, 0, ...], values [0, -3, 5];
 *       bits 0 0 0 11 0 10 0 0 -> codes [0x1A, 0x00, 0, 0, 0];
 *       table_bits 2, table [0x100, 0x100, 0x2FD, 0x205]
 *
 *   _dsp layout (ek_fc_s8_huff_dsp): the rows of each block are coded in the order of
 *   ek_dot_s8_dsp.h's pairs (rows 2p and 2p+1 of the block interleaved by four
 *   weights, then both rows' K % 4 last weights; an odd last row as it is), so
 *   the decoded block is the _dsp GEMM's filter; block_rows is even unless one
 *   block holds every row.
 */
#ifndef EK_WCODE_H
#define EK_WCODE_H

#include "ek_common.h"
#include "ek_conv2d.h"
#include "ek_dwconv.h"
#include "ek_fc.h"

#define EK_HUFF_MAX_BITS 15
#define EK_HUFF_TABLE_MAX_BITS 10
#define EK_HUFF_STREAM_PAD 3       /* zero bytes after a Huffman bitstream (the decoder reads ahead) */

typedef struct {
    int32_t rows;              /* weight rows: out_c (conv, FC), 1 (depthwise) */
    int32_t row_len;           /* K */
    const uint8_t *codes;      /* w4: nibbles; lut4/lut8: indices; sparse: deltas; huff: bitstream */
    const int8_t *values;      /* lut: codebook(s); sparse: the non-zero values (and 0 fillers);
                                  huff: canonical symbols; w4: unused (NULL) */
    const uint32_t *index;     /* sparse: first entry of each row [rows+1]; NULL otherwise */
    const uint16_t *counts;    /* huff: number of codes of each length 0..EK_HUFF_MAX_BITS; NULL otherwise */
    const uint16_t *table;     /* huff: first-level decoding table [1 << table_bits]; NULL otherwise */
    const int8_t *book;        /* huff over codebook indices: the codebooks [rows][levels]; NULL otherwise */
    int32_t levels;            /* lut: entries per codebook; huff with `book`: entries per row's codebook */
    int32_t per_channel;       /* lut: 1 = one codebook per row, 0 = one for the layer */
    int32_t delta_bits;        /* sparse: 4 or 8 */
    int32_t block_rows;        /* huff: rows decoded into scratch per block, 1..rows;
                                  ek_conv2d_s8_w4_dsp: rows unpacked per block, 1..rows */
    int32_t table_bits;        /* huff: bits indexing `table`, 1..EK_HUFF_TABLE_MAX_BITS */
} ek_wcode;

typedef struct {
    ek_conv2d_params conv;
    ek_wcode w;                /* rows = conv.out_c, row_len = k_h*k_w*in_c */
} ek_conv2d_wc_params;

typedef struct {
    ek_fc_params fc;           /* weight_offset must be 0 */
    ek_wcode w;                /* rows = fc.out_n, row_len = fc.in_n */
} ek_fc_wc_params;

typedef struct {
    ek_dwconv_params dw;
    ek_wcode w;                /* rows = 1, row_len = k_h*k_w*out_c, w4 only */
} ek_dwconv_wc_params;

void ek_conv2d_s8_w4(const ek_conv2d_wc_params *p, const int8_t *input, const int32_t *bias,
                     int8_t *output, int8_t *scratch);
void ek_conv2d_s8_lut4(const ek_conv2d_wc_params *p, const int8_t *input, const int32_t *bias,
                       int8_t *output, int8_t *scratch);
void ek_conv2d_s8_lut8(const ek_conv2d_wc_params *p, const int8_t *input, const int32_t *bias,
                       int8_t *output, int8_t *scratch);
void ek_conv2d_s8_sparse(const ek_conv2d_wc_params *p, const int8_t *input, const int32_t *bias,
                         int8_t *output, int8_t *scratch);
void ek_conv2d_s8_huff(const ek_conv2d_wc_params *p, const int8_t *input, const int32_t *bias,
                       int8_t *output, int8_t *scratch);

void ek_fc_s8_w4(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                 int8_t *output, int8_t *scratch);
void ek_fc_s8_lut4(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                   int8_t *output, int8_t *scratch);
void ek_fc_s8_lut8(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                   int8_t *output, int8_t *scratch);
void ek_fc_s8_sparse(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                     int8_t *output, int8_t *scratch);
void ek_fc_s8_huff(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                   int8_t *output, int8_t *scratch);

void ek_dwconv_s8_w4(const ek_dwconv_wc_params *p, const int8_t *input, const int32_t *bias,
                     int8_t *output, int8_t *scratch);
/* The 3x3 layers of ek_dwconv_s8_3x3_dsp / ek_dwconv_s8_3x3_fold_dsp with int4 weights: the
 * nibbles in those kernels' filter order, unpacked into scratch at every call
 * (ek_dwconv_s8_w4_3x3_dsp.c). */
void ek_dwconv_s8_w4_3x3_dsp(const ek_dwconv_wc_params *p, const int8_t *input, const int32_t *bias,
                             int8_t *output, int8_t *scratch);

/* _dsp variants (Armv7E-M SIMD through ek_dsp.h; exact C twins elsewhere): the same signature
 * and results; ek_fc_s8_w4_dsp and ek_fc_s8_huff_dsp read the _dsp layout (see above). */
void ek_conv2d_s8_w4_dsp(const ek_conv2d_wc_params *p, const int8_t *input, const int32_t *bias,
                         int8_t *output, int8_t *scratch);
void ek_conv2d_s8_lut4_dsp(const ek_conv2d_wc_params *p, const int8_t *input, const int32_t *bias,
                           int8_t *output, int8_t *scratch);
void ek_conv2d_s8_lut8_dsp(const ek_conv2d_wc_params *p, const int8_t *input, const int32_t *bias,
                           int8_t *output, int8_t *scratch);
void ek_conv2d_s8_sparse_dsp(const ek_conv2d_wc_params *p, const int8_t *input, const int32_t *bias,
                             int8_t *output, int8_t *scratch);
void ek_conv2d_s8_huff_dsp(const ek_conv2d_wc_params *p, const int8_t *input, const int32_t *bias,
                           int8_t *output, int8_t *scratch);

void ek_fc_s8_w4_dsp(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                     int8_t *output, int8_t *scratch);
void ek_fc_s8_lut4_dsp(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                       int8_t *output, int8_t *scratch);
void ek_fc_s8_lut8_dsp(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                       int8_t *output, int8_t *scratch);
void ek_fc_s8_sparse_dsp(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                         int8_t *output, int8_t *scratch);
void ek_fc_s8_huff_dsp(const ek_fc_wc_params *p, const int8_t *input, const int32_t *bias,
                       int8_t *output, int8_t *scratch);

#endif /* EK_WCODE_H */
