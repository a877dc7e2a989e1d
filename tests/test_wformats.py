"""Compressed weight formats (edgekit/formats.py, firmware/kernels/ek_wcode.h): exact round trips
(both layouts), refusal reasons, and every format kernel and its _dsp variant against the portable
int8 kernel on the decoded weights.

The kernel tests compile one C driver (below) with the format kernels, their _dsp variants (on the
host through ek_dsp.h's exact C twins) and ek_conv2d_s8 / ek_fc_s8 / ek_dwconv_s8 under
AddressSanitizer and UBSan, stream it a few hundred seeded random cases per (op, format, variant)
and compare the two outputs byte for byte. The driver copies every array into a malloc of exactly
its size (the flash array as formats.py emits it) and the scratch buffer into exactly
scratch_bytes(...) bytes (NULL when 0), so a read past a format's arrays or beyond the documented
scratch size stops the run. Pointwise convolutions also run in place, their output starting
exactly the gap edgekit.lower.compressed declares below their input. A convolution case runs the
kernel the lowering picks for it (edgekit.lower.conv.conv2d_kernel: on a DSP core the _dsp variant,
with the folded form's requantization blocks for its bias, for layers within that form's range,
else the portable kernel).
"""
from __future__ import annotations

import heapq
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from edgekit.lower import quant  # noqa: E402
from edgekit.emit.codegen import c_array_body  # noqa: E402
from edgekit.lower.base import ArrayRef, ConstArray, InPlace  # noqa: E402
from edgekit.lower import compressed  # noqa: E402
from edgekit.lower.compressed import conv_inplace, conv_needs_patch, w4_conv_block_rows  # noqa: E402
from edgekit.lower.kernels import KERNELS as REGISTRY, format_kernel  # noqa: E402
from edgekit.lower.conv import ConvLayer, conv2d_kernel  # noqa: E402
from edgekit.lower.packing import fold_input_offset, pack_conv_fold_blocks  # noqa: E402
from edgekit.targets import get_target  # noqa: E402
from edgekit.formats import (FORMATS, HUFF_MAX_BITS, LAYOUTS, W4_DSP_ORDER, Encoded,  # noqa: E402
                              canonical_codes, encode, huff_books, huff_table_bits, limited_code_lengths)

# The (op, format) pairs whose kernel has a _dsp variant, from the kernel registry.
DSP_KERNELS = frozenset((k.op, k.weights) for k in REGISTRY.values()
                        if k.dsp and k.weights not in ("", "int8") and k.name == format_kernel(k.op, k.weights, True).name)


def kernel_of(op: str, fmt: str, dsp: bool = False):
    """The registry's format kernel for (op, format), its _dsp variant when dsp (which must exist)."""
    k = format_kernel(op, fmt, dsp)
    if k.dsp != dsp:
        raise ValueError(f"no _dsp variant of the {fmt} {op} kernel")
    return k


def kernel_name(op: str, fmt: str, dsp: bool = False) -> str:
    return kernel_of(op, fmt, dsp).name


def kernel_layout(op: str, fmt: str, dsp: bool) -> str:
    return format_kernel(op, fmt, dsp).layout


def scratch_bytes(op: str, enc, needs_patch: bool, out_channels: int = 0, dsp: bool = False) -> int:
    return compressed.scratch_bytes(kernel_of(op, enc.format, dsp), enc, needs_patch, out_channels)


def for_kernel(enc, op: str, dsp: bool):
    return compressed.for_kernel(enc, format_kernel(op, enc.format, dsp))


KERNELS = REPO / "firmware" / "kernels"
FORMAT_SOURCES = [f"{kernel_name(op, fmt)}.c" for op in ("conv2d", "fc") for fmt in FORMATS] + \
                 [f"{kernel_name(op, fmt, dsp=True)}.c" for op, fmt in sorted(DSP_KERNELS)] + \
                 ["ek_dwconv_s8_w4.c"]
# Compiled (not linked into the driver): the 3x3 int4 depthwise form, tested through exports.
BUILD_SOURCES = FORMAT_SOURCES + ["ek_dwconv_s8_w4_3x3_dsp.c"]
# (op, format, _dsp variant) of every conv / FC kernel, and the depthwise one
KERNEL_CASES = ([(op, fmt, False) for op in ("conv2d", "fc") for fmt in FORMATS]
                + [(op, fmt, True) for op in ("conv2d", "fc") for fmt in FORMATS if (op, fmt) in DSP_KERNELS]
                + [("dwconv", "int4", False)])
REFERENCE_SOURCES = ["ek_conv2d_s8.c", "ek_fc_s8.c", "ek_dwconv_s8.c"]
FMT_CODE = {f: i for i, f in enumerate(FORMATS)}
OP_CODE = {"conv2d": 0, "fc": 1, "dwconv": 2}


