"""Compressed weight formats: lossless encodings of a layer's int8 weight matrix that the
ek_*_s8_<weights> kernels execute directly from flash (firmware/kernels/ek_wcode.h documents
every byte; this module is its Python twin).

This module encodes and decodes only: which kernel reads an encoding, its scratch and its
in-place rules are the lowering's (edgekit.lower.kernels, edgekit.lower.compressed). It imports
nothing of edgekit but the IR's array types and the kernel headers' constants (edgekit.cdefs).

A layer's weights are a matrix `rows` [rows][row_len] int8: a CONV_2D filter as out_c rows of
k_h*k_w*in_c (OHWI), a FULLY_CONNECTED matrix as out_n rows of in_n, a depthwise filter
[k_h][k_w][out_c] flattened into one row (int4 only). `encode(fmt, rows)` returns an Encoded
(its arrays, the ek_wcode fields, its flash size and `decode()`, the exact numpy inverse) or, when
the layer cannot take the format losslessly, one sentence saying why.

    format   kernel suffix  holds                                   refuses
    int4     _w4            two 4-bit weights per byte              a weight outside [-8, 7]
    lut4     _lut4          4-bit indices into int8 codebook(s)     > 16 distinct values per row
    lut8     _lut8          byte indices into int8 codebook(s)      never
    sparse   _sparse        delta-coded positions of non-zeros      never
    huffman  _huff          length-limited canonical Huffman code   never
                            of the values or of codebook indices

lut4 / lut8 codebooks: one for the layer (levels = its distinct values) when the layer has few
enough distinct values, else one per row (levels = the most distinct values of a row), whichever
codebook is smaller in bytes (the indices cost the same); a tie takes the layer's. sparse takes
4-bit or 8-bit deltas, whichever encoding is smaller in bytes (a tie takes 8-bit: fewer entries).
huffman decodes block_rows = max(1, huff_scratch_budget // row_len) rows (at most `rows`) per
block into the kernel's scratch; its first-level decoding table takes table_bits =
huff_table_bits(...) bits (at most HUFF_TABLE_MAX_BITS, at most the longest code). It codes the
int8 values, or indices into per-row codebooks (`wbook`, ordered by value or by frequency in the
row: huff_books), whichever of the three encodings is smallest: a layer clustered to 16 values
and quantized per channel holds 30-40 values but at most 16 per row, so its indices code shorter.

Layouts: `encode(..., layout="dsp")` writes the arrays that some _dsp kernel variants read
(edgekit.lower.kernels: each kernel's `layout` says which it reads; ek_wcode.h documents both), of the same size: int4 permutes the nibbles within groups of eight
weights and interleaves pairs of rows, huffman codes the rows of each block in interleaved pairs
(block_rows then even); only the _dsp FC kernels read it. lut4, lut8 and sparse have one
layout for both kernels, and the _dsp convolutions read the portable one.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from edgekit.cdefs import define
from edgekit.ir import ArrayRef, ConstArray

FORMATS = ("int4", "lut4", "lut8", "sparse", "huffman")   # int8 = no encoding
LAYOUTS = ("portable", "dsp")

HUFF_MAX_BITS = define("EK_HUFF_MAX_BITS")                # ek_wcode.h
HUFF_TABLE_MAX_BITS = define("EK_HUFF_TABLE_MAX_BITS")
HUFF_STREAM_PAD = define("EK_HUFF_STREAM_PAD")            # zero bytes after the bitstream (read ahead)


def interleave_pairs(rows: np.ndarray) -> np.ndarray:
    """Weight rows [out][n] in the layout of ek_dot_s8_dsp.h: rows 2j and 2j+1 interleaved by
    blocks of four values (b0[0..3] b1[0..3] b0[4..7] b1[4..7] ...), then both rows' n % 4
    leftovers (b0's, then b1's); an odd last row stays as it is. Same size, flattened."""
    out, n = rows.shape
    q = n - n % 4
    parts = []
    for j in range(0, out - out % 2, 2):
        b0, b1 = rows[j], rows[j + 1]
        blocks = np.stack([b0[:q].reshape(-1, 4), b1[:q].reshape(-1, 4)], axis=1).reshape(-1)
        parts += [blocks, b0[q:], b1[q:]]
    if out % 2:
        parts.append(rows[-1])
    return np.concatenate(parts).astype(rows.dtype)


@dataclass(frozen=True)
class Encoded:
    format: str
    rows: int
    row_len: int
    arrays: tuple[ConstArray, ...]     # 'wcodes' uint8_t, 'wvalues' int8_t, 'windex' uint32_t, 'wcounts'
                                       # uint16_t, 'wtable' uint16_t, 'wbook' int8_t
    fields: dict                       # ek_wcode fields: ints and ArrayRef; unused pointers are omitted (NULL)
    nbytes: int                        # flash bytes of all arrays
    layout: str = "portable"           # "portable" or "dsp" (the _dsp kernels' order)

    def array(self, name: str) -> np.ndarray:
        for a in self.arrays:
            if a.name == name:
                return a.values
        raise KeyError(name)

    def decode(self) -> np.ndarray:
        """The [rows][row_len] int8 matrix this encoding holds (exact inverse of encode)."""
        return _DECODERS[self.format](self)


def _encoded(fmt: str, rows: np.ndarray, arrays: list[ConstArray], layout: str = "portable", **ints) -> Encoded:
    n, k = rows.shape
    fields: dict = dict(rows=n, row_len=k)
    for a in arrays:
        fields[_POINTER_FIELD[a.name]] = ArrayRef(a.name)
    fields.update(ints)
    return Encoded(format=fmt, rows=n, row_len=k, arrays=tuple(arrays), fields=fields,
                   nbytes=sum(a.nbytes for a in arrays), layout=layout)


_POINTER_FIELD = {"wcodes": "codes", "wvalues": "values", "windex": "index", "wcounts": "counts",
                  "wtable": "table", "wbook": "book"}


def _array(name: str, ctype: str, values) -> ConstArray:
    """A ConstArray of at least one element (C has no zero-length arrays; a pad 0 is never read)."""
    v = np.asarray(values, dtype=ctype.replace("_t", "")).reshape(-1)
    if v.size == 0:
        v = np.zeros(1, v.dtype)
    return ConstArray(name, ctype, v)


def _where(rows: np.ndarray, o: int) -> str:
    return f" in output channel {o}" if rows.shape[0] > 1 else ""


# ---- nibbles -------------------------------------------------------------------------------

def pack_nibbles(rows: np.ndarray) -> np.ndarray:
    """Values 0..15 [rows][K] -> bytes [rows][(K+1)//2]: element 2j in the low nibble, 2j+1 in
    the high nibble, each row on a byte boundary, a pad nibble 0."""
    n, k = rows.shape
    v = np.zeros((n, k + k % 2), np.uint8)
    v[:, :k] = rows.astype(np.uint8) & 15
    return (v[:, 0::2] | (v[:, 1::2] << 4)).astype(np.uint8)


def unpack_nibbles(codes: np.ndarray, n: int, k: int) -> np.ndarray:
    """Inverse of pack_nibbles: [n][k] values 0..15."""
    b = codes[: n * ((k + 1) // 2)].reshape(n, (k + 1) // 2)
    out = np.empty((n, 2 * b.shape[1]), np.uint8)
    out[:, 0::2], out[:, 1::2] = b & 15, b >> 4
    return out[:, :k]


# ---- int4 ----------------------------------------------------------------------------------

# The _dsp layout (ek_wcode.h): nibble j of a group's little-endian word holds weight
# W4_DSP_ORDER[j] of the group's eight, so that (word << 12), (word << 8), (word << 4) and word,
# each masked with 0xF000F000, are the weight pairs {0, 2}, {1, 3}, {4, 6}, {5, 7} that SMLAD
# multiplies with SXTB16's halves of the eight inputs.
W4_DSP_ORDER = (0, 1, 4, 5, 2, 3, 6, 7)


def _w4_dsp_slots(n: int, k: int) -> np.ndarray:
    """Where each nibble of the _dsp layout comes from: slot s of the stream (nibble s: byte s//2,
    low nibble for even s) holds the nibble at flat index result[s] of the rows padded to an even
    length ([n][k + k % 2], the pad nibble 0). Pairs of rows alternate group by group, then
    the pair's two tails (the last k % 8 weights, portable nibble order); an odd last row alone."""
    k2 = k + k % 2
    q = k // 8
    group_cols = (np.arange(q)[:, None] * 8 + np.array(W4_DSP_ORDER)[None, :]).reshape(-1)
    tail_cols = np.arange(8 * q, k2)
    pieces = []
    for j in range(0, n - n % 2, 2):
        g0, g1 = (j * k2 + group_cols).reshape(q, 8), ((j + 1) * k2 + group_cols).reshape(q, 8)
        pieces += [np.stack([g0, g1], axis=1).reshape(-1), j * k2 + tail_cols, (j + 1) * k2 + tail_cols]
    if n % 2:
        pieces += [(n - 1) * k2 + group_cols, (n - 1) * k2 + tail_cols]
    return np.concatenate(pieces).astype(np.int64)


def _encode_int4(rows: np.ndarray, layout: str = "portable", **_):
    bad = (rows < -8) | (rows > 7)
    if bad.any():
        o = int(np.flatnonzero(bad.any(axis=1))[0])
        worst = int(rows[o][np.argmax(np.abs(rows[o].astype(np.int32)))])
        return f"its weights reach {worst}{_where(rows, o)}; int4 holds -8..7"
    codes = pack_nibbles(rows.astype(np.uint8))
    if layout == "dsp":
        n, k = rows.shape
        nib = unpack_nibbles(codes.reshape(-1), n, k + k % 2).reshape(-1)[_w4_dsp_slots(n, k)]
        codes = nib[0::2] | (nib[1::2] << 4)
    return _encoded("int4", rows, [_array("wcodes", "uint8_t", codes)], layout=layout)


def _decode_int4(e: Encoded) -> np.ndarray:
    n, k = e.rows, e.row_len
    codes = e.array("wcodes")
    if e.layout == "dsp":
        stream = unpack_nibbles(codes[: n * ((k + 1) // 2)], 1, n * (k + k % 2)).reshape(-1)
        padded = np.empty(n * (k + k % 2), np.uint8)
        padded[_w4_dsp_slots(n, k)] = stream
        codes = pack_nibbles(padded.reshape(n, -1)).reshape(-1)
    nib = unpack_nibbles(codes, n, k).astype(np.int16)
    return ((nib ^ 8) - 8).astype(np.int8)


# ---- lut4 / lut8 ---------------------------------------------------------------------------

def _encode_lut(rows: np.ndarray, bits: int, fmt: str):
    cap = 1 << bits
    n, k = rows.shape
    layer = np.unique(rows)
    per_row = [np.unique(r) for r in rows]
    widest = max(range(n), key=lambda o: (per_row[o].size, -o))
    levels_c = per_row[widest].size
    if layer.size <= cap and layer.size <= n * levels_c:
        per_channel, levels = 0, int(layer.size)
        table = layer
        idx = np.searchsorted(layer, rows)
    elif levels_c <= cap:
        per_channel, levels = 1, int(levels_c)
        table = np.zeros((n, levels), np.int8)
        idx = np.empty((n, k), np.int64)
        for o, u in enumerate(per_row):
            table[o, : u.size] = u
            idx[o] = np.searchsorted(u, rows[o])
    else:
        return (f"its weights take {levels_c} distinct values{_where(rows, widest)}; "
                f"{fmt} holds {cap}")
    codes = pack_nibbles(idx.astype(np.uint8)) if bits == 4 else idx.astype(np.uint8)
    return _encoded(fmt, rows, [_array("wcodes", "uint8_t", codes), _array("wvalues", "int8_t", table)],
                    levels=levels, per_channel=per_channel)


def _decode_lut(e: Encoded) -> np.ndarray:
    levels, n, k = e.fields["levels"], e.rows, e.row_len
    if e.format == "lut4":
        idx = unpack_nibbles(e.array("wcodes"), n, k).astype(np.int64)
    else:
        idx = e.array("wcodes")[: n * k].reshape(n, k).astype(np.int64)
    table = e.array("wvalues")
    if e.fields["per_channel"]:
        idx = idx + (np.arange(n) * levels)[:, None]
    return table[idx].astype(np.int8)


# ---- sparse --------------------------------------------------------------------------------

def _sparse_entries(rows: np.ndarray, dmax: int):
    """(deltas, values, index) of the non-zero weights, row by row in increasing position; a gap
    wider than dmax is bridged by (dmax, 0) fillers placed before the entry."""
    n = rows.shape[0]
    r, pos = np.nonzero(rows)                                   # row-major order
    first = np.ones(r.size, bool)
    first[1:] = r[1:] != r[:-1]
    prev = np.where(first, 0, np.concatenate([[0], pos[:-1]]))
    gap = pos - prev
    fill = np.maximum(0, (gap - 1) // dmax)                     # fillers before each entry
    each = fill + 1
    owner = np.repeat(np.arange(r.size), each)
    j = np.arange(owner.size) - np.repeat(np.cumsum(each) - each, each)
    is_fill = j < fill[owner]
    deltas = np.where(is_fill, dmax, gap[owner] - fill[owner] * dmax)
    values = np.where(is_fill, 0, rows[r, pos][owner]).astype(np.int8)
    per_row = np.bincount(r, weights=each, minlength=n).astype(np.int64)
    index = np.concatenate([[0], np.cumsum(per_row)]).astype(np.uint32)
    return deltas.astype(np.int64), values, index


def _encode_sparse(rows: np.ndarray, **_):
    best = None
    for bits in (8, 4):
        d, v, index = _sparse_entries(rows, (1 << bits) - 1)
        codes = pack_nibbles(d.reshape(1, -1)).reshape(-1) if bits == 4 else d.astype(np.uint8)
        enc = _encoded("sparse", rows, [_array("wcodes", "uint8_t", codes), _array("wvalues", "int8_t", v),
                                        _array("windex", "uint32_t", index)], delta_bits=bits)
        if best is None or enc.nbytes < best.nbytes:
            best = enc
    return best


def _decode_sparse(e: Encoded) -> np.ndarray:
    index = e.array("windex").astype(np.int64)
    total = int(index[-1])
    codes = e.array("wcodes")
    if e.fields["delta_bits"] == 4:
        d = unpack_nibbles(codes, 1, total)[0].astype(np.int64) if total else np.zeros(0, np.int64)
    else:
        d = codes[:total].astype(np.int64)
    row = np.repeat(np.arange(e.rows), np.diff(index))
    csum = np.cumsum(d)
    start = np.concatenate([[0], csum])[index[:-1]]         # sum of deltas before each row
    pos = csum - start[row]
    out = np.zeros((e.rows, e.row_len), np.int32)
    np.add.at(out, (row, pos), e.array("wvalues")[:total].astype(np.int32))
    return out.astype(np.int8)


# ---- huffman -------------------------------------------------------------------------------

def limited_code_lengths(freqs: list[int], limit: int = HUFF_MAX_BITS) -> list[int]:
    """Optimal code lengths of at most `limit` bits for positive frequencies (package-merge,
    Larmore & Hirschberg): the cheapest 2n-2 items of `limit` merged levels of packages; a
    symbol's length is the number of chosen items it is part of. One symbol gets length 1."""
    n = len(freqs)
    if n == 1:
        return [1]
    if n > 1 << limit:
        raise ValueError(f"{n} symbols do not fit codes of {limit} bits")
    leaves = sorted(((f, np.eye(1, n, s, dtype=np.int64)[0]) for s, f in enumerate(freqs)),
                    key=lambda item: item[0])
    items = leaves
    for _ in range(limit - 1):
        packages = [(items[i][0] + items[i + 1][0], items[i][1] + items[i + 1][1])
                    for i in range(0, len(items) - 1, 2)]
        items = sorted(leaves + packages, key=lambda item: item[0])   # stable: leaves first on ties
    lengths = sum(item[1] for item in items[: 2 * n - 2])
    return [int(v) for v in lengths]


def canonical_codes(symbols: list[int], lengths: list[int]):
    """(symbols, lengths, codes, counts): the symbols in canonical order (length, then value),
    their lengths and codes in that order, and counts[len] for len 0..HUFF_MAX_BITS."""
    order = sorted(range(len(symbols)), key=lambda i: (lengths[i], symbols[i]))
    counts = [0] * (HUFF_MAX_BITS + 1)
    for i in order:
        counts[lengths[i]] += 1
    codes, code, prev = [], 0, lengths[order[0]]
    for i in order:
        code <<= lengths[i] - prev
        prev = lengths[i]
        codes.append(code)
        code += 1
    return [symbols[i] for i in order], [lengths[i] for i in order], codes, counts


def huff_table_bits(max_len: int, stream_bytes: int) -> int:
    """Bits of the first-level decoding table: no more than the longest code needs, and a table
    (2**bits uint16 entries) of at most an eighth of the bitstream, within 6..HUFF_TABLE_MAX_BITS.
    Codes longer than the table take the decoder's slow path."""
    cap = int(np.clip(np.floor(np.log2(max(stream_bytes, 1) / 16)), 6, HUFF_TABLE_MAX_BITS))
    return min(max_len, cap)


def huff_table(symbols: list[int], lengths: list[int], codes: list[int], bits: int) -> np.ndarray:
    """The first-level table of ek_wcode.h: entry i (the next `bits` bits of the stream) is
    (len << 8) | (uint8)symbol for the code of length len <= bits that starts i, else 0."""
    table = np.zeros(1 << bits, np.uint16)
    for s, ln, c in zip(symbols, lengths, codes):
        if ln <= bits:
            lo = c << (bits - ln)
            table[lo: lo + (1 << (bits - ln))] = (ln << 8) | (s & 0xFF)
    return table


def _block_rows(n: int, k: int, budget: int, layout: str) -> int:
    """Rows per decoded block: budget // k (at least 1, at most n); even for the _dsp layout
    (whose blocks hold interleaved pairs) unless one block holds every row."""
    rows = min(n, max(1, budget // k))
    if layout == "dsp" and rows < n:
        rows = max(2, rows - rows % 2)
    return min(n, rows)


def _huff_order(n: int, k: int, block_rows: int, layout: str) -> np.ndarray:
    """Flat weight indices in stream order: row-major, or for the _dsp layout each block's rows
    interleaved by pairs as ek_dot_s8_dsp.h reads them (interleave_pairs)."""
    order = np.arange(n * k, dtype=np.int64)
    if layout != "dsp":
        return order
    blocks = [interleave_pairs(order[r * k: min(n, r + block_rows) * k].reshape(-1, k))
              for r in range(0, n, block_rows)]
    return np.concatenate(blocks)


def _huffman_stream(flat: np.ndarray):
    """The canonical length-limited Huffman code of a stream of symbols: int8 weights, or codebook
    indices 0..255 (uint8). Its arrays (bitstream with HUFF_STREAM_PAD zero bytes, the canonical
    symbols as bytes, counts, first-level table) and table_bits."""
    flat = flat.astype(np.int64)
    syms, freqs = np.unique(flat, return_counts=True)
    lengths = limited_code_lengths([int(f) for f in freqs])
    symbols, lens, codes, counts = canonical_codes([int(s) for s in syms], lengths)
    code_of = np.zeros(384, np.int64)            # indexed by symbol + 128
    len_of = np.zeros(384, np.int64)
    for s, ln, c in zip(symbols, lens, codes):
        code_of[s + 128], len_of[s + 128] = c, ln
    c = code_of[flat + 128]
    ln = len_of[flat + 128]
    starts = np.concatenate([[0], np.cumsum(ln)[:-1]])
    bits = np.zeros(int(ln.sum()), np.uint8)
    for j in range(HUFF_MAX_BITS):
        m = ln > j
        bits[starts[m] + j] = (c[m] >> (ln[m] - 1 - j)) & 1
    stream = np.concatenate([np.packbits(bits, bitorder="big"), np.zeros(HUFF_STREAM_PAD, np.uint8)])
    table_bits = huff_table_bits(max(lens), stream.size - HUFF_STREAM_PAD)
    canonical = (np.array(symbols, np.int64) & 0xFF).astype(np.uint8).view(np.int8)
    return ([_array("wcodes", "uint8_t", stream), _array("wvalues", "int8_t", canonical),
             _array("wcounts", "uint16_t", counts),
             _array("wtable", "uint16_t", huff_table(symbols, lens, codes, table_bits))], table_bits)


def huff_books(rows: np.ndarray):
    """The candidate per-row codebooks of Huffman over codebook indices: for each ordering of a
    row's distinct values (ascending, which lines up the clusters of a clustered layer whose
    channels differ only by scale; and most frequent first), (book [rows][levels] int8, indices
    [rows][row_len] uint8). Rows with fewer values pad their book with 0 (never indexed)."""
    n, k = rows.shape
    per_row = [np.unique(r, return_counts=True) for r in rows]
    levels = max(u.size for u, _ in per_row)
    if levels > 256:
        return []
    out = []
    for order in ("value", "frequency"):
        book = np.zeros((n, levels), np.int8)
        idx = np.empty((n, k), np.uint8)
        for o, (u, cnt) in enumerate(per_row):
            if order == "frequency":
                u = u[np.lexsort((u, -cnt))]          # most frequent first, ties by value
            book[o, : u.size] = u
            slot = np.empty(256, np.uint8)
            slot[u.astype(np.int64) + 128] = np.arange(u.size, dtype=np.uint8)
            idx[o] = slot[rows[o].astype(np.int64) + 128]
        out.append((book, idx))
    return out


def _encode_huffman(rows: np.ndarray, huff_scratch_budget: int = 4096, layout: str = "portable", **_):
    """The smallest of: Huffman over the int8 values (`book` NULL), or over per-row codebook
    indices (`book` = the codebooks [rows][levels]; a clustered layer after per-channel
    quantization holds 30-40 values but at most 16 per row, so its indices code shorter)."""
    n, k = rows.shape
    block_rows = _block_rows(n, k, huff_scratch_budget, layout)
    order = _huff_order(n, k, block_rows, layout)
    arrays, table_bits = _huffman_stream(rows.reshape(-1)[order])
    best = _encoded("huffman", rows, arrays, layout=layout, block_rows=block_rows, table_bits=table_bits)
    if n > 1:
        for book, idx in huff_books(rows):
            arrays, table_bits = _huffman_stream(idx.reshape(-1)[order])
            cand = _encoded("huffman", rows, arrays + [_array("wbook", "int8_t", book)], layout=layout,
                            block_rows=block_rows, table_bits=table_bits, levels=int(book.shape[1]))
            if cand.nbytes < best.nbytes:
                best = cand
    return best


def _decode_huffman(e: Encoded) -> np.ndarray:
    counts = e.array("wcounts").astype(np.int64)
    symbols = e.array("wvalues").view(np.uint8).astype(np.int64)
    # Every (code, length) as a range of the 15-bit look-up table.
    sym_at = np.zeros(1 << HUFF_MAX_BITS, np.int64)
    len_at = np.zeros(1 << HUFF_MAX_BITS, np.int64)
    code, index = 0, 0
    for ln in range(1, HUFF_MAX_BITS + 1):
        for _ in range(int(counts[ln])):
            lo = code << (HUFF_MAX_BITS - ln)
            hi = (code + 1) << (HUFF_MAX_BITS - ln)
            sym_at[lo:hi], len_at[lo:hi] = index, ln
            code += 1
            index += 1
        code <<= 1
    total = e.rows * e.row_len
    bits = np.unpackbits(e.array("wcodes"), bitorder="big").astype(np.int64)
    bits = np.concatenate([bits, np.zeros(HUFF_MAX_BITS, np.int64)])
    nbits = bits.size - HUFF_MAX_BITS
    window = np.zeros(nbits, np.int64)
    for j in range(HUFF_MAX_BITS):
        window = (window << 1) | bits[j: j + nbits]
    step, sym = len_at[window].tolist(), sym_at[window].tolist()
    out, pos = [], 0
    for _ in range(total):
        if pos >= nbits or step[pos] == 0:
            raise ValueError(f"huffman bitstream is invalid at bit {pos}")
        out.append(sym[pos])
        pos += step[pos]
    decoded = np.empty(total, np.int64)
    order = _huff_order(e.rows, e.row_len, int(e.fields["block_rows"]), e.layout)
    decoded[order] = symbols[np.array(out, np.int64)]
    decoded = decoded.reshape(e.rows, e.row_len)
    if "book" not in e.fields:
        return decoded.astype(np.uint8).view(np.int8)
    levels = int(e.fields["levels"])
    if decoded.max() >= levels:
        raise ValueError(f"huffman codebook index {int(decoded.max())} is outside the {levels}-entry codebooks")
    book = e.array("wbook").reshape(e.rows, levels)
    return np.take_along_axis(book, decoded, axis=1).astype(np.int8)


# ---- the table -----------------------------------------------------------------------------

_ENCODERS = {
    "int4": _encode_int4,
    "lut4": lambda rows, **_: _encode_lut(rows, 4, "lut4"),
    "lut8": lambda rows, **_: _encode_lut(rows, 8, "lut8"),
    "sparse": _encode_sparse,
    "huffman": _encode_huffman,
}
_DECODERS = {"int4": _decode_int4, "lut4": _decode_lut, "lut8": _decode_lut, "sparse": _decode_sparse,
             "huffman": _decode_huffman}


def encode(fmt: str, rows: np.ndarray, *, huff_scratch_budget: int = 4096,
           layout: str = "portable") -> Encoded | str:
    """Encode a layer's weight matrix [rows][row_len] (int8) in a format, or return one sentence
    saying why the layer cannot take it losslessly. layout "dsp": the arrays of the _dsp kernel
    variants (the same bytes re-ordered; identical to "portable" for lut4, lut8 and sparse)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown weight format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    rows = np.asarray(rows)
    if rows.ndim != 2 or rows.shape[0] < 1 or rows.shape[1] < 1:
        raise ValueError(f"weights must be a non-empty [rows][row_len] matrix, got shape {list(rows.shape)}")
    if rows.dtype != np.int8:
        if not np.issubdtype(rows.dtype, np.integer) or rows.min() < -128 or rows.max() > 127:
            raise ValueError(f"weights must be int8, got {rows.dtype}")
        rows = rows.astype(np.int8)
    enc = _ENCODERS[fmt](np.ascontiguousarray(rows), huff_scratch_budget=huff_scratch_budget, layout=layout)
    if isinstance(enc, Encoded) and enc.layout != layout:    # one layout serves both kernels
        enc = replace(enc, layout=layout)
    return enc
