"""The compiler's pipeline on int8 TFLite bytes: import -> passes -> lowering + memory plan.

`edgekit export` (edgekit.export) writes its result out; edgekit's integer reference
(edgekit.run.intref) runs it. This module sits below both.
"""
from __future__ import annotations

from edgekit.frontend.tflite import load_tflite
from edgekit.lower.program import Program, lower
from edgekit.passes import Settings, run_passes
from edgekit.targets import Target


def compile_program(tflite: bytes, label: str | None = None, target: Target | None = None,
                    weights: str = "auto", optimize: str = "speed", huffman_decode: str = "layer",
                    exits: bool = False) -> Program:
    """Import, run the passes (edgekit.passes.PASSES: checks, each layer's weight format), lower
    (with `exits`: in the exit schedule's order, edgekit.lower.exits)."""
    graph = load_tflite(tflite, label=label)
    graph = run_passes(graph, Settings(target=target, weights=weights, optimize=optimize,
                                       huffman_decode=huffman_decode))
    return lower(graph, target, exits=exits)
