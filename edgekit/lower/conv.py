"""CONV_2D -> ek_conv2d_s8 (and its variants). Shared helpers for DEPTHWISE_CONV_2D (dwconv.py).

On a core with the DSP extension (target.has_dsp) a convolution lowers to one of the SMLAD GEMM
variants (firmware/kernels/ek_conv2d.h): ek_conv2d_s8_1x1_dsp for pointwise layers, otherwise
ek_conv2d_s8_dsp (im2col) when a patch fits EK_CONV2D_DSP_MAX_PATCH. Both fold the input offset into the bias
(edgekit.lower.packing.fold_input_offset) and take their arrays in the folded form (pack_conv_fold:
per-channel blocks for the one-multiply requantization, plain filter rows) whenever conv_fold_ok
accepts the layer, else in the pair form (interleave_pairs + mult/shift); the host and DSP-less
cores keep the portable ek_conv2d_s8. conv2d_kernel is that choice, read by the lowering and by
the weight-format choice (edgekit.passes.weights, through choose_kernel). Every variant takes a
scratch buffer after its output (ScratchArg; conv_scratch_bytes of the arena, planned live only
during the call, NULL when 0), so their working memory is in the memory plan and the RAM figures.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit.lower import quant
from edgekit.cdefs import define
from edgekit.ir import Graph, Op
from edgekit.targets import Target
from edgekit.lower.base import (ArrayArg, ArrayRef, ConstArray, InPlace, KernelCall, ScratchArg, TensorArg, choose_kernel, lowering,
                   nhwc, require_int8, unsupported)
from edgekit.lower.compressed import compressed_call
from edgekit.lower.kernels import Kernel, format_kernel, kernel
from edgekit.lower.packing import conv_fold_range_ok, fold_input_offset, interleave_pairs, pack_conv_fold


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
    mults, shifts = np.array(mults, dtype=np.int64), np.array(shifts, dtype=np.int64)
    channel_axis = 3 if op.kind == "DEPTHWISE_CONV_2D" else 0
    dead = ~np.moveaxis(np.asarray(w.data), channel_axis, 0).reshape(out_c, -1).any(axis=1)
    if dead.any():
        b = settle_dead_channels(dead, None if bias is None else bias.values, mults, shifts, out_zp, act_min, act_max)
        if b is not None:
            bias = ConstArray("bias", "int32_t", b)
    q = dict(input_offset=-in_zp, output_offset=out_zp, act_min=act_min, act_max=act_max,
             mult=ArrayRef("mult"), shift=ArrayRef("shift"))
    arrays = [ConstArray("mult", "int32_t", np.array(mults, dtype=np.int32)),
              ConstArray("shift", "int32_t", np.array(shifts, dtype=np.int32))]
    return w, bias, q, arrays


# The requantization a channel whose weights are all zero gets: M = 2^30 / 2^31 * 2^-4 = 1/32, in
# every kernel's shift range (EK_FOLD_SHIFT_*, EK_DW_FOLD_SHIFT_*).
DEAD_CHANNEL_MULT, DEAD_CHANNEL_SHIFT = 1 << 30, -4


def settle_dead_channels(dead: np.ndarray, bias: np.ndarray | None, mults: np.ndarray, shifts: np.ndarray,
                         out_zp: int, act_min: int, act_max: int) -> np.ndarray | None:
    """A channel whose weights are all zero (a pruned filter) outputs the same value for every
    input: its accumulator is its bias. The converter gives such a channel a tiny weight scale, so
    its bias and shift are extreme (shifts of -25 and beyond, biases near 2^30), which alone would
    keep a whole layer off the fast kernels' range rules. Rewrites those channels in place (mults,
    shifts) and returns the new bias (None when there is none and none is needed): multiplier
    DEAD_CHANNEL_MULT, shift DEAD_CHANNEL_SHIFT and bias 32 * c, where c is the channel's output
    minus the zero point, so that every rounding of the requantization (twice, as
    MultiplyByQuantizedMultiplier; or once) gives exactly c: the same output byte as before."""
    out = np.zeros(len(dead), np.int64) if bias is None else np.asarray(bias, np.int64).copy()
    for c in np.flatnonzero(dead):
        value = quant.requantize(int(out[c]), int(mults[c]), int(shifts[c])) + out_zp
        out[c] = 32 * (min(max(value, act_min), act_max) - out_zp)
        mults[c], shifts[c] = DEAD_CHANNEL_MULT, DEAD_CHANNEL_SHIFT
    if bias is None and not out.any():
        return None
    return out.astype(np.int32)


# Largest patch k_h*k_w*in_c of ek_conv2d_s8_dsp, and the most scratch one layer of the _dsp
# convolutions may ask for (a per-layer cap, ek_conv2d.h).
CONV_DSP_MAX_PATCH = define("EK_CONV2D_DSP_MAX_PATCH")
CONV_DSP_MAX_SCRATCH = define("EK_CONV2D_DSP_MAX_SCRATCH")


def conv_fold_ok(rows: np.ndarray, folded_bias: np.ndarray, in_c: int, pointwise: bool) -> bool:
    """Whether the int8 _dsp kernels can take a layer in the folded form (ek_conv2d.h): its range
    rule holds (conv_fold_range_ok: no accumulator reaches 2^30), and four split patches, plus one
    int8 patch when it cannot be split straight from the input (an im2col convolution with
    in_c % 4 != 0), fit the per-layer scratch cap. rows: [out_c][patch] int8 weights."""
    patch = rows.shape[1]
    return (conv_fold_range_ok(rows, folded_bias)
            and conv_scratch_bytes(patch, in_c, pointwise, folded=True) <= CONV_DSP_MAX_SCRATCH)


def conv_scratch_bytes(patch: int, in_c: int, pointwise: bool, folded: bool) -> int:
    """Scratch bytes of a _dsp convolution (the table in ek_conv2d.h). Folded form: four split
    patches (32 bytes per four values), plus one int8 patch to assemble when in_c % 4 != 0 (an
    im2col convolution). Pair form: two int8 patches for the im2col, none for the pointwise GEMM."""
    if folded:
        staged = not pointwise and in_c % 4 != 0
        return 32 * -(-patch // 4) + (patch if staged else 0)
    return 0 if pointwise else 2 * patch


def conv_call(name: str, op: Op, params: dict, weights: np.ndarray, bias, quant_arrays: list, macs: int,
              scratch_arg: bool = False) -> KernelCall:
    """The portable ek_conv2d_s8 / ek_dwconv_s8 call (weights in the op's own order). scratch_arg:
    end with a ScratchArg of 0 bytes (NULL), for ek_conv2d_s8, which shares its _dsp variants'
    signature; ek_dwconv_s8 has none."""
    arrays = [ConstArray("filter", "int8_t", np.asarray(weights).reshape(-1))] + ([bias] if bias else []) + quant_arrays
    args = [TensorArg(op.inputs[0]), ArrayArg("filter"), ArrayArg("bias" if bias else None), TensorArg(op.outputs[0])]
    if scratch_arg:
        args.append(ScratchArg())
    return KernelCall(kernel=name, params=params, args=args, arrays=arrays, macs=macs)


@dataclass
class ConvLayer:
    """A CONV_2D layer as its lowering reads it: the kernels' params (geometry and integer
    quantization), the weight rows [out_c][k_h*k_w*in_c] (OHWI), the bias and multipliers."""
    params: dict
    rows: np.ndarray
    bias: ConstArray | None
    quant_arrays: list[ConstArray]        # mult, shift
    macs: int

    @property
    def folded_bias(self) -> np.ndarray:
        """The bias with the input offset folded in (fold_input_offset), as the _dsp kernels take it."""
        return fold_input_offset(None if self.bias is None else self.bias.values, self.rows,
                                 self.params["input_offset"])

    @property
    def pointwise(self) -> bool:
        """A 1x1 filter, stride 1, no padding, same size in and out: ek_conv2d_s8_1x1_dsp's shape."""
        p = self.params
        return ((p["k_h"], p["k_w"], p["stride_h"], p["stride_w"], p["pad_top"], p["pad_left"]) == (1, 1, 1, 1, 0, 0)
                and (p["in_h"], p["in_w"]) == (p["out_h"], p["out_w"]))


