/*
 * ek_wdecode.h - decode a Huffman-coded weight array once, at boot.
 *
 * `edgekit export --huffman-decode boot`: a layer's int8 weight array (in the
 * layout its usual kernel reads, e.g. the interleaved rows of ek_fc_s8_dsp)
 * is stored in flash as ek_wcode.h's Huffman format with rows = 1 and
 * row_len = the array's length; ek_model_init() calls ek_huff_decode_s8 to
 * fill the layer's RAM copy, and the layer then runs its int8 kernel
 * unchanged.  Flash holds the code; RAM holds the decoded array.
 */
#ifndef EK_WDECODE_H
#define EK_WDECODE_H

#include "ek_wcode.h"

/* dst[0 .. rows*row_len) = the values the code holds. */
void ek_huff_decode_s8(const ek_wcode *w, int8_t *dst);

#endif /* EK_WDECODE_H */
