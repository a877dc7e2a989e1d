"""DEPTHWISE_CONV_2D -> ek_dwconv_s8 (and its variants)."""
from __future__ import annotations

from ..ir import Graph, Op
from ..targets import Target
from .base import KernelCall, lowering, nhwc, require_int8, unsupported
from .conv import conv_call, conv_geometry, conv_weights_and_quant


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
    w, bias, q, arrays = conv_weights_and_quant(graph, op, out_c)
    params = dict(in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_h, out_w=out_w, out_c=out_c,
                  ch_mult=out_c // in_c, k_h=k_h, k_w=k_w,
                  **conv_geometry(op, (in_h, in_w), (k_h, k_w), (out_h, out_w)), **q)
    return conv_call("dwconv", op, params, w, bias, arrays, macs=out_h * out_w * out_c * k_h * k_w)
