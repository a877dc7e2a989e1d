"""ADD -> ek_add_s8; QUANTIZE (int8 -> int8), RELU, RELU6, RELU_N1_TO_1 -> ek_requant_s8."""
from __future__ import annotations

import numpy as np

from edgekit.lower import quant
from edgekit.ir import Graph, Op
from edgekit.targets import Target
from edgekit.lower.base import KernelCall, TensorArg, dims4, lowering, require_int8, unsupported

_ADD_LEFT_SHIFT = 20   # TFLite's headroom for int8 ADD


def broadcast_strides(in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> list[int]:
    """Element strides of a row-major input for each of the 4 output dims; 0 where it broadcasts."""
    ins, outs = dims4(in_shape), dims4(out_shape)
    strides, step = [0] * 4, 1
    for d in range(3, -1, -1):
        if ins[d] == outs[d]:
            strides[d] = step
        elif ins[d] != 1:
            raise ValueError(f"shape {list(in_shape)} does not broadcast to {list(out_shape)}")
        step *= ins[d]
    return strides


@lowering("ADD")
def lower_add(graph: Graph, op: Op, target: Target | None = None) -> KernelCall:
    a, b, out = (graph.t(i) for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    for t in (a, b):
        if t.is_const:
            raise unsupported(op, "adding a constant tensor is not supported yet")
    require_int8(graph, op, a.index, b.index, out.index)
    (s1, z1), (s2, z2), (so, zo) = a.qparams(), b.qparams(), out.qparams()
    f32 = np.float32
    twice_max = float(f32(2) * max(f32(s1), f32(s2)))
    m1, sh1 = quant.quantize_multiplier_lt1(float(f32(s1)) / twice_max)
    m2, sh2 = quant.quantize_multiplier_lt1(float(f32(s2)) / twice_max)
    mo, sho = quant.quantize_multiplier_lt1(twice_max / float(f32(1 << _ADD_LEFT_SHIFT) * f32(so)))
    act_min, act_max = quant.activation_range(op.options.get("activation", "NONE"), so, zo)
    try:
        strides1, strides2 = broadcast_strides(a.shape, out.shape), broadcast_strides(b.shape, out.shape)
    except ValueError as e:
        raise unsupported(op, str(e)) from None
    params = dict(out_dims=dims4(out.shape), in1_strides=strides1, in2_strides=strides2,
                  input1_offset=-z1, input2_offset=-z2, output_offset=zo, left_shift=_ADD_LEFT_SHIFT,
                  input1_mult=m1, input1_shift=sh1, input2_mult=m2, input2_shift=sh2,
                  output_mult=mo, output_shift=sho, act_min=act_min, act_max=act_max)
    # In place over an input of the output's shape: ek_add_s8 reads input[i] before it writes
    # output[i] and walks both in the same order (a broadcast input is re-read, so never).
    inplace = tuple(k for k, t in enumerate((a, b)) if tuple(t.shape) == tuple(out.shape))
    return KernelCall(kernel="ek_add_s8", params=params,
                      args=[TensorArg(a.index), TensorArg(b.index), TensorArg(out.index)],
                      macs=out.size, inplace=inplace)


_RELU_RANGES = {"RELU": (0.0, None), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}


@lowering("QUANTIZE", "RELU", "RELU6", "RELU_N1_TO_1")
def lower_requant(graph: Graph, op: Op, target: Target | None = None) -> KernelCall:
    inp, out = graph.t(op.inputs[0]), graph.t(op.outputs[0])
    if op.kind == "QUANTIZE" and inp.dtype != "int8":
        raise unsupported(op, f"QUANTIZE from {inp.dtype} inside the model is not supported "
                              "(only at the model input, or int8 -> int8)")
    require_int8(graph, op, inp.index, out.index)
    (si, zi), (so, zo) = inp.qparams(), out.qparams()
    mult, shift = quant.quantize_multiplier(float(np.float32(si)) / float(np.float32(so)))
    act_min, act_max = quant.INT8_MIN, quant.INT8_MAX
    if op.kind in _RELU_RANGES:
        lo, hi = _RELU_RANGES[op.kind]
        act_min = max(act_min, quant.quantize_value(lo, so, zo))
        if hi is not None:
            act_max = min(act_max, quant.quantize_value(hi, so, zo))
    params = dict(size=out.size, input_zero_point=zi, output_offset=zo, mult=mult, shift=shift,
                  act_min=act_min, act_max=act_max)
    # Elementwise, output[i] from input[i] only: may run in place.
    return KernelCall(kernel="ek_requant_s8", params=params,
                      args=[TensorArg(inp.index), TensorArg(out.index)], macs=out.size, inplace=(0,))
