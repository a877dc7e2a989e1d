"""CONV_2D -> ek_conv2d_s8 (and its variants). Shared helpers for DEPTHWISE_CONV_2D (dwconv.py).

On a core with the DSP extension (target.has_dsp) a convolution lowers to one of the SMLAD GEMM
variants (firmware/kernels/ek_conv2d.h): ek_conv2d_s8_1x1_dsp for pointwise layers, otherwise
ek_conv2d_s8_dsp (im2col) when a patch fits its buffer. Both fold the input offset into the bias
(fold_input_offset, shared with fc.py) and take their arrays in the folded form (pack_conv_fold:
per-channel blocks for the one-multiply requantization, plain filter rows) whenever conv_fold_ok
accepts the layer, else in the pair form (interleave_pairs + mult/shift); the host and DSP-less
cores keep the portable ek_conv2d_s8.
"""
from __future__ import annotations

import numpy as np

from .. import quant
from ..ir import Graph, Op
from ..targets import Target
from .compressed import compressed_call, weights_format
from .base import (ArrayArg, ArrayRef, ConstArray, InPlace, KernelCall, TensorArg, lowering, nhwc,
                   require_int8, unsupported)


def conv_geometry(op: Op, in_hw: tuple[int, int], k_hw: tuple[int, int], out_hw: tuple[int, int]) -> dict:
    o = op.options
    stride = (int(o.get("strideH", 1)), int(o.get("strideW", 1)))
    dil = (int(o.get("dilationHFactor", 1)), int(o.get("dilationWFactor", 1)))
    padding = o.get("padding", "VALID")
    for axis in range(2):
        expect = quant.conv_output_size(in_hw[axis], k_hw[axis], stride[axis], dil[axis], padding)
        if expect != out_hw[axis]:
            raise unsupported(op, f"output size {out_hw[axis]} does not follow from input {in_hw[axis]}, "
                                  f"filter {k_hw[axis]}, stride {stride[axis]}, padding {padding}")
    pads = [quant.same_padding(in_hw[a], k_hw[a], stride[a], dil[a], out_hw[a]) if padding == "SAME" else 0
            for a in range(2)]
    return dict(stride_h=stride[0], stride_w=stride[1], dil_h=dil[0], dil_w=dil[1],
                pad_top=pads[0], pad_left=pads[1])


def conv_weights_and_quant(graph: Graph, op: Op, out_c: int):
    inp, w, out = graph.t(op.inputs[0]), graph.t(op.inputs[1]), graph.t(op.outputs[0])
    if w.data is None:
        raise unsupported(op, "its weights are not constant")
    if w.dtype not in ("int8", "int4"):
        raise unsupported(op, f"its weights are {w.dtype}; int8 and int4 weights are supported")
    if w.zero_point is not None and np.any(w.zero_point != 0):
        raise unsupported(op, "its weights have a non-zero zero point (TFLite int8 weights are symmetric)")
    in_scale, in_zp = inp.qparams()
    out_scale, out_zp = out.qparams()
    mults, shifts = quant.per_channel_multipliers(in_scale, w.scale, out_scale, out_c)
    act_min, act_max = quant.activation_range(op.options.get("activation", "NONE"), out_scale, out_zp)
    bias = None
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        b = graph.t(op.inputs[2])
        if b.data is None or b.dtype != "int32":
            raise unsupported(op, f"its bias is {b.dtype}{'' if b.data is not None else ' and not constant'}; "
                                  "a constant int32 bias is supported")
        bias = ConstArray("bias", "int32_t", b.data.astype(np.int32).reshape(-1))
    q = dict(input_offset=-in_zp, output_offset=out_zp, act_min=act_min, act_max=act_max,
             mult=ArrayRef("mult"), shift=ArrayRef("shift"))
    arrays = [ConstArray("mult", "int32_t", np.array(mults, dtype=np.int32)),
              ConstArray("shift", "int32_t", np.array(shifts, dtype=np.int32))]
    return w, bias, q, arrays


# Largest patch k_h*k_w*in_c of ek_conv2d_s8_dsp: EK_CONV2D_DSP_MAX_PATCH in ek_conv2d.h.
CONV_DSP_MAX_PATCH = 1024


def fold_input_offset(bias: np.ndarray | None, rows: np.ndarray, input_offset: int) -> np.ndarray:
    """bias[o] + input_offset * sum(rows[o]) as int32 (wrapping like the kernels' accumulators),
    so a _dsp kernel's inner loop adds in*w only. rows: [out][n] int8 weights."""
    sums = rows.astype(np.int64).sum(axis=1)
    b = np.zeros(rows.shape[0], np.int64) if bias is None else bias.astype(np.int64)
    return (b + int(input_offset) * sums).astype(np.uint64).astype(np.uint32).view(np.int32)


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


