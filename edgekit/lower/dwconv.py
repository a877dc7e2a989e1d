"""DEPTHWISE_CONV_2D -> ek_dwconv_s8 (and its variants).

On a core with the DSP extension a 3x3 layer with channel multiplier 1 and no dilation runs
ek_dwconv_s8_3x3_fold_dsp when every shift suits its one-multiply requantization, else
ek_dwconv_s8_3x3_dsp when its accumulators fit (ek_dwconv.h); int4 weights run
ek_dwconv_s8_w4_3x3_dsp (the nibbles unpacked per call into one of those two) when the channels
are a multiple of 4, else the portable ek_dwconv_s8_w4. dwconv_kernel is that choice, read by the
lowering and by the weight-format choice (edgekit.passes.weights, through choose_kernel).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit import formats
from edgekit.ir import Graph, Op
from edgekit.targets import Target
from edgekit.lower.base import (ArrayArg, ConstArray, InPlace, KernelCall, ScratchArg, TensorArg, choose_kernel, lowering,
                   nhwc, require_int8, unsupported)
from edgekit.lower.compressed import compressed_call
from edgekit.lower.conv import conv_call, conv_geometry, conv_weights_and_quant
from edgekit.lower.kernels import Kernel, format_kernel, kernel
from edgekit.lower.packing import dw_fold_shifts_ok, pack_dw3x3_filter, pack_dw3x3_fold, pack_dw3x3_fold_bias


@dataclass
class DwLayer:
    """A DEPTHWISE_CONV_2D layer as its lowering reads it."""
    params: dict
    filter: np.ndarray                  # [1][k_h][k_w][out_c]
    bias: ConstArray | None
    quant_arrays: list[ConstArray]      # mult, shift
    macs: int

    def quant(self, name: str) -> np.ndarray:
        return next(a.values for a in self.quant_arrays if a.name == name)

    def dsp_3x3(self, target: Target | None) -> bool:
        """3x3, channel multiplier 1, no dilation, on a DSP core: the 3x3 _dsp kernels' shape."""
        p = self.params
        return (target is not None and target.has_dsp and (p["k_h"], p["k_w"]) == (3, 3) and p["ch_mult"] == 1
                and (p["dil_h"], p["dil_w"]) == (1, 1))

    @property
    def fold_ok(self) -> bool:
        """ek_dwconv_s8_3x3_fold_dsp's one-multiply requantization takes every shift (2..23 bits)."""
        return dw_fold_shifts_ok(self.quant("shift"))

    @property
    def accumulator_fits(self) -> bool:
        """ek_dwconv_s8_3x3_dsp's short requantization needs |accumulator| < 2^30 (ek_dwconv.h)."""
        max_bias = int(np.abs(self.bias.values.astype(np.int64)).max()) if self.bias is not None else 0
        return max_bias + self.params["k_h"] * self.params["k_w"] * 255 * 128 < 2 ** 30

    @property
    def fold_inplace(self) -> tuple[InPlace, ...]:
        """In place: the 3x3 fold kernel walks output pixels row by row, channel groups in order,
        and reads the 3x3 taps of pixel (y, x) from input row s*y - pad_top on; as
        y*out_w <= s*y*in_w, the input it still has to read never lies below what it has written
        once the output starts in_c * (pad_top * in_w + pad_left + 1) bytes below the input (taps
        outside the image read the zero-point row stored with the weights, not the input)."""
        p = self.params
        return (InPlace(0, p["in_c"] * (p["pad_top"] * p["in_w"] + p["pad_left"] + 1)),)


