"""The graph passes: every decision edgekit makes about a graph before lowering, each a function
(graph, settings) -> graph (in place), run in this order by run_passes.

    strip_boundary_quantize   float input -> QUANTIZE / DEQUANTIZE -> float output become the
                              model's int8 input/outputs (the C API is int8 with scale/zero point)
    check_io                  one input, one or more int8 outputs, batch 1, no output is the input
    separate_repeated_outputs an output listed twice gets a tensor of its own (copied at the end)
    check_supported           every op has a lowering; otherwise name the op, the layer and the list
    choose_weights            each conv / FC / depthwise layer's weight format (edgekit.passes.weights), in
                              op.notes.weights, from settings.weights / optimize / huffman_decode

Settings carries what the export was asked for (target, --weights, --optimize, --huffman-decode);
passes that do not need it ignore it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from edgekit.errors import UnsupportedModelError
from edgekit.ir import Graph, Op, short_name
from edgekit.lower import LOWERINGS
from edgekit.targets import Target
from edgekit.passes.weights import choose_weight_formats


@dataclass(frozen=True)
class Settings:
    """What an export asks of the passes."""
    target: Target | None = None       # None: portable kernels only
    weights: str = "int8"              # --weights (export passes its own, "auto" by default)
    optimize: str = "speed"            # --optimize
    huffman_decode: str = "layer"      # --huffman-decode


def strip_boundary_quantize(graph: Graph, settings: Settings | None = None) -> Graph:
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
    new_outputs, float_outputs, dequantizes = [], [], []
    for t in graph.outputs:
        p = producers.get(t)
        dequantized = graph.t(t).dtype == "float32" and p is not None and graph.ops[p].kind == "DEQUANTIZE"
        new_outputs.append(graph.ops[p].inputs[0] if dequantized else t)
        float_outputs.append(dequantized)
        dequantizes += [p] if dequantized else []
    for p in dequantizes:
        graph.ops[p].kind = "_REMOVED"
    graph.meta["float_outputs"] = float_outputs     # per output: float (DEQUANTIZE) in the file
    graph.ops = [op for op in graph.ops if op.kind != "_REMOVED"]
    graph.inputs, graph.outputs = new_inputs, new_outputs
    return graph


def output_role(graph: Graph, k: int) -> str:
    """How messages name output k: 'output' when it is the only one, else 'output k'."""
    return "output" if len(graph.outputs) == 1 else f"output {k}"


def check_io(graph: Graph, settings: Settings | None = None) -> Graph:
    if len(graph.inputs) != 1:
        raise UnsupportedModelError(f"the model has {len(graph.inputs)} inputs; edgekit compiles models "
                                    "with one input")
    if not graph.outputs:
        raise UnsupportedModelError("the model has no outputs: there is nothing to compile")
    roles = [("input", graph.inputs[0])] + [(output_role(graph, k), t) for k, t in enumerate(graph.outputs)]
    for role, index in roles:
        t = graph.t(index)
        if t.dtype != "int8" or t.scale is None:
            raise UnsupportedModelError(f"the model's {role} '{short_name(t.name)}' is {t.dtype}; export a "
                                        "full-integer model with int8 input and output")
        if t.shape and t.shape[0] != 1:
            raise UnsupportedModelError(f"the model's {role} has batch size {t.shape[0]}; "
                                        "edgekit compiles batch-1 models")
        if role != "input" and t.is_const:
            raise UnsupportedModelError(f"the model's {role} '{short_name(t.name)}' is a constant: "
                                        "there is nothing to compute")
    for k, t in enumerate(graph.outputs):
        if t == graph.inputs[0]:
            raise UnsupportedModelError(f"the model's {output_role(graph, k)} is its input: "
                                        "there is nothing to compile")
    return graph


def separate_repeated_outputs(graph: Graph, settings: Settings | None = None) -> Graph:
    """An output tensor listed again as a later output gets a tensor of its own for that place,
    written by a RESHAPE of the first: lowering (edgekit.lower.program.lower) copies the bytes, since
    two outputs are two places in the caller's output buffer."""
    seen: set[int] = set()
    for k, t in enumerate(graph.outputs):
        if t in seen:
            copy = replace(graph.t(t), index=len(graph.tensors), name=f"{graph.t(t).name} (output {k})")
            graph.tensors.append(copy)
            graph.ops.append(Op(kind="RESHAPE", inputs=[t], outputs=[copy.index], name=copy.name))
            graph.outputs[k] = copy.index
        seen.add(t)
    return graph


def check_supported(graph: Graph, settings: Settings | None = None) -> Graph:
    for op in graph.ops:
        if op.kind not in LOWERINGS:
            supported = ", ".join(sorted(LOWERINGS))
            raise UnsupportedModelError(f"layer {op.location} uses op {op.kind}, which edgekit cannot "
                                        f"compile; supported ops: {supported}")
    return graph


def choose_weights(graph: Graph, settings: Settings | None = None) -> Graph:
    s = settings or Settings()
    choose_weight_formats(graph, s.weights, s.optimize, s.target, s.huffman_decode)
    return graph


PASSES = (strip_boundary_quantize, check_io, separate_repeated_outputs, check_supported, choose_weights)


def run_passes(graph: Graph, settings: Settings | None = None) -> Graph:
    """Every pass in order. Without settings: the portable target and int8 weights (what the
    integer reference and the tests of single passes use)."""
    settings = settings or Settings()
    for p in PASSES:
        graph = p(graph, settings)
    return graph