# The _dsp convolutions' static buffer: EK_CONV2D_DSP_BUF_BYTES in ek_conv2d.h.
CONV_DSP_BUF_BYTES = 4608
# Shifts the folded form requantizes with one SMMLAR (right shifts of 1..23 bits, ek_dot_s8_dsp.h's
# ek_fold_requantize); channels with other shifts keep ek_requantize inside the same kernel.
CONV_FOLD_SHIFTS = (-23, -1)


def conv_fold_ok(rows: np.ndarray, folded_bias: np.ndarray, in_c: int, pointwise: bool) -> bool:
    """Whether the _dsp kernels can take a layer in the folded form (ek_conv2d.h): no accumulator
    reaches 2^30 (|folded bias| + patch * 2^14 < 2^30, so the doubled one is an int32), and four
    split patches, plus one int8 patch when it cannot be split straight from the input (an im2col
    convolution with in_c % 4 != 0), fit the buffer. rows: [out_c][patch] int8 weights."""
    patch = rows.shape[1]
    max_bias = int(np.abs(folded_bias.astype(np.int64)).max()) if folded_bias.size else 0
    return max_bias + patch * 2 ** 14 < 2 ** 30 and fold_buffer_bytes(patch, in_c, pointwise) <= CONV_DSP_BUF_BYTES