def read_conv2d(graph: Graph, op: Op) -> ConvLayer:
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
    return ConvLayer(params=params, rows=w.data.reshape(out_c, -1).astype(np.int8), bias=bias,
                     quant_arrays=arrays, macs=out_h * out_w * out_c * k_h * k_w * in_c)


def conv2d_kernel(layer: ConvLayer, target: Target | None, fmt: str) -> Kernel:
    """The kernel a convolution takes for weight format fmt: a format's kernel, its _dsp variant on a
    DSP core, which takes only the folded form, for a layer within the folded form's range
    (conv_fold_range_ok), else the portable one; for int8 on a DSP core ek_conv2d_s8_1x1_dsp for
    pointwise layers, else ek_conv2d_s8_dsp when a patch fits EK_CONV2D_DSP_MAX_PATCH; else the
    portable ek_conv2d_s8."""
    dsp = target is not None and target.has_dsp
    if fmt != "int8":
        k = format_kernel("conv2d", fmt, dsp)
        if k.fold and not conv_fold_range_ok(layer.rows, layer.folded_bias):
            return format_kernel("conv2d", fmt, dsp=False)
        return k
    if dsp and layer.pointwise:
        return kernel("ek_conv2d_s8_1x1_dsp")
    if dsp and layer.rows.shape[1] <= CONV_DSP_MAX_PATCH:
        return kernel("ek_conv2d_s8_dsp")
    return kernel("ek_conv2d_s8")


