"""Ops that move bytes without arithmetic: RESHAPE/SQUEEZE/EXPAND_DIMS (aliases), PAD, CONCATENATION."""
from __future__ import annotations

import numpy as np

from edgekit.ir import Graph, Op
from edgekit.targets import Target
from edgekit.lower.base import (Alias, ArrayRef, ConstArray, KernelCall, TensorArg, TensorListArg, dims4, lowering,
                   require_int8, unsupported)


@lowering("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
def lower_reshape(graph: Graph, op: Op, target: Target | None = None) -> Alias:
    inp, out = graph.t(op.inputs[0]), graph.t(op.outputs[0])
    if inp.size != out.size:
        raise unsupported(op, f"it changes the element count ({inp.size} -> {out.size})")
    if inp.dtype != out.dtype or inp.qparams() != out.qparams():
        raise unsupported(op, "its input and output quantization differ")
    return Alias(source=inp.index, target=out.index)


@lowering("PAD", "PADV2")
def lower_pad(graph: Graph, op: Op, target: Target | None = None) -> KernelCall:
    inp, out = graph.t(op.inputs[0]), graph.t(op.outputs[0])
    require_int8(graph, op, inp.index, out.index)
    pads = graph.t(op.inputs[1])
    if pads.data is None:
        raise unsupported(op, "its paddings are not constant")
    pads = pads.data.reshape(-1, 2).astype(np.int64)
    if pads.shape[0] != len(inp.shape) or np.any(pads < 0):
        raise unsupported(op, "its paddings do not match the input rank or are negative")
    pad_value = out.qparams()[1]
    if op.kind == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
        value = graph.t(op.inputs[2])
        if value.data is None:
            raise unsupported(op, "its pad value is not constant")
        pad_value = int(value.data.reshape(-1)[0])
    before = [0] * (4 - len(inp.shape)) + [int(p) for p in pads[:, 0]]
    params = dict(in_dims=dims4(inp.shape), out_dims=dims4(out.shape), before=before, pad_value=pad_value)
    return KernelCall(kernel="ek_pad_s8", params=params,
                      args=[TensorArg(inp.index), TensorArg(out.index)])


@lowering("CONCATENATION")
def lower_concat(graph: Graph, op: Op, target: Target | None = None) -> KernelCall:
    out = graph.t(op.outputs[0])
    require_int8(graph, op, *op.inputs, out.index)
    if op.options.get("activation", "NONE") != "NONE":
        raise unsupported(op, "a fused activation on CONCATENATION is not supported")
    rank = len(out.shape)
    axis = int(op.options.get("axis", 0))
    axis = axis + rank if axis < 0 else axis
    for i in op.inputs:
        t = graph.t(i)
        if t.is_const:
            raise unsupported(op, "concatenating a constant tensor is not supported")
        if t.qparams() != out.qparams():
            raise unsupported(op, "its inputs' quantization differs from its output's "
                                  "(TFLite int8 requires them equal)")
    sizes = [int(graph.t(i).shape[axis]) for i in op.inputs]
    params = dict(n_inputs=len(op.inputs), outer=int(np.prod(out.shape[:axis], dtype=np.int64)),
                  inner=int(np.prod(out.shape[axis + 1:], dtype=np.int64)), out_axis=int(out.shape[axis]),
                  sizes=ArrayRef("sizes"))
    return KernelCall(kernel="ek_concat_s8", params=params,
                      args=[TensorListArg(tuple(op.inputs)), TensorArg(out.index)],
                      arrays=[ConstArray("sizes", "int32_t", np.array(sizes, dtype=np.int32))])
