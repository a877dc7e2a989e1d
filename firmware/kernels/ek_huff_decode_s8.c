/* ek_huff_decode_s8.c - a whole Huffman-coded array, decoded once (see ek_wdecode.h). */
#include "ek_wdecode.h"
#include "ek_wdot.h"

void ek_huff_decode_s8(const ek_wcode *w, int8_t *dst)
{
    ek_huff_state bits;
    ek_huff_init(w, &bits);
    ek_huff_decode(w, &bits, dst, w->rows * w->row_len);
}