@choose_kernel("CONV_2D")
def choose_conv2d(graph: Graph, op: Op, target: Target | None, fmt: str) -> Kernel:
    return conv2d_kernel(read_conv2d(graph, op), target, fmt)


@lowering("CONV_2D")
def lower_conv2d(graph: Graph, op: Op, target: Target | None = None) -> KernelCall:
    layer = read_conv2d(graph, op)
    fmt = op.weights_format
    k = conv2d_kernel(layer, target, fmt)
    params, rows, bias = layer.params, layer.rows, layer.bias
    if fmt != "int8":
        return compressed_call(k, op, params, rows, None if bias is None else bias.values, layer.quant_arrays,
                               macs=layer.macs)
    if not k.dsp:
        return conv_call(k.name, op, params, rows, bias, layer.quant_arrays, macs=layer.macs, scratch_arg=True)
    in_c, out_c = params["in_c"], params["out_c"]
    use_1x1 = k.name == "ek_conv2d_s8_1x1_dsp"
    folded = layer.folded_bias
    call_args = [TensorArg(op.inputs[0]), ArrayArg("filter"), ArrayArg("bias"), TensorArg(op.outputs[0]),
                 ScratchArg()]
    if conv_fold_ok(rows, folded, in_c, use_1x1):
        # Folded form (ek_conv2d.h): the multipliers live in the per-channel block, p->mult/shift NULL.
        # In place: ek_conv2d_s8_1x1_dsp splits all of a block's four input pixels into scratch
        # before it writes their outputs, so with out_c <= in_c the output may start at the input
        # (the scratch, live only during the call, overlaps neither).
        mults, shifts = (next(a.values for a in layer.quant_arrays if a.name == name) for name in ("mult", "shift"))
        filt, block = pack_conv_fold(rows, folded, mults, shifts, params["output_offset"])
        return KernelCall(kernel=k.name, params={**params, "mult": 0, "shift": 0}, args=call_args,
                          arrays=[ConstArray("filter", "int8_t", filt), ConstArray("bias", "int32_t", block)],
                          macs=layer.macs, inplace=(InPlace(0, 0),) if use_1x1 and out_c <= in_c else (),
                          scratch_bytes=conv_scratch_bytes(rows.shape[1], in_c, use_1x1, folded=True))
    dsp_arrays = [ConstArray("filter", "int8_t", interleave_pairs(rows)),
                  ConstArray("bias", "int32_t", folded)] + layer.quant_arrays
    # In place (edgekit.lower.base.InPlace): ek_conv2d_s8_1x1_dsp works on blocks of two pixels in
    # order; while it writes the outputs of pixels p and p+1 it reads only input pixels >= p. With
    # out_c <= in_c, every output byte written so far lies below the input still to be read once
    # the output starts 2 * in_c bytes below the input.
    inplace = (InPlace(0, 2 * in_c),) if use_1x1 and out_c <= in_c else ()
    return KernelCall(kernel=k.name, params=params, args=call_args, arrays=dsp_arrays, macs=layer.macs,
                      inplace=inplace, scratch_bytes=conv_scratch_bytes(rows.shape[1], in_c, use_1x1, folded=False))