def read_dwconv(graph: Graph, op: Op) -> DwLayer:
    require_int8(graph, op, op.inputs[0], op.outputs[0])
    in_h, in_w, in_c = nhwc(graph.t(op.inputs[0]).shape)
    out_h, out_w, out_c = nhwc(graph.t(op.outputs[0]).shape)
    w_shape = graph.t(op.inputs[1]).shape
    if len(w_shape) != 4 or w_shape[0] != 1 or w_shape[3] != out_c:
        raise unsupported(op, f"filter shape {list(w_shape)} is not [1, k_h, k_w, out_c]")
    if out_c % in_c:
        raise unsupported(op, f"{out_c} output channels is not a multiple of {in_c} input channels")
    k_h, k_w = int(w_shape[1]), int(w_shape[2])
    w, bias, q, arrays = conv_weights_and_quant(graph, op, out_c)
    geometry = conv_geometry(op, (in_h, in_w), (k_h, k_w), (out_h, out_w))
    params = dict(in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h, out_w=out_w, out_c=out_c,
                  ch_mult=out_c // in_c, k_h=k_h, k_w=k_w, **geometry, **q)
    return DwLayer(params=params, filter=w.data, bias=bias, quant_arrays=arrays,
                   macs=out_h * out_w * out_c * k_h * k_w)


def dwconv_kernel(layer: DwLayer, target: Target | None, fmt: str) -> Kernel:
    """The kernel a depthwise layer takes for weight format fmt (int8 or int4; see the module
    docstring)."""
    dsp_3x3 = layer.dsp_3x3(target)
    fold, short = dsp_3x3 and layer.fold_ok, dsp_3x3 and layer.accumulator_fits
    if fmt == "int4" and (fold or short) and layer.params["out_c"] % 4 == 0:
        return kernel("ek_dwconv_s8_w4_3x3_dsp")
    if fmt != "int8":
        return format_kernel("dwconv", fmt, dsp=False)
    if fold:
        return kernel("ek_dwconv_s8_3x3_fold_dsp")
    if short:
        return kernel("ek_dwconv_s8_3x3_dsp")
    return kernel("ek_dwconv_s8")


@choose_kernel("DEPTHWISE_CONV_2D")
def choose_dwconv(graph: Graph, op: Op, target: Target | None, fmt: str) -> Kernel:
    return dwconv_kernel(read_dwconv(graph, op), target, fmt)


def w4_3x3_call(layer: DwLayer, op: Op, fold: bool) -> KernelCall:
    """ek_dwconv_s8_w4_3x3_dsp: a layer ek_dwconv_s8_3x3_fold_dsp (fold) or ek_dwconv_s8_3x3_dsp
    takes, with int4 weights (C % 4 == 0, so the nibbles are exactly the layer's int4 bytes):
    pack_dw3x3_filter's int16 halves, one nibble each (formats int4, one row), unpacked into
    scratch at every call; the bias blocks of pack_dw3x3_fold_bias (fold), or the bias and the
    multipliers and shifts as ek_dwconv_s8_3x3_dsp takes them."""
    params, bias = layer.params, layer.bias
    c4 = -(-params["out_c"] // 4) * 4
    halves = pack_dw3x3_filter(layer.filter).view("<i2").astype(np.int8)   # the int16 halves' values
    enc = formats.encode("int4", halves.reshape(1, -1))
    if isinstance(enc, str):    # the weight-format pass chose int4 for these weights
        raise ValueError(f"int4 weights: {enc}")
    if fold:
        block = pack_dw3x3_fold_bias(layer.filter, None if bias is None else bias.values, layer.quant("mult"),
                                     layer.quant("shift"), params["input_offset"], params["output_offset"])
        dw, extra, bias_arg = {**params, "mult": 0, "shift": 0}, [ConstArray("bias", "int32_t", block)], "bias"
    else:
        dw, extra = params, ([bias] if bias is not None else []) + list(layer.quant_arrays)
        bias_arg = "bias" if bias is not None else None
    fields = {f"dw.{k}": v for k, v in dw.items()}
    fields.update({f"w.{k}": v for k, v in enc.fields.items()})
    return KernelCall(kernel="ek_dwconv_s8_w4_3x3_dsp", params=fields,
                      args=[TensorArg(op.inputs[0]), ArrayArg(bias_arg), TensorArg(op.outputs[0]), ScratchArg()],
                      arrays=list(enc.arrays) + extra, macs=layer.macs,
                      scratch_bytes=2 * halves.size + (c4 if fold else 0), inplace=layer.fold_inplace if fold else ())


@lowering("DEPTHWISE_CONV_2D")
def lower_dwconv(graph: Graph, op: Op, target: Target | None = None) -> KernelCall:
    layer = read_dwconv(graph, op)
    fmt = op.weights_format
    k = dwconv_kernel(layer, target, fmt)
    params, bias = layer.params, layer.bias
    if k.name == "ek_dwconv_s8_w4_3x3_dsp":
        return w4_3x3_call(layer, op, fold=layer.fold_ok)
    if fmt != "int8":
        return compressed_call(k, op, params, layer.filter.reshape(1, -1).astype(np.int8),
                               None if bias is None else bias.values, layer.quant_arrays, macs=layer.macs)
    args = [TensorArg(op.inputs[0]), ArrayArg("filter"), ArrayArg("bias" if bias else None), TensorArg(op.outputs[0])]
    if k.name == "ek_dwconv_s8_3x3_fold_dsp":
        filt_bytes, block = pack_dw3x3_fold(layer.filter, None if bias is None else bias.values, layer.quant("mult"),
                                            layer.quant("shift"), params["input_offset"], params["output_offset"])
        return KernelCall(kernel=k.name, params={**params, "mult": 0, "shift": 0},  # NULL: the bias block has them
                          args=args[:2] + [ArrayArg("bias")] + args[3:],
                          arrays=[ConstArray("filter", "int8_t", filt_bytes), ConstArray("bias", "int32_t", block)],
                          macs=layer.macs, inplace=layer.fold_inplace)
    if k.name == "ek_dwconv_s8_3x3_dsp":
        filt = ConstArray("filter", "int8_t", pack_dw3x3_filter(layer.filter))
        return KernelCall(kernel=k.name, params=params, args=args,
                          arrays=[filt] + ([bias] if bias else []) + layer.quant_arrays, macs=layer.macs)
    return conv_call(k.name, op, params, layer.filter, bias, layer.quant_arrays, macs=layer.macs)
