"""Weight and bias arrays in the layouts the int8 _dsp kernels read, computed at export time (the
Python side of firmware/kernels/ek_conv2d.h, ek_dwconv.h and ek_dot_s8_dsp.h). Pure numpy: the
lowerings (conv.py, dwconv.py, fc.py, compressed.py) and the tests share these; the weight
formats' own layouts are edgekit.formats'."""
from __future__ import annotations

import numpy as np

from edgekit.cdefs import define
from edgekit.formats import interleave_pairs  # noqa: F401  (the pair layout, shared with the formats)
from edgekit.lower.quant import INT8_MAX, INT8_MIN, requantize

# Shifts the conv folded form requantizes with one SMMLAR (right shifts of 1..23 bits, ek_dot_s8_dsp.h's
# ek_fold_requantize); channels with other shifts keep ek_requantize inside the same kernel.
CONV_FOLD_SHIFTS = (define("EK_FOLD_SHIFT_MIN"), define("EK_FOLD_SHIFT_MAX"))
# Shifts ek_dwconv_s8_3x3_fold_dsp's one-multiply requantization handles (right shifts of 2..23 bits).
DW_FOLD_SHIFTS = (define("EK_DW_FOLD_SHIFT_MIN"), define("EK_DW_FOLD_SHIFT_MAX"))


def fold_input_offset(bias: np.ndarray | None, rows: np.ndarray, input_offset: int) -> np.ndarray:
    """bias[o] + input_offset * sum(rows[o]) as int32 (wrapping like the kernels' accumulators),
    so a _dsp kernel's inner loop adds in*w only. rows: [out][n] int8 weights."""
    sums = rows.astype(np.int64).sum(axis=1)
    b = np.zeros(rows.shape[0], np.int64) if bias is None else bias.astype(np.int64)
    return (b + int(input_offset) * sums).astype(np.uint64).astype(np.uint32).view(np.int32)


def conv_fold_range_ok(rows: np.ndarray, folded_bias: np.ndarray) -> bool:
    """The folded form's range rule (ek_conv2d.h): no accumulator reaches 2^30, i.e. |folded bias|
    + patch * 2^14 < 2^30 (each product |x * w| <= 2^14), so the doubled accumulator the one-SMMLAR
    requantization takes is an int32. A channel whose weights are all zero does not count: its
    block is a constant (pack_conv_fold_blocks). rows: [out_c][patch] int8 weights. A layer gets
    the folded form only when this holds: edgekit.lower.conv.conv_fold_ok (the int8 _dsp
    convolutions, which also cap their scratch) and conv2d_kernel (the compressed _dsp
    convolutions, which take no other form) decide with it."""
    live = rows.any(axis=1)
    max_bias = int(np.abs(folded_bias.astype(np.int64)[live]).max()) if live.any() else 0
    return max_bias + rows.shape[1] * 2 ** 14 < 2 ** 30