def assert_same(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    """Tolerance 0; on failure print every mismatching index."""
    bad = np.flatnonzero(got != ref)
    if bad.size:
        lines = "\n".join(f"  [{i}] got {int(got[i])}, reference {int(ref[i])}" for i in bad)
        pytest.fail(f"{what}: {bad.size} of {got.size} values differ:\n{lines}")


# ---- weight matrices with the properties each format needs ---------------------------------

def fib_layer(symbols: int = 20) -> np.ndarray:
    """Symbol i appears fib(i) times: unlimited Huffman would need symbols-1 bits."""
    f = [1, 1]
    while len(f) < symbols:
        f.append(f[-1] + f[-2])
    return np.repeat(np.arange(symbols, dtype=np.int8) - 10, f)


def weights_for(fmt: str, rng, shape) -> np.ndarray:
    n, k = shape
    pick = rng.random()
    if fmt == "int4":
        lo, hi = (-8, 7) if pick < 0.7 else sorted(int(v) for v in rng.integers(-8, 8, 2))
        return rng.integers(lo, hi + 1, shape).astype(np.int8)
    if fmt == "lut4":
        if pick < 0.4:                                    # one codebook fits the layer
            book = rng.integers(-128, 128, int(rng.integers(1, 17))).astype(np.int8)
            return rng.choice(book, size=shape)
        books = [rng.integers(-128, 128, int(rng.integers(1, 17))).astype(np.int8) for _ in range(n)]
        return np.stack([rng.choice(b, size=k) for b in books])
    if fmt == "lut8":
        if pick < 0.3:
            return rng.choice(rng.integers(-128, 128, int(rng.integers(1, 40))).astype(np.int8), size=shape)
        return rng.integers(-128, 128, shape).astype(np.int8)
    if fmt == "sparse":
        density = float(rng.choice([0.0, 0.005, 0.03, 0.1, 0.5, 0.95]))
        w = rng.integers(-128, 128, shape).astype(np.int8)
        w[rng.random(shape) >= density] = 0
        if rng.random() < 0.3:
            w[rng.integers(0, n)] = 0                      # an all-zero row
        return w
    if fmt == "huffman":
        if pick < 0.1:
            return np.full(shape, int(rng.integers(-128, 128)), np.int8)   # one symbol
        if pick < 0.2:
            return rng.integers(-128, 128, shape).astype(np.int8)
        if pick < 0.55:
            return clustered_per_channel(rng, shape)
        return np.clip(np.round(rng.laplace(0, float(rng.choice([0.5, 3, 20])), shape)), -128, 127).astype(np.int8)
    raise ValueError(fmt)


def clustered_per_channel(rng, shape, levels: int = 0) -> np.ndarray:
    """A layer clustered to `levels` (2..16 when 0) shared values, then quantized per output
    channel: at most `levels` values per row, many in the layer (Huffman codes its indices)."""
    n, k = shape
    levels = levels or int(rng.integers(2, 17))
    centroids = np.sort(rng.normal(0, 1, levels))
    scale = 127 / np.abs(centroids).max() * rng.uniform(0.3, 1, (n, 1))
    idx = rng.choice(levels, size=shape, p=rng.dirichlet(np.full(levels, 0.7)))
    return np.clip(np.round(centroids[idx] * scale), -128, 127).astype(np.int8)


def wide_books(rows: int = 4, k: int = 3000) -> np.ndarray:
    """Rows of about 200 distinct values each, skewed to the low end of the int8 range (even rows)
    or the high end (odd rows): codebook indices past 127 (their int8 bit pattern negative) and a
    layer whose indices code shorter than its values."""
    rng = np.random.default_rng(5)
    steps = np.minimum(rng.geometric(0.02, (rows, k)) - 1, 220)
    return np.where(np.arange(rows)[:, None] % 2 == 0, -128 + steps, 127 - steps).astype(np.int8)


def gap_row(k: int = 700) -> np.ndarray:
    r = np.zeros((3, k), np.int8)
    r[0, [0, 1, 300, 699]] = [5, -128, 127, -1]            # gaps > 255 and > 15, ends at K-1
    r[2, [16, 17, 16 + 255 + 1]] = [1, 2, 3]               # a first entry past the delta range
    return r


# ---- round trips and refusals --------------------------------------------------------------

@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_random(fmt, layout):
    rng = np.random.default_rng(7 + FMT_CODE[fmt])
    for case in range(60):
        shape = (int(rng.choice([1, 1, 2, 5, 16])), int(rng.choice([1, 2, 3, 7, 8, 15, 16, 17, 64, 301])))
        w = weights_for(fmt, rng, shape)
        budget = int(rng.integers(1, 3000))
        enc = encode(fmt, w, huff_scratch_budget=budget, layout=layout)
        assert isinstance(enc, Encoded), f"case {case}: {enc}"
        assert enc.layout == layout
        assert enc.nbytes == sum(a.nbytes for a in enc.arrays)
        assert all(a.values.size >= 1 for a in enc.arrays)
        assert_same(enc.decode().reshape(-1), w.reshape(-1), f"{fmt} {layout} case {case} shape {shape}")
        # the _dsp layout re-orders the same bytes (int4) or codes the same weights (huffman)
        assert enc.nbytes == encode(fmt, w, huff_scratch_budget=budget).nbytes


@pytest.mark.parametrize("w", [gap_row(), np.zeros((4, 9), np.int8), fib_layer().reshape(1, -1),
                               fib_layer().reshape(-1, 2), np.full((1, 1), -128, np.int8),
                               np.arange(-128, 128, dtype=np.int8).reshape(16, 16)],
                         ids=["gaps", "zeros", "fib-row", "fib-pairs", "one-weight", "all-256"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_edges(fmt, layout, w):
    enc = encode(fmt, w, layout=layout)
    if isinstance(enc, str):
        assert fmt in ("int4", "lut4"), enc
        return
    assert_same(enc.decode().reshape(-1), w.reshape(-1), f"{fmt} {layout}")


def test_refusals_name_the_channel():
    w = np.zeros((5, 40), np.int8)
    w[3, :37] = np.arange(37) - 18
    assert encode("lut4", w) == "its weights take 37 distinct values in output channel 3; lut4 holds 16"
    w = np.zeros((4, 6), np.int8)
    w[2, 4] = -9
    assert encode("int4", w) == "its weights reach -9 in output channel 2; int4 holds -8..7"
    assert encode("int4", np.array([[0, 8]], np.int8)) == "its weights reach 8; int4 holds -8..7"
    full = np.arange(-128, 128, dtype=np.int8).reshape(1, -1)
    assert isinstance(encode("lut8", full), Encoded)
    with pytest.raises(ValueError, match="unknown weight format"):
        encode("int3", full)


def test_documented_examples():
    """The worked examples of firmware/kernels/ek_wcode.h."""
    assert encode("int4", np.array([[1, -2, 3, -8, 7]], np.int8)).array("wcodes").tolist() == [0xE1, 0x83, 0x07]
    lut = encode("lut4", np.array([[90, 0, 0, -40, 25]], np.int8))
    assert lut.array("wvalues").tolist() == [-40, 0, 25, 90]
    assert lut.array("wcodes").tolist() == [0x13, 0x01, 0x02]
    row = np.zeros((1, 40), np.int8)
    row[0, [2, 3, 30]] = [5, -1, 7]
    sp = encode("sparse", row)         # 14 bytes either way: the tie takes 8-bit deltas
    assert (sp.fields["delta_bits"], sp.array("wcodes").tolist(), sp.array("wvalues").tolist(),
            sp.array("windex").tolist()) == (8, [2, 1, 27], [5, -1, 7], [0, 3])
    row[0, [31, 32]] = 1               # two more close entries: now 4-bit deltas are smaller
    sp = encode("sparse", row)         # 3 + 6 + 8 bytes against 5 + 5 + 8
    assert (sp.fields["delta_bits"], sp.array("wcodes").tolist(), sp.array("wvalues").tolist()) == \
        (4, [0x12, 0xCF, 0x11], [5, -1, 0, 7, 1, 1])
    hf = encode("huffman", np.array([[0, 0, 0, 5, 0, -3, 0, 0]], np.int8))
    assert hf.array("wcounts").tolist() == [0, 1, 2] + [0] * 13
    assert hf.array("wvalues").tolist() == [0, -3, 5]
    assert hf.array("wcodes").tolist() == [0x1A, 0x00, 0, 0, 0]            # 3 zero bytes of padding
    assert hf.fields["table_bits"] == 2                                     # the longest code
    assert hf.array("wtable").tolist() == [0x100, 0x100, 0x2FD, 0x205]      # 0, 0, -3, 5 with lengths
    one = encode("huffman", np.full((2, 9), 3, np.int8))   # one symbol: the 1-bit code 0
    assert one.array("wcounts").tolist()[:2] == [0, 1] and one.array("wcodes").tolist() == [0, 0, 0] + [0] * 3
    assert one.array("wtable").tolist() == [0x103, 0]
    books = encode("huffman", np.array([[1, 1, 1, 4], [2, 2, 2, 8]], np.int8))   # codebook indices
    assert (books.fields["levels"], books.array("wbook").tolist(), books.array("wvalues").tolist(),
            books.array("wcounts").tolist()[:3], books.array("wcodes").tolist(), books.fields["table_bits"],
            books.array("wtable").tolist(), books.nbytes) == (2, [1, 4, 2, 8], [0, 1], [0, 2, 0], [0x11, 0, 0, 0],
                                                             1, [0x100, 0x101], 46)
    w4 = encode("int4", np.array([np.arange(-8, 0), np.arange(8)], np.int8), layout="dsp")
    assert w4.array("wcodes").tolist() == [0x98, 0xDC, 0xBA, 0xFE, 0x10, 0x54, 0x32, 0x76]
    assert W4_DSP_ORDER == (0, 1, 4, 5, 2, 3, 6, 7)


def _value_coded(w: np.ndarray, layout: str = "portable") -> int:
    """Bytes of w's Huffman code over its int8 values: w coded as one row (never codebook indices);
    the code's size depends only on the values' frequencies, not on the rows."""
    return encode("huffman", w.reshape(1, -1)).nbytes


def test_huffman_codes_indices_when_smaller():
    """Huffman keeps the smaller of its value code and its codebook-index code; a per-channel
    clustered layer (16 levels, 30-40 values a layer) takes the indices, and both layouts decode
    to the same weights; a layer of one shared codebook takes the values (its indices would need
    the same code plus the codebooks)."""
    rng = np.random.default_rng(12)
    w = clustered_per_channel(rng, (32, 288), 16)
    assert 30 <= np.unique(w).size and max(np.unique(r).size for r in w) <= 16
    for layout in LAYOUTS:
        enc = encode("huffman", w, layout=layout)
        assert "book" in enc.fields and enc.fields["levels"] == 16
        assert enc.array("wbook").size == 32 * 16
        assert_same(enc.decode().reshape(-1), w.reshape(-1), f"indices {layout}")
        assert enc.nbytes < _value_coded(w)
        lut4 = encode("lut4", w)
        assert enc.nbytes < lut4.nbytes, (enc.nbytes, lut4.nbytes)   # Huffman on top of lut4: smaller
    shared = rng.choice(np.array([-90, -7, 0, 3, 50], np.int8), size=(32, 288))
    enc = encode("huffman", shared)
    assert "book" not in enc.fields and enc.nbytes == _value_coded(shared)
    # Both codebook orders are tried: rows whose frequent values differ code shorter by frequency.
    books = huff_books(w)
    assert [b.shape for b, _ in books] == [(32, 16), (32, 16)]
    for book, idx in books:
        assert (np.take_along_axis(book, idx.astype(np.int64), axis=1) == w).all()
    for o, row in enumerate(w):                    # ascending values, then most frequent first
        u, cnt = np.unique(row, return_counts=True)
        assert books[0][0][o, :u.size].tolist() == u.tolist()
        assert (np.diff(cnt[np.searchsorted(u, books[1][0][o, :u.size])]) <= 0).all()


def test_lut_codebook_choice():
    rng = np.random.default_rng(3)
    layer = rng.choice(np.array([-5, 0, 9, 100], np.int8), size=(8, 20))
    enc = encode("lut4", layer)
    assert (enc.fields["per_channel"], enc.fields["levels"], enc.array("wvalues").size) == (0, 4, 4)
    rows = np.stack([rng.permutation(np.tile(np.arange(16) + 16 * o - 64, 2)) for o in range(8)]).astype(np.int8)
    enc = encode("lut4", rows)         # 128 distinct in the layer, 16 per row
    assert (enc.fields["per_channel"], enc.fields["levels"], enc.array("wvalues").size) == (1, 16, 128)
    enc = encode("lut8", rows)         # a 128-entry layer codebook ties 8 rows x 16: the layer's
    assert (enc.fields["per_channel"], enc.fields["levels"]) == (0, 128)
    assert encode("lut4", rows).nbytes == 8 * 16 + 8 * 16


def test_sparse_delta_bits_choice():
    dense_gaps = np.zeros((1, 4000), np.int8)
    dense_gaps[0, ::200] = 1           # gaps of 200: 8-bit has 20 entries, 4-bit 14 per gap
    assert encode("sparse", dense_gaps).fields["delta_bits"] == 8
    close = np.zeros((1, 4000), np.int8)
    close[0, ::3] = 1
    assert encode("sparse", close).fields["delta_bits"] == 4


def _huffman_lengths(freqs):
    heap = [(f, i, (i,)) for i, f in enumerate(freqs)]
    heapq.heapify(heap)
    depth = [0] * len(freqs)
    tie = len(freqs)
    while len(heap) > 1:
        fa, _, a = heapq.heappop(heap)
        fb, _, b = heapq.heappop(heap)
        for s in a + b:
            depth[s] += 1
        heapq.heappush(heap, (fa + fb, tie, a + b))
        tie += 1
    return depth


def test_length_limited_huffman():
    rng = np.random.default_rng(11)
    for case in range(40):
        n = int(rng.integers(2, 257))
        freqs = [int(f) for f in rng.integers(1, 1000, n) ** int(rng.integers(1, 3))]
        lengths = limited_code_lengths(freqs)
        assert max(lengths) <= HUFF_MAX_BITS
        assert sum(2.0 ** -ln for ln in lengths) == 1.0, f"case {case}: not a complete code"
        free = _huffman_lengths(freqs)
        if max(free) <= HUFF_MAX_BITS:   # the limit does not bind: package-merge is optimal too
            assert sum(f * ln for f, ln in zip(freqs, lengths)) == sum(f * ln for f, ln in zip(freqs, free))
    fib = [int(c) for c in np.unique(fib_layer(), return_counts=True)[1]]
    assert max(_huffman_lengths(fib)) == 19 and max(limited_code_lengths(fib)) == HUFF_MAX_BITS
    assert limited_code_lengths([1, 1, 1, 1], limit=2) == [2, 2, 2, 2]
    symbols, lens, codes, counts = canonical_codes([7, -3, 5], [2, 1, 2])
    assert (symbols, lens, codes, counts[:3]) == ([-3, 5, 7], [1, 2, 2], [0b0, 0b10, 0b11], [0, 1, 2])


def test_huffman_table():
    """The first-level table: at most HUFF_TABLE_MAX_BITS bits, at most the longest code, about an
    eighth of the stream; every entry names the code that starts its index."""
    assert huff_table_bits(15, 10**6) == 10 and huff_table_bits(4, 10**6) == 4
    assert huff_table_bits(15, 100) == 6 and huff_table_bits(15, 3000) == 7
    enc = encode("huffman", fib_layer().reshape(1, -1))      # codes of 1..15 bits
    bits = enc.fields["table_bits"]
    assert bits == huff_table_bits(15, enc.array("wcodes").size - 3) < 15
    assert enc.array("wtable").size == 1 << bits
    symbols, lengths, codes, _ = canonical_codes(sorted(set(fib_layer().tolist())),
                                                 limited_code_lengths(
                                                     [int(c) for c in np.unique(fib_layer(), return_counts=True)[1]]))
    by_symbol = dict(zip(enc.array("wvalues").tolist(), zip(lengths, codes)))
    for i, e in enumerate(enc.array("wtable").tolist()):
        if e == 0:        # a code longer than the table starts here
            assert all(not (ln <= bits and c == i >> (bits - ln)) for ln, c in by_symbol.values())
            continue
        sym = (e & 0xFF) - 256 * ((e & 0xFF) >= 128)
        ln, c = by_symbol[sym]
        assert ln == e >> 8 and c == i >> (bits - ln), (i, e)


def test_scratch_bytes_table():
    w = np.zeros((10, 30), np.int8)
    hf = encode("huffman", w, huff_scratch_budget=100)            # 3 rows of 30 per block
    assert hf.fields["block_rows"] == 3
    assert encode("huffman", w, huff_scratch_budget=10).fields["block_rows"] == 1
    assert encode("huffman", w, huff_scratch_budget=10**6).fields["block_rows"] == 10
    assert scratch_bytes("conv2d", hf, True) == 3 * 30 + 30
    assert scratch_bytes("conv2d", hf, False) == 3 * 30
    assert scratch_bytes("fc", hf, True) == 3 * 30
    for fmt in ("int4", "lut4", "lut8", "sparse"):
        enc = encode(fmt, w)
        assert (scratch_bytes("conv2d", enc, True), scratch_bytes("conv2d", enc, False),
                scratch_bytes("fc", enc, False)) == (30, 0, 0)
    # the _dsp convolutions' requantization blocks are in flash, not scratch
    sp = encode("sparse", w)       # _dsp: the 4-pixel buffer of 32 values, two patches
    assert (scratch_bytes("conv2d", sp, True, dsp=True), scratch_bytes("conv2d", sp, False, dsp=True),
            scratch_bytes("fc", sp, False, dsp=True)) == (32 * 8 + 2 * 30, 32 * 8, 0)
    # the _dsp Huffman convolution: the 4-pixel buffer, 3 decoded rows of 32, a patch
    assert (scratch_bytes("conv2d", hf, True, dsp=True), scratch_bytes("conv2d", hf, False, dsp=True),
            scratch_bytes("fc", hf, False, dsp=True)) == (32 * 8 + 3 * 32 + 30, 32 * 8 + 3 * 32, 3 * 30)
    assert [kernel_layout(op, fmt, True) for op, fmt in [("conv2d", "int4"), ("fc", "int4"), ("fc", "huffman"),
                                                         ("conv2d", "huffman"), ("conv2d", "lut4")]] == \
        ["portable", "dsp", "dsp", "portable", "portable"]
    for fmt in ("int4", "lut4", "lut8"):       # _dsp: the 4-pixel buffer, unpacked rows, a patch
        enc = encode(fmt, w)
        rows = 10 if fmt == "int4" else 4       # int4: every row (4096 bytes hold 128 of 32)
        assert (scratch_bytes("conv2d", enc, True, dsp=True), scratch_bytes("conv2d", enc, False, dsp=True),
                scratch_bytes("fc", enc, False, dsp=True)) == (32 * 8 + rows * 32 + 30, 32 * 8 + rows * 32, 0)
    assert w4_conv_block_rows(10, 30) == 10 and w4_conv_block_rows(300, 1024) == 4 and w4_conv_block_rows(3, 5000) == 1
    assert for_kernel(encode("int4", w), "conv2d", True).fields["block_rows"] == 10
    assert "block_rows" not in for_kernel(encode("int4", w), "conv2d", False).fields
    assert "block_rows" not in for_kernel(encode("int4", w), "fc", True).fields
    assert kernel_layout("fc", "huffman", False) == "portable"
    assert scratch_bytes("dwconv", encode("int4", w[:1]), True, out_channels=10) == 40
    assert conv_needs_patch(1, 1, 0, 0) is False and conv_needs_patch(1, 1, 1, 0) and conv_needs_patch(3, 3, 0, 0)
    assert kernel_name("fc", "huffman") == "ek_fc_s8_huff" and kernel_name("dwconv", "int4") == "ek_dwconv_s8_w4"
    with pytest.raises(ValueError):
        kernel_name("dwconv", "lut4")


def test_emitted_arrays_and_nested_fields_compile(tmp_path):
    """What the emitter writes for an encoded layer (c_array_body for the unsigned arrays,
    designated initializers `.w.codes = ...`) compiles against ek_wcode.h."""
    rng = np.random.default_rng(5)
    lines = ['#include "ek_wcode.h"']
    for i, fmt in enumerate(FORMATS):
        enc = encode(fmt, weights_for(fmt, rng, (4, 33)))
        for a in enc.arrays:
            lines += [f"static const {a.ctype} l{i}_{a.name}[{a.values.size}] = {{",
                      c_array_body(a.values, a.ctype), "};"]
        fields = ["    .fc.in_n = 33,", "    .fc.out_n = 4,"]
        for name, value in enc.fields.items():
            c_value = f"l{i}_{value.name}" if isinstance(value, ArrayRef) else str(int(value))
            fields.append(f"    .w.{name} = {c_value},")
        lines += [f"const ek_fc_wc_params l{i}_params = {{"] + fields + ["};"]
    src = tmp_path / "emitted.c"
    src.write_text("\n".join(lines) + "\n")
    res = subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{KERNELS}", "-c", str(src),
                          "-o", str(tmp_path / "emitted.o")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


# ---- kernels against the portable int8 kernels, on the host under ASan/UBSan ---------------

DRIVER = r"""
/* Reads cases from stdin; for each runs the portable int8 kernel on the decoded weights and the
 * format kernel (or its _dsp variant) on the encoded ones, and writes both outputs to stdout.
 * Every array is copied into a malloc of exactly its size, so ASan sees any read past it. With
 * gap >= 0 (conv only) the format kernel runs in place: its output starts gap bytes below its
 * input in one buffer. With fold (the _dsp convolutions) the format kernel's bias array holds the
 * folded form's blocks and its conv.mult and conv.shift are NULL. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ek_wcode.h"

static int rd_i32(int32_t *v) { return fread(v, 4, 1, stdin) == 1; }
static void need(int ok) { if (!ok) { fprintf(stderr, "short input\n"); exit(2); } }
static void *rd_arr(size_t elem, int32_t *count)
{
    int32_t n;
    need(rd_i32(&n));
    if (count) *count = n;
    if (n == 0) return NULL;
    void *p = malloc((size_t)n * elem);
    need(p != NULL && fread(p, elem, (size_t)n, stdin) == (size_t)n);
    return p;
}

typedef void conv_fn(const ek_conv2d_wc_params *, const int8_t *, const int32_t *, int8_t *, int8_t *);
typedef void fc_fn(const ek_fc_wc_params *, const int8_t *, const int32_t *, int8_t *, int8_t *);
static conv_fn *const CONV[2][5] = {
    {ek_conv2d_s8_w4, ek_conv2d_s8_lut4, ek_conv2d_s8_lut8, ek_conv2d_s8_sparse, ek_conv2d_s8_huff},
    {ek_conv2d_s8_w4_dsp, ek_conv2d_s8_lut4_dsp, ek_conv2d_s8_lut8_dsp, ek_conv2d_s8_sparse_dsp,
     ek_conv2d_s8_huff_dsp}};
static fc_fn *const FC[2][5] = {
    {ek_fc_s8_w4, ek_fc_s8_lut4, ek_fc_s8_lut8, ek_fc_s8_sparse, ek_fc_s8_huff},
    {ek_fc_s8_w4_dsp, ek_fc_s8_lut4_dsp, ek_fc_s8_lut8_dsp, ek_fc_s8_sparse_dsp, ek_fc_s8_huff_dsp}};

int main(void)
{
    int32_t op, fmt, dsp, fold, gap;
    while (rd_i32(&op)) {
        int32_t v[24], n, in_n;
        need(rd_i32(&fmt) && rd_i32(&dsp) && rd_i32(&fold) && rd_i32(&gap) && rd_i32(&n) && n <= 24);
        for (int32_t i = 0; i < n; ++i) need(rd_i32(&v[i]));
        int32_t *mult = rd_arr(4, NULL), *shift = rd_arr(4, NULL);
        int8_t *input = rd_arr(1, &in_n), *weights = rd_arr(1, NULL);
        int32_t *bias = rd_arr(4, NULL), *folded = rd_arr(4, NULL);
        ek_wcode w;
        memset(&w, 0, sizeof w);
        need(rd_i32(&w.rows) && rd_i32(&w.row_len) && rd_i32(&w.levels) && rd_i32(&w.per_channel) &&
             rd_i32(&w.delta_bits) && rd_i32(&w.block_rows) && rd_i32(&w.table_bits));
        uint8_t *codes = rd_arr(1, NULL);
        int8_t *values = rd_arr(1, NULL);
        uint32_t *index = rd_arr(4, NULL);
        uint16_t *counts = rd_arr(2, NULL), *table = rd_arr(2, NULL);
        int8_t *book = rd_arr(1, NULL);
        int32_t scratch_n, out_n;
        need(rd_i32(&scratch_n) && rd_i32(&out_n));
        w.codes = codes; w.values = values; w.index = index; w.counts = counts; w.table = table;
        w.book = book;
        int8_t *scratch = scratch_n ? malloc((size_t)scratch_n) : NULL;
        int8_t *ref = malloc((size_t)out_n), *got = malloc((size_t)out_n);
        memset(ref, 0x5A, (size_t)out_n);
        memset(got, 0x5A, (size_t)out_n);
        if (op == 0) {
            ek_conv2d_wc_params p = {
                .conv = {.in_h = v[0], .in_w = v[1], .in_c = v[2], .out_h = v[3], .out_w = v[4],
                         .out_c = v[5], .k_h = v[6], .k_w = v[7], .stride_h = v[8], .stride_w = v[9],
                         .dil_h = v[10], .dil_w = v[11], .pad_top = v[12], .pad_left = v[13],
                         .input_offset = v[14], .output_offset = v[15], .act_min = v[16],
                         .act_max = v[17], .mult = mult, .shift = shift},
                .w = w};
            ek_conv2d_s8(&p.conv, input, weights, bias, ref, NULL);
            if (fold) {
                p.conv.mult = NULL;
                p.conv.shift = NULL;
            }
            if (gap >= 0) {            /* one buffer: output at 0, input at gap */
                const int32_t size = gap + in_n > out_n ? gap + in_n : out_n;
                int8_t *buf = malloc((size_t)size);
                memset(buf, 0x5A, (size_t)size);
                memcpy(buf + gap, input, (size_t)in_n);
                CONV[dsp][fmt](&p, buf + gap, folded, buf, scratch);
                memcpy(got, buf, (size_t)out_n);
                free(buf);
            } else {
                CONV[dsp][fmt](&p, input, folded, got, scratch);
            }
        } else if (op == 1) {
            ek_fc_wc_params p = {
                .fc = {.rows = v[0], .in_n = v[1], .out_n = v[2], .input_offset = v[3],
                       .weight_offset = v[4], .output_offset = v[5], .act_min = v[6], .act_max = v[7],
                       .mult = mult, .shift = shift, .per_tensor = v[8], .double_round = v[9]},
                .w = w};
            ek_fc_s8(&p.fc, input, weights, bias, ref);
            FC[dsp][fmt](&p, input, folded, got, scratch);
        } else {
            ek_dwconv_wc_params p = {
                .dw = {.in_h = v[0], .in_w = v[1], .in_c = v[2], .out_h = v[3], .out_w = v[4],
                       .out_c = v[5], .ch_mult = v[6], .k_h = v[7], .k_w = v[8], .stride_h = v[9],
                       .stride_w = v[10], .dil_h = v[11], .dil_w = v[12], .pad_top = v[13],
                       .pad_left = v[14], .input_offset = v[15], .output_offset = v[16],
                       .act_min = v[17], .act_max = v[18], .mult = mult, .shift = shift},
                .w = w};
            ek_dwconv_s8(&p.dw, input, weights, bias, ref);
            ek_dwconv_s8_w4(&p, input, bias, got, scratch);
        }
        fwrite(ref, 1, (size_t)out_n, stdout);
        fwrite(got, 1, (size_t)out_n, stdout);
        free(mult); free(shift); free(input); free(weights); free(bias); free(folded);
        free(codes); free(values); free(index); free(counts); free(table); free(book); free(scratch);
        free(ref);
        free(got);
    }
    return 0;
}
"""

SANITIZE = ["-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    d = tmp_path_factory.mktemp("ek_wformats")
    (d / "driver.c").write_text(DRIVER)
    exe = d / "driver"
    cmd = ["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", *SANITIZE, f"-I{KERNELS}", "-o", str(exe),
           str(d / "driver.c")] + [str(KERNELS / s) for s in FORMAT_SOURCES + REFERENCE_SOURCES]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"compiling the driver failed:\n{res.stderr}"
    return exe


def _i32(*values) -> bytes:
    return np.array(values, "<i4").tobytes()


def _arr(a: np.ndarray | None, dtype: str) -> bytes:
    if a is None:
        return _i32(0)
    a = np.ascontiguousarray(a, dtype=dtype).reshape(-1)
    return _i32(a.size) + a.tobytes()


def _quant(rng, n: int, double_round: bool, extreme: bool):
    mult = rng.integers(1 << 30, 1 << 31, n, dtype=np.int64).astype(np.int32)
    if extreme:
        mult[rng.random(n) < 0.3] = np.int32(2**31 - 1)
        mult[rng.random(n) < 0.3] = np.int32(1 << 30)
        shift = rng.integers(-31, 4, n) if double_round else rng.integers(-30, 6, n)
    else:
        shift = rng.integers(-14, 1, n)
    a, b = sorted(int(v) for v in rng.integers(-128, 128, 2))
    if not extreme and rng.random() < 0.5:
        a, b = -128, 127
    zp_in = int(rng.choice([-128, 127])) if extreme else int(rng.integers(-128, 128))
    zp_out = int(rng.choice([-128, 127])) if extreme else int(rng.integers(-128, 128))
    return mult, shift.astype(np.int32), [-zp_in, zp_out, a, b]


def _inputs(rng, size: int, extreme: bool) -> np.ndarray:
    if extreme:
        return rng.choice(np.array([-128, -127, 127], np.int8), size=size)
    return rng.integers(-128, 128, size).astype(np.int8)


def _bias(rng, n: int):
    return None if rng.random() < 0.2 else rng.integers(-(1 << 20), 1 << 20, n).astype(np.int32)


def _wcode(enc: Encoded, scratch: int, out_n: int) -> bytes:
    f = enc.fields
    arr = {a.name: a.values for a in enc.arrays}
    return (_i32(enc.rows, enc.row_len, f.get("levels", 0), f.get("per_channel", 0), f.get("delta_bits", 0),
                 f.get("block_rows", 0), f.get("table_bits", 0))
            + _arr(arr.get("wcodes"), "u1") + _arr(arr.get("wvalues"), "i1") + _arr(arr.get("windex"), "<u4")
            + _arr(arr.get("wcounts"), "<u2") + _arr(arr.get("wtable"), "<u2") + _arr(arr.get("wbook"), "i1")
            + _i32(scratch, out_n))


def _head(op: str, fmt: str, dsp: bool, ints: list[int], gap: int = -1, fold: bool = False) -> bytes:
    return _i32(OP_CODE[op], FMT_CODE[fmt], int(dsp), int(fold), gap, len(ints), *ints)


def conv_kernel(fmt: str, dsp: bool, w: np.ndarray, bias: np.ndarray | None, input_offset: int):
    """The kernel the lowering picks for a convolution with weights w (edgekit.lower.conv.conv2d_kernel)
    on a DSP core (dsp) or not."""
    layer = ConvLayer(params=dict(input_offset=input_offset), rows=w, quant_arrays=[], macs=0,
                      bias=None if bias is None else ConstArray("bias", "int32_t", bias))
    return conv2d_kernel(layer, get_target("cortex-m4") if dsp else None, fmt)


def conv_bias(k, w: np.ndarray, bias: np.ndarray | None, mult, shift, q: list[int]) -> np.ndarray:
    """The bias array a compressed conv kernel k takes (edgekit.lower.compressed.compressed_call):
    the folded form's blocks when k.fold, else the bias with the input offset folded in."""
    folded = fold_input_offset(bias, w, q[0])
    return pack_conv_fold_blocks(w, folded, mult, shift, q[1]) if k.fold else folded


def _geometry(rng, in_hw, pointwise: bool):
    if pointwise:
        k, stride, dil, padding = (1, 1), tuple(int(rng.integers(1, 3)) for _ in range(2)), (1, 1), "VALID"
    else:
        k = tuple(int(rng.integers(1, 5)) for _ in range(2))
        stride = tuple(int(rng.integers(1, 4)) for _ in range(2))
        dil = tuple(int(rng.integers(1, 3)) for _ in range(2))
        padding = str(rng.choice(["SAME", "VALID"]))
    out_hw = [quant.conv_output_size(in_hw[a], k[a], stride[a], dil[a], padding) for a in range(2)]
    pads = [quant.same_padding(in_hw[a], k[a], stride[a], dil[a], out_hw[a]) if padding == "SAME" else 0
            for a in range(2)]
    return k, stride, dil, out_hw, pads


def _conv_case(rng, fmt: str, dsp: bool, extreme: bool, in_place: bool = False, big_bias: bool = False):
    """A random convolution, run on the kernel the lowering picks for it (on a DSP core when dsp);
    in_place: a pointwise one run at the declared gap (None when the kernel declares none for it);
    big_bias: folded biases at the folded form's range limit (|bias| + K * 2^14 = 2^30 - 1), in some
    layers one channel just past it (the portable kernel), in others an all-zero row with a bias
    anywhere in int32 (a constant channel: still the folded form)."""
    in_c = int(rng.choice([1, 3, 4, 7, 8, 16, 33, 70]))
    out_c = int(rng.choice([1, 2, 3, 8, 17]))
    if in_place:
        out_c = int(rng.integers(1, in_c + 1)) if rng.random() < 0.8 else out_c
    in_h, in_w = (int(rng.integers(1, 8)) for _ in range(2))
    k, stride, dil, out_hw, pads = _geometry(rng, (in_h, in_w), pointwise=in_place or rng.random() < 0.25)
    if min(out_hw) < 1:
        return None
    mult, shift, q = _quant(rng, out_c, double_round=True, extreme=extreme)
    ints = [in_h, in_w, in_c, *out_hw, out_c, *k, *stride, *dil, *pads, *q]
    K = k[0] * k[1] * in_c
    w = weights_for(fmt, rng, (out_c, K))
    x, bias = _inputs(rng, in_h * in_w * in_c, extreme), _bias(rng, out_c)
    if big_bias:
        limit = 2 ** 30 - 1 - K * 2 ** 14
        target = rng.choice(np.array([limit, -limit, 5], np.int64), out_c)
        pick = rng.random()
        if pick < 0.4:                                                  # past the range
            target[rng.integers(0, out_c)] = limit + 1
        elif pick < 0.8:                                                # a pruned channel
            o = rng.integers(0, out_c)
            w[o] = 0
            target[o] = rng.choice([2 ** 30, -2 ** 31, 2 ** 31 - 1, -(2 ** 30) - 12345])
        bias = (target - q[0] * w.astype(np.int64).sum(axis=1)).astype(np.int32)
    kern = conv_kernel(fmt, dsp, w, bias, q[0])
    budget = 4096 if in_place else int(rng.choice([1, 50, 300, 4096]))
    enc = encode(fmt, w, huff_scratch_budget=budget, layout=kern.layout)
    assert isinstance(enc, Encoded), enc
    enc = compressed.for_kernel(enc, kern)
    needs_patch = conv_needs_patch(*k, *pads)
    gap = -1
    if in_place:
        declared = conv_inplace(fmt, kern.dsp, enc, in_c, out_c, needs_patch)
        if not declared:
            return None
        gap = declared[0].gap
    out_n = out_hw[0] * out_hw[1] * out_c
    scratch = compressed.scratch_bytes(kern, enc, needs_patch)
    data = (_head("conv2d", fmt, kern.dsp, ints, gap, fold=kern.fold) + _arr(mult, "<i4") + _arr(shift, "<i4")
            + _arr(x, "i1") + _arr(enc.decode(), "i1") + _arr(bias, "<i4")
            + _arr(conv_bias(kern, w, bias, mult, shift, q), "<i4") + _wcode(enc, scratch, out_n))
    return data, out_n, dict(zip(("in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k_h", "k_w", "stride_h",
                                  "stride_w", "dil_h", "dil_w", "pad_top", "pad_left"), ints), gap=gap,
                             kernel=kern.name)


def _fc_case(rng, fmt: str, dsp: bool, extreme: bool):
    rows = int(rng.choice([1, 1, 2, 3, 5]))
    in_n = int(rng.choice([1, 2, 3, 16, 17, 64, 255, 300, 601]))
    out_n = int(rng.choice([1, 2, 3, 7, 16, 33]))
    double_round = bool(rng.random() < 0.5)
    mult, shift, q = _quant(rng, out_n, double_round=double_round, extreme=extreme)
    per_tensor = bool(rng.random() < 0.3)
    if per_tensor:
        mult[:], shift[:] = mult[0], shift[0]
    ints = [rows, in_n, out_n, q[0], 0, q[1], q[2], q[3], int(per_tensor), int(double_round)]
    w = weights_for(fmt, rng, (out_n, in_n))
    enc = encode(fmt, w, huff_scratch_budget=int(rng.choice([1, 100, 1000, 4096])),
                 layout=kernel_layout("fc", fmt, dsp))
    assert isinstance(enc, Encoded), enc
    x, bias = _inputs(rng, rows * in_n, extreme), _bias(rng, out_n)
    data = (_head("fc", fmt, dsp, ints) + _arr(mult, "<i4") + _arr(shift, "<i4")
            + _arr(x, "i1") + _arr(enc.decode(), "i1") + _arr(bias, "<i4")
            + _arr(fold_input_offset(bias, w, q[0]), "<i4")
            + _wcode(enc, scratch_bytes("fc", enc, False, dsp=dsp), rows * out_n))
    return data, rows * out_n, dict(rows=rows, in_n=in_n, out_n=out_n, double_round=double_round)


def _dw_case(rng, fmt: str, dsp: bool, extreme: bool):
    in_c, ch_mult = int(rng.choice([1, 2, 3, 5, 8, 13])), int(rng.choice([1, 1, 2, 3]))
    out_c = in_c * ch_mult
    in_h, in_w = (int(rng.integers(1, 9)) for _ in range(2))
    k, stride, dil, out_hw, pads = _geometry(rng, (in_h, in_w), pointwise=rng.random() < 0.1)
    if min(out_hw) < 1:
        return None
    mult, shift, q = _quant(rng, out_c, double_round=True, extreme=extreme)
    ints = [in_h, in_w, in_c, *out_hw, out_c, ch_mult, *k, *stride, *dil, *pads, *q]
    w = weights_for("int4", rng, (1, k[0] * k[1] * out_c))
    enc = encode("int4", w)
    x, bias = _inputs(rng, in_h * in_w * in_c, extreme), _bias(rng, out_c)
    out_n = out_hw[0] * out_hw[1] * out_c
    data = (_head("dwconv", "int4", False, ints) + _arr(mult, "<i4") + _arr(shift, "<i4")
            + _arr(x, "i1") + _arr(enc.decode(), "i1") + _arr(bias, "<i4") + _arr(None, "<i4")
            + _wcode(enc, scratch_bytes("dwconv", enc, True, out_channels=out_c), out_n))
    return data, out_n, dict(zip(("in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "ch_mult", "k_h", "k_w",
                                  "stride_h", "stride_w", "dil_h", "dil_w", "pad_top", "pad_left"), ints))


def _run(driver, cases: list, what: str) -> None:
    res = subprocess.run([str(driver)], input=b"".join(c[0] for c in cases), capture_output=True)
    assert res.returncode == 0, f"{what}: the driver failed:\n{res.stderr.decode()[-4000:]}"
    out, at = np.frombuffer(res.stdout, np.int8), 0
    assert out.size == 2 * sum(c[1] for c in cases)
    for i, (_, n, info) in enumerate(cases):
        ref, got = out[at:at + n], out[at + n:at + 2 * n]
        at += 2 * n
        assert_same(got, ref, f"{what} case {i} {info}")


CASE_MAKERS = {"conv2d": _conv_case, "fc": _fc_case, "dwconv": _dw_case}


@pytest.mark.parametrize("op, fmt, dsp", KERNEL_CASES)
def test_kernel_equals_int8_reference(driver, op, fmt, dsp):
    rng = np.random.default_rng(2024 + 10 * OP_CODE[op] + FMT_CODE[fmt] + 100 * dsp)
    cases = []
    while len(cases) < 160:
        case = CASE_MAKERS[op](rng, fmt, dsp, extreme=len(cases) % 4 == 3)
        if case is not None:
            cases.append(case)
    if op == "conv2d":          # every layer is within the folded form's range: the kernel itself
        assert {c[2]["kernel"] for c in cases} == {kernel_name(op, fmt, dsp)}
    _run(driver, cases, kernel_name(op, fmt, dsp))


@pytest.mark.parametrize("fmt, dsp", [(fmt, dsp) for op, fmt, dsp in KERNEL_CASES if op == "conv2d"])
def test_conv_kernels_at_the_folded_forms_range(driver, fmt, dsp):
    """Folded biases at the folded form's range limit (|bias| + K * 2^14 = 2^30 - 1: a _dsp
    kernel's accumulators reach 2^30 - 1), all-zero rows with any int32 bias (constant blocks), and
    biases just past the limit, where the lowering gives a DSP core the portable kernel
    (edgekit.lower.conv.conv2d_kernel); all exact."""
    rng = np.random.default_rng(4242 + FMT_CODE[fmt] + 100 * dsp)
    cases = []
    while len(cases) < 40:
        case = _conv_case(rng, fmt, dsp, extreme=False, big_bias=True)
        if case is not None:
            cases.append(case)
    expected = {kernel_name("conv2d", fmt, False)} | ({kernel_name("conv2d", fmt, True)} if dsp else set())
    assert {c[2]["kernel"] for c in cases} == expected
    _run(driver, cases, kernel_name("conv2d", fmt, dsp) + " at the folded form's range")


@pytest.mark.parametrize("fmt, dsp", [(fmt, dsp) for op, fmt, dsp in KERNEL_CASES if op == "conv2d"])
def test_pointwise_kernel_in_place_at_the_declared_gap(driver, fmt, dsp):
    """Every compressed pointwise convolution, run with its output starting exactly the gap
    edgekit.lower.compressed.conv_inplace declares below its input, gives the out-of-place bytes
    (every fifth layer's biases at or past the folded form's range)."""
    rng = np.random.default_rng(515 + FMT_CODE[fmt] + 100 * dsp)
    cases = []
    while len(cases) < 120:
        case = _conv_case(rng, fmt, dsp, extreme=len(cases) % 4 == 3, in_place=True, big_bias=len(cases) % 5 == 4)
        if case is not None:
            cases.append(case)
    assert min(c[2]["gap"] for c in cases) >= 0
    _run(driver, cases, f"{kernel_name('conv2d', fmt, dsp)} in place")


def test_inplace_declarations():
    """Pointwise layers with out_c <= in_c only; Huffman with one block; the _dsp kernels read
    four pixels before writing them (gap 0), the portable ones one (gap out_c)."""
    w = np.ones((8, 16), np.int8)
    for fmt in ("int4", "lut4", "lut8", "sparse", "huffman"):
        for dsp in (False, True):
            enc = encode(fmt, w, layout=kernel_layout("conv2d", fmt, dsp))
            gap = 0 if dsp else 8
            assert conv_inplace(fmt, dsp, enc, 16, 8, False) == (InPlace(0, gap),), (fmt, dsp)
            assert conv_inplace(fmt, dsp, enc, 16, 8, True) == ()
            assert conv_inplace(fmt, dsp, enc, 7, 8, False) == ()
    blocks = encode("huffman", w, huff_scratch_budget=32)          # two rows per block
    assert blocks.fields["block_rows"] == 2 and conv_inplace("huffman", False, blocks, 16, 8, False) == ()


def test_lowering_picks_the_variant_and_its_layout():
    """compressed_call: the _dsp kernel and the "dsp" layout on a DSP core, the portable ones
    elsewhere; the _dsp convolutions' folded-form blocks in place of bias, mult and shift; their
    scratch; the pointwise in-place declaration of the kernel it picked."""
    from edgekit.ir import Op
    from edgekit.lower.compressed import compressed_call
    rng = np.random.default_rng(9)
    w = weights_for("int4", rng, (8, 16))
    params = dict(in_h=3, in_w=3, in_c=16, out_h=3, out_w=3, out_c=8, k_h=1, k_w=1, stride_h=1, stride_w=1,
                  dil_h=1, dil_w=1, pad_top=0, pad_left=0, input_offset=5, output_offset=3, act_min=-128,
                  act_max=127, mult=ArrayRef("mult"), shift=ArrayRef("shift"))
    mult, shift = np.full(8, 1 << 30, np.int32), np.arange(-8, 0, dtype=np.int32)
    quant = [ConstArray("mult", "int32_t", mult), ConstArray("shift", "int32_t", shift)]
    bias = np.arange(8, dtype=np.int32) * 1000
    op = Op(kind="CONV_2D", inputs=[0, 1], outputs=[2])
    folded = fold_input_offset(bias, w, 5)
    # the _dsp convolution reads the portable layout (rows unpacked once per block), FC the "dsp" one
    for target, kernel, inplace, scratch in [
            (get_target("cortex-m4"), "ek_conv2d_s8_w4_dsp", InPlace(0, 0), 32 * 4 + 8 * 16),
            (get_target("cortex-m3"), "ek_conv2d_s8_w4", InPlace(0, 8), 0),
            (None, "ek_conv2d_s8_w4", InPlace(0, 8), 0)]:
        k = format_kernel("conv2d", "int4", target is not None and target.has_dsp)
        call = compressed_call(k, op, params, w, bias, quant, macs=0)
        assert call.kernel == kernel and call.sources == (f"{kernel}.c",)
        codes = next(a for a in call.arrays if a.name == "wcodes").values
        assert codes.tolist() == encode("int4", w).array("wcodes").tolist()
        assert call.inplace == (inplace,) and call.scratch_bytes == scratch
        arrays = {a.name: a.values for a in call.arrays}
        if k.fold:          # the blocks for the bias, mult and shift NULL
            assert arrays["bias"].tolist() == pack_conv_fold_blocks(w, folded, mult, shift, 3).tolist()
            assert "mult" not in arrays and call.params["conv.mult"] == call.params["conv.shift"] == 0
        else:
            assert arrays["bias"].tolist() == folded.tolist() and arrays["mult"].tolist() == mult.tolist()
            assert call.params["conv.mult"] == ArrayRef("mult")
    call = compressed_call(format_kernel("conv2d", "sparse", True), op, params, w, bias, quant, macs=0)
    assert call.kernel == "ek_conv2d_s8_sparse_dsp" and call.inplace == (InPlace(0, 0),)
    assert call.scratch_bytes == 32 * 4          # the 4-pixel buffer
    fc = dict(rows=1, in_n=16, out_n=8, input_offset=5, weight_offset=0, output_offset=0, act_min=-128,
              act_max=127, per_tensor=0, double_round=0)
    call = compressed_call(format_kernel("fc", "huffman", True), Op(kind="FULLY_CONNECTED", inputs=[0, 1], outputs=[2]),
                           fc, w, None, [], macs=0)
    assert call.kernel == "ek_fc_s8_huff_dsp" and call.inplace == ()
    w4 = compressed_call(format_kernel("fc", "int4", True), Op(kind="FULLY_CONNECTED", inputs=[0, 1], outputs=[2]),
                         fc, w, None, [], macs=0)
    assert w4.kernel == "ek_fc_s8_w4_dsp" and w4.scratch_bytes == 0
    assert next(a for a in w4.arrays if a.name == "wcodes").values.tolist() == \
        encode("int4", w, layout="dsp").array("wcodes").tolist()
    assert call.params["w.block_rows"] == 4 and call.scratch_bytes == 4 * 16     # two pairs of rows
    call = compressed_call(format_kernel("conv2d", "huffman", True), op, params, w, bias, quant, macs=0)
    assert call.kernel == "ek_conv2d_s8_huff_dsp" and call.inplace == (InPlace(0, 0),)
    codes = next(a for a in call.arrays if a.name == "wcodes").values     # rows in order
    assert codes.tolist() == encode("huffman", w, huff_scratch_budget=4096).array("wcodes").tolist()
    assert call.scratch_bytes == 32 * 4 + 8 * 16     # the 4-pixel buffer, the 8 rows
    past = (bias + (2 ** 30 - 16 * 2 ** 14 - folded[0])).astype(np.int32)     # channel 0 at 2^30 - K * 2^14
    with pytest.raises(ValueError, match="folded form's range"):
        compressed_call(format_kernel("conv2d", "lut4", True), op, params, w, past, quant, macs=0)


def test_conv_kernel_outside_the_folded_range_is_portable():
    """conv2d_kernel gives a DSP core the _dsp format kernel for a layer within the folded form's
    range (conv_fold_range_ok: |folded bias| + K * 2^14 < 2^30 over the rows that are not all
    zero), the portable one past it; an all-zero row's bias does not count."""
    w = np.ones((2, 10), np.int8)
    for fmt in FORMATS:
        for top, within in [(2 ** 30 - 1 - 10 * 2 ** 14, True), (2 ** 30 - 10 * 2 ** 14, False)]:
            for target in ([top, -5], [7, -top]):
                bias = (np.array(target, np.int64) - 3 * w.sum(axis=1)).astype(np.int32)
                assert conv_kernel(fmt, True, w, bias, input_offset=3).name == kernel_name("conv2d", fmt, within)
                assert conv_kernel(fmt, False, w, bias, input_offset=3).name == kernel_name("conv2d", fmt)
        pruned = np.array([[0] * 10, [1] * 10], np.int8)
        bias = np.array([2 ** 31 - 1, 2 ** 30 - 1 - 10 * 2 ** 14 - 30], np.int32)
        assert conv_kernel(fmt, True, pruned, bias, input_offset=3).name == kernel_name("conv2d", fmt, True)


def test_pruned_channel_blocks_are_constants():
    """pack_conv_fold_blocks: a channel whose weights are all zero gets {0, 0, 2y + 1, 1} with y its
    one output, clamp(requantize(bias) + output_offset) to int8, for any bias; the others the usual
    blocks."""
    from edgekit.lower.quant import requantize
    rows = np.array([[0, 0, 0], [1, -2, 3], [0, 0, 0], [0, 0, 0]], np.int8)
    bias = np.array([2 ** 30, 100, -2 ** 31, 2 ** 31 - 1], np.int64)
    mult = np.array([1280848370, 1 << 30, 1 << 30, 1 << 30], np.int32)
    shift = np.array([-27, -5, 0, -1], np.int32)
    block = pack_conv_fold_blocks(rows, bias.astype(np.int32), mult, shift, -35).reshape(4, 4)
    assert block[1].tolist() == [200, 1 << 30, 16 + -35 * 32, 5]
    y = [requantize(int(bias[o]), int(mult[o]), int(shift[o])) - 35 for o in (0, 2, 3)]
    assert y[0] == -30 and y[1] < -128 and y[2] > 127
    assert block[[0, 2, 3]].tolist() == [[0, 0, 2 * -30 + 1, 1], [0, 0, 2 * -128 + 1, 1], [0, 0, 2 * 127 + 1, 1]]


def test_dsp_variant_choice():
    """Conv and FC formats have _dsp variants on DSP cores; depthwise int4 (ek_dwconv_s8_w4) has
    none (its 3x3 DSP form is chosen by shape in edgekit.lower.dwconv), and cores without the DSP
    extension, or `--kernels portable`, keep the portable kernels."""
    def dsp_of(target):
        return target is not None and target.has_dsp
    m4, m3 = get_target("cortex-m4"), get_target("cortex-m3")
    assert format_kernel("conv2d", "int4", dsp_of(m4)).dsp and format_kernel("fc", "huffman", dsp_of(m4)).dsp
    assert not format_kernel("conv2d", "int4", dsp_of(m3)).dsp and not format_kernel("fc", "lut4", dsp_of(None)).dsp
    assert format_kernel("dwconv", "int4", True).name == "ek_dwconv_s8_w4"
    assert not format_kernel("conv2d", "lut8", dsp_of(get_target("cortex-m4", portable=True))).dsp
    assert kernel_name("fc", "sparse", dsp=True) == "ek_fc_s8_sparse_dsp"
    with pytest.raises(ValueError):
        kernel_name("dwconv", "int4", dsp=True)
    with pytest.raises(ValueError):
        format_kernel("dwconv", "lut4", False)


@pytest.mark.parametrize("dsp", [False, True])
def test_kernels_on_edge_layers(driver, dsp):
    """Gaps past both delta ranges, a 15-bit Huffman code, single-symbol and all-zero layers, in FC."""
    rng = np.random.default_rng(77)
    cases = []
    layers = {"sparse": [gap_row(), np.zeros((3, 700), np.int8)],
              "huffman": [fib_layer().reshape(10, -1), np.full((3, 700), -7, np.int8), gap_row(), wide_books(),
                          wide_books(5, 301), clustered_per_channel(rng, (9, 640), 16)],
              "int4": [np.full((3, 700), -8, np.int8)],
              "lut4": [np.full((3, 700), 127, np.int8)],
              "lut8": [np.arange(-128, 128, dtype=np.int8).reshape(2, 128)]}
    for fmt, ws in layers.items():
        for w in ws:
            out_n, in_n = w.shape
            mult, shift, q = _quant(rng, out_n, double_round=False, extreme=False)
            ints = [2, in_n, out_n, q[0], 0, q[1], q[2], q[3], 0, 0]
            enc = encode(fmt, w, huff_scratch_budget=in_n * 2, layout=kernel_layout("fc", fmt, dsp))
            x, bias = _inputs(rng, 2 * in_n, False), _bias(rng, out_n)
            data = (_head("fc", fmt, dsp, ints) + _arr(mult, "<i4") + _arr(shift, "<i4")
                    + _arr(x, "i1") + _arr(enc.decode(), "i1") + _arr(bias, "<i4")
                    + _arr(fold_input_offset(bias, w, q[0]), "<i4")
                    + _wcode(enc, scratch_bytes("fc", enc, False, dsp=dsp), 2 * out_n))
            cases.append((data, 2 * out_n, dict(fmt=fmt, shape=w.shape)))
    _run(driver, cases, "edge layers" + (" (_dsp)" if dsp else ""))


@pytest.mark.parametrize("dsp", [False, True])
def test_sparse_conv_long_rows(driver, dsp):
    """Sparse convolution rows of more entries than one 64-bit accumulator of the _dsp kernel takes
    apart (255: runs of 248), with both delta widths, the wide gaps of gap_row, in place and not,
    with and without a pruned (all-zero) row whose bias is far past the folded form's range."""
    rng = np.random.default_rng(31)
    dense = rng.integers(-128, 128, (4, 700)).astype(np.int8)
    dense[dense == 0] = 1
    dense[1, 1::2] = 0                                       # 350 entries
    dense[3, :] = 0
    dense[3, ::30] = -128                                    # gaps past the 4-bit range
    cases = []
    for w in (dense, gap_row(), np.concatenate([dense, gap_row()])):
        out_c, in_c = w.shape
        for in_place, extreme, pruned in ((False, False, False), (False, True, False), (True, False, False),
                                          (False, True, True), (True, False, True)):
            if in_place and out_c > in_c:
                continue
            mult, shift, q = _quant(rng, out_c, double_round=True, extreme=extreme)
            in_h, in_w = 2, 5
            ints = [in_h, in_w, in_c, in_h, in_w, out_c, 1, 1, 1, 1, 1, 1, 0, 0, *q]
            x, bias = _inputs(rng, in_h * in_w * in_c, extreme), _bias(rng, out_c)
            if pruned:                          # an all-zero row with a bias far past the range
                w = w.copy()
                w[-1] = 0
                bias = np.zeros(out_c, np.int32) if bias is None else bias
                bias[-1] = 2 ** 31 - 1
            kern = conv_kernel("sparse", dsp, w, bias, q[0])
            assert kern.name == kernel_name("conv2d", "sparse", dsp)
            enc = encode("sparse", w, layout=kern.layout)
            gap = conv_inplace("sparse", dsp, enc, in_c, out_c, False)[0].gap if in_place else -1
            out_n = in_h * in_w * out_c
            data = (_head("conv2d", "sparse", dsp, ints, gap, fold=kern.fold) + _arr(mult, "<i4")
                    + _arr(shift, "<i4") + _arr(x, "i1") + _arr(enc.decode(), "i1") + _arr(bias, "<i4")
                    + _arr(conv_bias(kern, w, bias, mult, shift, q), "<i4")
                    + _wcode(enc, compressed.scratch_bytes(kern, enc, False), out_n))
            cases.append((data, out_n, dict(shape=w.shape, delta_bits=enc.fields["delta_bits"], gap=gap)))
    assert {c[2]["delta_bits"] for c in cases} == {4, 8}
    _run(driver, cases, "sparse conv long rows" + (" (_dsp)" if dsp else ""))


@pytest.mark.usefixtures("arm_toolchain")
def test_kernels_build_for_cortex_m4(tmp_path):
    cmd = ["arm-none-eabi-gcc", "-std=c99", "-mcpu=cortex-m4", "-mthumb", "-O2", "-Wall", "-Wextra", "-Werror",
           f"-I{KERNELS}", "-c"] + [str(KERNELS / s) for s in BUILD_SOURCES]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert len(list(tmp_path.glob("*.o"))) == len(BUILD_SOURCES)


def test_kernels_build_with_conversion_warnings(tmp_path):
    """The kernels are also clean under -Wconversion -Wsign-conversion (stricter than the Makefile)."""
    if shutil.which("gcc") is None:
        pytest.skip("no host gcc")
    cmd = ["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-Wconversion", "-Wsign-conversion",
           f"-I{KERNELS}", "-c"] + [str(KERNELS / s) for s in BUILD_SOURCES]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
