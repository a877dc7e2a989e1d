"""DEPTHWISE_CONV_2D -> ek_dwconv_s8 (and its variants)."""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Op
from ..targets import Target
from .base import (ArrayArg, ConstArray, InPlace, KernelCall, ScratchArg, TensorArg, lowering, nhwc,
                   require_int8, unsupported)
from .compressed import compressed_call, weights_format
from .conv import conv_call, conv_geometry, conv_weights_and_quant


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


def pack_dw3x3_fold(filter_1hwo: np.ndarray, bias: np.ndarray | None, mults: np.ndarray,
                    shifts: np.ndarray, input_offset: int, output_offset: int) -> tuple[np.ndarray, np.ndarray]:
    """The filter and bias arrays of ek_dwconv_s8_3x3_fold_dsp (ek_dwconv.h).

    filter: pack_dw3x3_filter's bytes, then ceil(C/4)*4 bytes of the input zero point (the row that
    taps outside the image read; with the offset folded into the bias they then add nothing).
    bias: per group of 4 channels 16 int32: the 4 folded biases bias[c] + input_offset * sum_t w[t][c]
    (wrapping), the 4 multipliers M, the 4 words 2^(R-2) + output_offset * 2^(R-1) and the 4 R - 1,
    with R = -shift; channels past C get zeros and R = 2. Requires shifts in FOLD_SHIFTS."""
    taps = np.asarray(filter_1hwo, dtype=np.int64).reshape(9, -1)            # [tap][C]
    c = taps.shape[1]
    groups = -(-c // 4)
    shifts = np.asarray(shifts, dtype=np.int64)
    if not fold_shifts_ok(shifts):
        raise ValueError(f"ek_dwconv_s8_3x3_fold_dsp needs shifts in [{FOLD_SHIFTS[0]}, {FOLD_SHIFTS[1]}]")
    b = np.zeros(groups * 4, np.int64)
    b[:c] = (0 if bias is None else np.asarray(bias, np.int64)) + int(input_offset) * taps.sum(axis=0)
    r = np.full(groups * 4, 2, np.int64)
    r[:c] = -shifts
    m = np.zeros(groups * 4, np.int64)
    m[:c] = np.asarray(mults, np.int64)
    p_high = (np.int64(1) << (r - 2)) + int(output_offset) * (np.int64(1) << (r - 1))
    block = np.stack([b, m, p_high, r - 1]).reshape(4, groups, 4).transpose(1, 0, 2).reshape(-1)
    block = block.astype(np.uint64).astype(np.uint32).view(np.int32)          # wrap like the kernel
    zp = np.full(groups * 4, -int(input_offset), dtype=np.int8)
    return np.concatenate([pack_dw3x3_filter(filter_1hwo), zp]), block.copy()


# Shifts ek_dwconv_s8_3x3_fold_dsp's one-multiply requantization handles (right shifts of 2..23 bits).
FOLD_SHIFTS = (-23, -2)


def fold_shifts_ok(shifts: np.ndarray) -> bool:
    shifts = np.asarray(shifts)
    return bool(np.all((shifts >= FOLD_SHIFTS[0]) & (shifts <= FOLD_SHIFTS[1])))


def w4_3x3_call(op: Op, params: dict, filter_1hwo: np.ndarray, bias, arrays, macs: int, fold: bool,
                inplace) -> KernelCall:
    """ek_dwconv_s8_w4_3x3_dsp: a layer ek_dwconv_s8_3x3_fold_dsp (fold) or ek_dwconv_s8_3x3_dsp
    takes, with int4 weights (C % 4 == 0, so the nibbles are exactly the layer's int4 bytes):
    pack_dw3x3_filter's int16 halves, one nibble each (wformats int4, one row), unpacked into
    scratch at every call; the bias blocks of pack_dw3x3_fold (fold), or the bias and the
    multipliers and shifts as ek_dwconv_s8_3x3_dsp takes them."""
    from .. import wformats
    c4 = -(-params["out_c"] // 4) * 4
    halves = pack_dw3x3_filter(filter_1hwo).view("<i2").astype(np.int8)   # the int16 halves' values
    enc = wformats.encode("int4", halves.reshape(1, -1))
    if isinstance(enc, str):    # wselect chose int4 for these weights
        raise ValueError(f"int4 weights: {enc}")
    if fold:
        mults = next(a.values for a in arrays if a.name == "mult")
        shifts = next(a.values for a in arrays if a.name == "shift")
        _, block = pack_dw3x3_fold(filter_1hwo, None if bias is None else bias.values, mults, shifts,
                                   params["input_offset"], params["output_offset"])
        dw, extra, bias_arg = {**params, "mult": 0, "shift": 0}, [ConstArray("bias", "int32_t", block)], "bias"
    else:
        dw, extra = params, ([bias] if bias is not None else []) + list(arrays)
        bias_arg = "bias" if bias is not None else None
    fields = {f"dw.{k}": v for k, v in dw.items()}
    fields.update({f"w.{k}": v for k, v in enc.fields.items()})
    return KernelCall(kernel="ek_dwconv_s8_w4_3x3_dsp", header="ek_wcode.h",
                      sources=("ek_dwconv_s8_w4_3x3_dsp.c", "ek_dwconv_s8_3x3_fold_dsp.c", "ek_dwconv_s8_3x3_dsp.c"),
                      params_type="ek_dwconv_wc_params", params=fields,
                      args=[TensorArg(op.inputs[0]), ArrayArg(bias_arg), TensorArg(op.outputs[0]),
                            ScratchArg()],
                      arrays=list(enc.arrays) + extra, macs=macs,
                      scratch_bytes=2 * halves.size + (c4 if fold else 0), inplace=inplace if fold else ())


@lowering("DEPTHWISE_CONV_2D")
def lower_dwconv(graph: Graph, op: Op, target: Target | None = None) -> KernelCall:
    require_int8(graph, op, op.inputs[0], op.outputs[0])
    in_h, in_w, in_c = nhwc(graph.t(op.inputs[0]).shape)
    out_h, out_w, out_c = nhwc(graph.t(op.outputs[0]).shape)
    w_shape = graph.t(op.inputs[1]).shape
    if len(w_shape) != 4 or w_shape[0] != 1 or w_shape[3] != out_c:
        raise unsupported(op, f"filter shape {list(w_shape)} is not [1, k_h, k_w, out_c]")
    if out_c % in_c:
        raise unsupported(op, f"{out_c} output channels is not a multiple of {in_c} input channels")
    k_h, k_w = int(w_shape[1]), int(w_shape[2])
    ch_mult = out_c // in_c
    w, bias, q, arrays = conv_weights_and_quant(graph, op, out_c)
    geometry = conv_geometry(op, (in_h, in_w), (k_h, k_w), (out_h, out_w))
    params = dict(in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h, out_w=out_w, out_c=out_c,
                  ch_mult=ch_mult, k_h=k_h, k_w=k_w, **geometry, **q)
    macs = out_h * out_w * out_c * k_h * k_w
    dilation = (geometry["dil_h"], geometry["dil_w"])
    fmt = weights_format(op)
    # ek_dwconv_s8_3x3_fold_dsp's one-multiply requantization needs right shifts of 2..23 bits.
    shifts = next(a.values for a in arrays if a.name == "shift")
    use_3x3_fold = (target is not None and target.has_dsp and (k_h, k_w) == (3, 3) and ch_mult == 1
                    and dilation == (1, 1) and fold_shifts_ok(shifts))
    # In place: the kernel walks output pixels row by row, channel groups in order, and reads the
    # 3x3 taps of pixel (y, x) from input row s*y - pad_top on; as y*out_w <= s*y*in_w, the input
    # it still has to read never lies below what it has written once the output starts
    # in_c * (pad_top * in_w + pad_left + 1) bytes below the input (taps outside the image read
    # the zero-point row stored with the weights, not the input).
    fold_inplace = (InPlace(0, in_c * (params["pad_top"] * in_w + params["pad_left"] + 1)),)
    # ek_dwconv_s8_3x3_dsp's short requantization needs |accumulator| < 2^30 (ek_dwconv.h).
    max_bias = int(np.abs(bias.values.astype(np.int64)).max()) if bias is not None else 0
    accumulator_fits = max_bias + k_h * k_w * 255 * 128 < 2 ** 30
    use_3x3 = (target is not None and target.has_dsp and (k_h, k_w) == (3, 3) and ch_mult == 1
               and dilation == (1, 1) and accumulator_fits)
    if fmt == "int4" and (use_3x3_fold or use_3x3) and out_c % 4 == 0:
        return w4_3x3_call(op, params, w.data, bias, arrays, macs, use_3x3_fold, fold_inplace)
    if fmt != "int8":
        return compressed_call("dwconv", op, params, w.data.reshape(1, -1).astype(np.int8),
                               None if bias is None else bias.values, arrays, fmt,
                               macs=macs, target=target)

    if use_3x3_fold:
        mults = next(a.values for a in arrays if a.name == "mult")
        filt_bytes, block = pack_dw3x3_fold(w.data, None if bias is None else bias.values, mults, shifts,
                                            params["input_offset"], params["output_offset"])
        return KernelCall(kernel="ek_dwconv_s8_3x3_fold_dsp", header="ek_dwconv.h",
                          sources=("ek_dwconv_s8_3x3_fold_dsp.c",), params_type="ek_dwconv_params",
                          params={**params, "mult": 0, "shift": 0},      # NULL: the bias block has them
                          args=[TensorArg(op.inputs[0]), ArrayArg("filter"), ArrayArg("bias"),
                                TensorArg(op.outputs[0])],
                          arrays=[ConstArray("filter", "int8_t", filt_bytes),
                                  ConstArray("bias", "int32_t", block)], macs=macs, inplace=fold_inplace)
    if use_3x3:
        filt = ConstArray("filter", "int8_t", pack_dw3x3_filter(w.data))
        return KernelCall(kernel="ek_dwconv_s8_3x3_dsp", header="ek_dwconv.h",
                          sources=("ek_dwconv_s8_3x3_dsp.c",), params_type="ek_dwconv_params",
                          params=params,
                          args=[TensorArg(op.inputs[0]), ArrayArg("filter"),
                                ArrayArg("bias" if bias else None), TensorArg(op.outputs[0])],
                          arrays=[filt] + ([bias] if bias else []) + arrays, macs=macs)
    return conv_call("dwconv", op, params, w, bias, arrays, macs=macs)
