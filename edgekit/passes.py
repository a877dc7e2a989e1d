"""Small graph passes, each a function Graph -> Graph (in place), run in a fixed order by run_passes.

    strip_boundary_quantize   float input -> QUANTIZE / DEQUANTIZE -> float output become the
                              model's int8 input/output (the C API is int8 with scale/zero point)
    check_single_io           one input, one output, batch 1
    check_supported           every op has a lowering; otherwise name the op, the layer and the list
"""
from __future__ import annotations

from .errors import UnsupportedModelError
from .ir import Graph, short_name
from .ops import LOWERINGS


def strip_boundary_quantize(graph: Graph) -> Graph:
    consumers = graph.consumers()
    producers = graph.producers()
    new_inputs = []
    for t in graph.inputs:
        users = consumers.get(t, [])
        if graph.t(t).dtype == "float32" and len(users) == 1 and graph.ops[users[0]].kind == "QUANTIZE":
            q = graph.ops[users[0]]
            new_inputs.append(q.outputs[0])
            graph.meta["float_input"] = True
            q.kind = "_REMOVED"
        else:
            new_inputs.append(t)
    new_outputs = []
    for t in graph.outputs:
        p = producers.get(t)
        if graph.t(t).dtype == "float32" and p is not None and graph.ops[p].kind == "DEQUANTIZE":
            new_outputs.append(graph.ops[p].inputs[0])
            graph.meta["float_output"] = True
            graph.ops[p].kind = "_REMOVED"
        else:
            new_outputs.append(t)
    graph.ops = [op for op in graph.ops if op.kind != "_REMOVED"]
    graph.inputs, graph.outputs = new_inputs, new_outputs
    return graph


def check_single_io(graph: Graph) -> Graph:
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise UnsupportedModelError(f"the model has {len(graph.inputs)} inputs and {len(graph.outputs)} "
                                    "outputs; edgekit compiles models with one input and one output")
    for role, index in (("input", graph.inputs[0]), ("output", graph.outputs[0])):
        t = graph.t(index)
        if t.dtype != "int8" or t.scale is None:
            raise UnsupportedModelError(f"the model's {role} '{short_name(t.name)}' is {t.dtype}; export a "
                                        "full-integer model with int8 input and output")
        if t.shape and t.shape[0] != 1:
            raise UnsupportedModelError(f"the model's {role} has batch size {t.shape[0]}; "
                                        "edgekit compiles batch-1 models")
    if graph.inputs[0] == graph.outputs[0]:
        raise UnsupportedModelError("the model's output is its input: there is nothing to compile")
    return graph


def check_supported(graph: Graph) -> Graph:
    for op in graph.ops:
        if op.kind not in LOWERINGS:
            supported = ", ".join(sorted(LOWERINGS))
            raise UnsupportedModelError(f"layer {op.location} uses op {op.kind}, which edgekit cannot "
                                        f"compile; supported ops: {supported}")
    return graph


PASSES = (strip_boundary_quantize, check_single_io, check_supported)


def run_passes(graph: Graph) -> Graph:
    for p in PASSES:
        graph = p(graph)
    return graph