def pack_conv_fold_blocks(rows: np.ndarray, folded_bias: np.ndarray, mults: np.ndarray, shifts: np.ndarray,
                          output_offset: int) -> np.ndarray:
    """The conv folded form's per-channel requantization blocks (ek_conv2d.h), 4 int32 per channel:
    {2 * folded_bias, M, 2^(R-1) + output_offset * 2^R, R} with R = -shift for shifts in
    CONV_FOLD_SHIFTS, else {2 * folded_bias, M, shift, 0} (the kernels' ek_requantize path).

    A channel whose weights are all zero (a pruned row) gives every input the same output, its
    requantized bias y = clamp(requantize(folded_bias) + output_offset) to int8, whatever the
    bias (pruning leaves some at 2^30, past the range): its block is {0, 0, 2y + 1, 1}, which the
    one-SMMLAR requantization turns into y (M = 0: (2y + 1) >> 1). rows: [out_c][patch] int8
    weights, of a layer conv_fold_range_ok accepts. The int8 _dsp convolutions take the blocks
    with pack_conv_fold's padded filter, the compressed _dsp convolutions with their encoded
    weights."""
    shifts = np.asarray(shifts, np.int64)
    fold = (shifts >= CONV_FOLD_SHIFTS[0]) & (shifts <= CONV_FOLD_SHIFTS[1])
    r = np.where(fold, -shifts, 0)
    k = np.where(fold, (np.int64(1) << r) // 2 + int(output_offset) * (np.int64(1) << r), shifts)
    block = np.stack([2 * folded_bias.astype(np.int64), np.asarray(mults, np.int64), k, r], axis=1)
    for o in np.flatnonzero(~rows.any(axis=1)):
        y = requantize(int(folded_bias[o]), int(mults[o]), int(shifts[o])) + int(output_offset)
        block[o] = [0, 0, 2 * min(max(y, INT8_MIN), INT8_MAX) + 1, 1]
    assert np.all((block >= -2 ** 31) & (block < 2 ** 31)), "pack_conv_fold_blocks: a block word leaves int32"
    return block.reshape(-1).astype(np.int32)


def pack_conv_fold(rows: np.ndarray, folded_bias: np.ndarray, mults: np.ndarray, shifts: np.ndarray,
                   output_offset: int) -> tuple[np.ndarray, np.ndarray]:
    """The filter and bias arrays of the conv folded form (ek_conv2d.h), for a layer
    edgekit.lower.conv.conv_fold_ok accepts.

    filter: the rows [out_c][patch], each padded with zeros to a multiple of 4. bias: the
    per-channel blocks of pack_conv_fold_blocks."""
    out_c, patch = rows.shape
    filt = np.zeros((out_c, -(-patch // 4) * 4), np.int8)
    filt[:, :patch] = rows
    return filt.reshape(-1), pack_conv_fold_blocks(rows, folded_bias, mults, shifts, output_offset)


def pack_dw3x3_filter(filter_1hwo: np.ndarray) -> np.ndarray:
    """The 3x3 filter [1][3][3][C] in ek_dwconv_s8_3x3_dsp's layout (ek_dwconv.h), as int8 bytes.

    Channels in groups of 4 (the last group padded with zero weights); per group and tap
    t = ky*3 + kx two little-endian words of int16 halves: {w[t][c], w[t][c+2]} and
    {w[t][c+1], w[t][c+3]}, ready for SMLABB / SMLATT on the SXTAB16-split input."""
    taps = np.asarray(filter_1hwo, dtype=np.int16).reshape(9, -1)            # [tap][C]
    groups = -(-taps.shape[1] // 4)
    padded = np.zeros((9, groups * 4), dtype=np.int16)
    padded[:, :taps.shape[1]] = taps
    quads = padded.reshape(9, groups, 4).transpose(1, 0, 2)                 # [group][tap][4]
    halves = quads[:, :, [0, 2, 1, 3]]                                      # words {c, c+2}, {c+1, c+3}
    return halves.astype("<i2").reshape(-1).view(np.int8).copy()


def dw_fold_shifts_ok(shifts: np.ndarray) -> bool:
    """Whether ek_dwconv_s8_3x3_fold_dsp's one-multiply requantization takes every shift."""
    shifts = np.asarray(shifts)
    return bool(np.all((shifts >= DW_FOLD_SHIFTS[0]) & (shifts <= DW_FOLD_SHIFTS[1])))


def pack_dw3x3_fold_bias(filter_1hwo: np.ndarray, bias: np.ndarray | None, mults: np.ndarray,
                         shifts: np.ndarray, input_offset: int, output_offset: int) -> np.ndarray:
    """The bias array of ek_dwconv_s8_3x3_fold_dsp (ek_dwconv.h): per group of 4 channels 16
    int32: the 4 folded biases bias[c] + input_offset * sum_t w[t][c] (wrapping), the 4
    multipliers M, the 4 words 2^(R-2) + output_offset * 2^(R-1) and the 4 R - 1, with R = -shift;
    channels past C get zeros and R = 2. Requires dw_fold_shifts_ok(shifts)."""
    taps = np.asarray(filter_1hwo, dtype=np.int64).reshape(9, -1)            # [tap][C]
    c = taps.shape[1]
    groups = -(-c // 4)
    shifts = np.asarray(shifts, dtype=np.int64)
    if not dw_fold_shifts_ok(shifts):
        raise ValueError(f"ek_dwconv_s8_3x3_fold_dsp needs shifts in [{DW_FOLD_SHIFTS[0]}, {DW_FOLD_SHIFTS[1]}]")
    b = np.zeros(groups * 4, np.int64)
    b[:c] = (0 if bias is None else np.asarray(bias, np.int64)) + int(input_offset) * taps.sum(axis=0)
    r = np.full(groups * 4, 2, np.int64)
    r[:c] = -shifts
    m = np.zeros(groups * 4, np.int64)
    m[:c] = np.asarray(mults, np.int64)
    p_high = (np.int64(1) << (r - 2)) + int(output_offset) * (np.int64(1) << (r - 1))
    block = np.stack([b, m, p_high, r - 1]).reshape(4, groups, 4).transpose(1, 0, 2).reshape(-1)
    return block.astype(np.uint64).astype(np.uint32).view(np.int32).copy()       # wrap like the kernel


def pack_dw3x3_fold(filter_1hwo: np.ndarray, bias: np.ndarray | None, mults: np.ndarray,
                    shifts: np.ndarray, input_offset: int, output_offset: int) -> tuple[np.ndarray, np.ndarray]:
    """The filter and bias arrays of ek_dwconv_s8_3x3_fold_dsp (ek_dwconv.h). filter:
    pack_dw3x3_filter's bytes, then ceil(C/4)*4 bytes of the input zero point (the row that taps
    outside the image read; with the offset folded into the bias they then add nothing); bias:
    pack_dw3x3_fold_bias."""
    c = np.asarray(filter_1hwo).reshape(9, -1).shape[1]
    zp = np.full(-(-c // 4) * 4, -int(input_offset), dtype=np.int8)
    block = pack_dw3x3_fold_bias(filter_1hwo, bias, mults, shifts, input_offset, output_offset)
    return np.concatenate([pack_dw3x3_filter(filter_1hwo), zp]), block
