"""SOFTMAX, LOGISTIC, TANH and MEAN -> ek_softmax_s8 / ek_lut_s8 (table lookup) / ek_mean_s8.
The float work lives in edgekit.lower.nonlinear (pure functions of shapes and scales)."""
from __future__ import annotations

from edgekit.ir import Graph, Op
from edgekit.targets import Target
from edgekit.lower import nonlinear
from edgekit.lower.base import KernelCall, TensorArg, lowering, require_int8, unsupported


def _io(graph: Graph, op: Op):
    require_int8(graph, op, op.inputs[0], op.outputs[0])
    inp, out = graph.t(op.inputs[0]), graph.t(op.outputs[0])
    return inp, out, inp.qparams(), out.qparams()


def _call(name: str, op: Op, params: dict, macs: int, inplace: tuple[int, ...] = ()) -> KernelCall:
    return KernelCall(kernel=name, params=params,
                      args=[TensorArg(op.inputs[0]), TensorArg(op.outputs[0])], macs=macs,
                      inplace=inplace)


@lowering("SOFTMAX")
def lower_softmax(graph: Graph, op: Op, target: Target | None = None) -> KernelCall:
    inp, out, (si, zi), (so, zo) = _io(graph, op)
    params = nonlinear.softmax_params(inp.shape, si, zi, so, zo, float(op.options.get("beta", 1.0)))
    return _call("ek_softmax_s8", op, params, inp.size)


def _require_litert_semantics(graph: Graph, op: Op) -> None:
    """ek_lut_s8 reproduces LiteRT's float table; TFLite Micro (the reference for models with
    INT4 weights) computes LOGISTIC/TANH differently, so edgekit cannot match it there."""
    if graph.meta.get("reference") == "tflm":
        raise unsupported(op, "in a model with INT4 weights (defined by TFLite Micro) edgekit matches "
                              "LOGISTIC/TANH only as LiteRT computes them; quantize the weights to int8")


@lowering("LOGISTIC")
def lower_logistic(graph: Graph, op: Op, target: Target | None = None) -> KernelCall:
    _require_litert_semantics(graph, op)
    inp, out, (si, zi), (so, zo) = _io(graph, op)
    # ek_lut_s8 is elementwise (output[i] = table[input[i]]): it may run in place.
    return _call("ek_lut_s8", op, nonlinear.logistic_params(inp.size, si, zi, so, zo), 0, inplace=(0,))


@lowering("TANH")
def lower_tanh(graph: Graph, op: Op, target: Target | None = None) -> KernelCall:
    _require_litert_semantics(graph, op)
    inp, out, (si, zi), (so, zo) = _io(graph, op)
    return _call("ek_lut_s8", op, nonlinear.tanh_params(inp.size, si, zi, so, zo), 0, inplace=(0,))


@lowering("MEAN")
def lower_mean(graph: Graph, op: Op, target: Target | None = None) -> KernelCall:
    inp, out, (si, zi), (so, zo) = _io(graph, op)
    axes_t = graph.t(op.inputs[1])
    if axes_t.data is None:
        raise unsupported(op, "its axes are not constant")
    params = nonlinear.mean_params(inp.shape, [int(a) for a in axes_t.data.reshape(-1)],
                                   bool(op.options.get("keepDims", False)), si, zi, so, zo)
    # Averaging the rows of a {rows, cols} matrix (GlobalAveragePooling2D): the column kernel,
    # where the target takes the optimized kernels (as ek_avgpool_s8_dsp).
    rows = params["ndims"] == 2 and params["reduce_mask"] == 1 and target is not None and target.has_dsp
    return _call("ek_mean_s8_rows" if rows else "ek_mean_s8", op, params, inp.size)