def fold_buffer_bytes(patch: int, in_c: int, pointwise: bool) -> int:
    """Bytes of EK_CONV2D_DSP_BUF_BYTES the folded form uses: four split patches (32 bytes per
    four values), plus one int8 patch to assemble when in_c % 4 != 0 (an im2col convolution)."""
    staged = not pointwise and in_c % 4 != 0
    return 32 * -(-patch // 4) + (patch if staged else 0)


def pack_conv_fold(rows: np.ndarray, folded_bias: np.ndarray, mults: np.ndarray, shifts: np.ndarray,
                   output_offset: int) -> tuple[np.ndarray, np.ndarray]:
    """The filter and bias arrays of the folded form (ek_conv2d.h), for a layer conv_fold_ok accepts.

    filter: the rows [out_c][patch], each padded with zeros to a multiple of 4. bias: per channel 4 int32
    {2 * folded_bias, M, 2^(R-1) + output_offset * 2^R, R} with R = -shift for shifts in
    CONV_FOLD_SHIFTS, else {2 * folded_bias, M, shift, 0} (the kernel's ek_requantize path)."""
    shifts = np.asarray(shifts, np.int64)
    fold = (shifts >= CONV_FOLD_SHIFTS[0]) & (shifts <= CONV_FOLD_SHIFTS[1])
    r = np.where(fold, -shifts, 0)
    k = np.where(fold, (np.int64(1) << r) // 2 + int(output_offset) * (np.int64(1) << r), shifts)
    block = np.stack([2 * folded_bias.astype(np.int64), np.asarray(mults, np.int64), k, r], axis=1).reshape(-1)
    assert np.all((block >= -2 ** 31) & (block < 2 ** 31)), "pack_conv_fold: a block word leaves int32"
    out_c, patch = rows.shape
    filt = np.zeros((out_c, -(-patch // 4) * 4), np.int8)
    filt[:, :patch] = rows
    return filt.reshape(-1), block.astype(np.int32)


def conv_call(name: str, op: Op, params: dict, w, bias, quant_arrays: list, macs: int) -> KernelCall:
    arrays = [ConstArray("filter", "int8_t", w.data.reshape(-1))] + ([bias] if bias else []) + quant_arrays
    return KernelCall(kernel=f"ek_{name}_s8", header=f"ek_{name}.h", sources=(f"ek_{name}_s8.c",),
                      params_type=f"ek_{name}_params", params=params,
                      args=[TensorArg(op.inputs[0]), ArrayArg("filter"), ArrayArg("bias" if bias else None),
                            TensorArg(op.outputs[0])],
                      arrays=arrays, macs=macs)


@lowering("CONV_2D")
def lower_conv2d(graph: Graph, op: Op, target: Target | None = None) -> KernelCall:
    require_int8(graph, op, op.inputs[0], op.outputs[0])
    in_h, in_w, in_c = nhwc(graph.t(op.inputs[0]).shape)
    out_h, out_w, out_c = nhwc(graph.t(op.outputs[0]).shape)
    w_shape = graph.t(op.inputs[1]).shape
    if len(w_shape) != 4 or w_shape[0] != out_c:
        raise unsupported(op, f"filter shape {list(w_shape)} is not [out_c, k_h, k_w, in_c]")
    k_h, k_w, w_in_c = int(w_shape[1]), int(w_shape[2]), int(w_shape[3])
    if w_in_c != in_c:
        raise unsupported(op, f"grouped convolution ({in_c} input channels, filter depth {w_in_c}) "
                              "is not supported")
    w, bias, q, arrays = conv_weights_and_quant(graph, op, out_c)
    geometry = conv_geometry(op, (in_h, in_w), (k_h, k_w), (out_h, out_w))
    params = dict(in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h, out_w=out_w, out_c=out_c, k_h=k_h, k_w=k_w,
                  **geometry, **q)
    macs = out_h * out_w * out_c * k_h * k_w * in_c
    fmt = weights_format(op)
    if fmt != "int8":
        return compressed_call("conv2d", op, params, w.data.reshape(out_c, -1).astype(np.int8),
                               None if bias is None else bias.values, arrays, fmt,
                               macs=macs, target=target)
    dsp = target is not None and target.has_dsp
    pointwise = ((k_h, k_w) == (1, 1) and (geometry["stride_h"], geometry["stride_w"]) == (1, 1)
                 and (geometry["pad_top"], geometry["pad_left"]) == (0, 0) and (in_h, in_w) == (out_h, out_w))
    patch_fits = k_h * k_w * in_c <= CONV_DSP_MAX_PATCH
    use_1x1 = dsp and pointwise
    use_im2col = dsp and not pointwise and patch_fits
    if not (use_1x1 or use_im2col):
        return conv_call("conv2d", op, params, w, bias, arrays, macs=macs)
    rows = w.data.reshape(out_c, -1)
    folded = fold_input_offset(None if bias is None else bias.values, rows, q["input_offset"])
    kernel, sources = (("ek_conv2d_s8_1x1_dsp", ("ek_conv2d_s8_1x1_dsp.c",)) if use_1x1 else
                       ("ek_conv2d_s8_dsp", ("ek_conv2d_s8_dsp.c", "ek_conv2d_s8_1x1_dsp.c")))
    call_args = [TensorArg(op.inputs[0]), ArrayArg("filter"), ArrayArg("bias"), TensorArg(op.outputs[0])]
    if conv_fold_ok(rows, folded, in_c, use_1x1):
        # Folded form (ek_conv2d.h): the multipliers live in the per-channel block, p->mult/shift NULL.
        # In place: ek_conv2d_s8_1x1_dsp splits all of a block's four input pixels into its buffer
        # before it writes their outputs, so with out_c <= in_c the output may start at the input.
        mults, shifts = (next(a.values for a in arrays if a.name == name) for name in ("mult", "shift"))
        filt, block = pack_conv_fold(rows, folded, mults, shifts, q["output_offset"])
        need = fold_buffer_bytes(rows.shape[1], in_c, use_1x1)
        return KernelCall(kernel=kernel, header="ek_conv2d.h", sources=sources, params_type="ek_conv2d_params",
                          params={**params, "mult": 0, "shift": 0}, args=call_args,
                          arrays=[ConstArray("filter", "int8_t", filt), ConstArray("bias", "int32_t", block)],
                          macs=macs, inplace=(InPlace(0, 0),) if use_1x1 and out_c <= in_c else (),
                          defines={"EK_CONV2D_DSP_BUF_BYTES": need})
    dsp_arrays = [ConstArray("filter", "int8_t", interleave_pairs(rows)),
                  ConstArray("bias", "int32_t", folded)] + arrays
    # In place (edgekit.ops.base.InPlace): ek_conv2d_s8_1x1_dsp works on blocks of two pixels in
    # order; while it writes the outputs of pixels p and p+1 it reads only input pixels >= p. With
    # out_c <= in_c, every output byte written so far lies below the input still to be read once
    # the output starts 2 * in_c bytes below the input.
    inplace = (InPlace(0, 2 * in_c),) if use_1x1 and out_c <= in_c else ()
    # The pair form's im2col (ek_conv2d_s8_dsp) holds two patches in the buffer.
    need = 0 if use_1x1 else 2 * rows.shape[1]
    return KernelCall(kernel=kernel, header="ek_conv2d.h", sources=sources, params_type="ek_conv2d_params",
                      params=params, args=call_args, arrays=dsp_arrays, macs=macs, inplace=inplace,
                      defines={"EK_CONV2D_DSP_BUF_BYTES": need})
