"""Pass: choose each layer's weight format (`edgekit export --weights ... --optimize ...`).

Every format in edgekit.formats is a lossless encoding of the layer's int8 weights, so the
choice changes flash bytes and instructions, never an output byte. The pass records each
choice in op.notes.weights (edgekit.ir.WeightsChoice); the lowerings emit the matching kernel.
A format the user forces but a layer cannot take (too many distinct values for a codebook,
values outside [-8, 7] for int4, a depthwise layer and a codebook) falls back to int8 for that
layer, with the reason in the report.

auto picks per layer, among the formats the layer can take:
  --optimize size      the fewest flash bytes;
  --optimize speed     the fewest bytes among formats estimated no slower than int8
                       (the default: on dense layers that is int8, on very sparse layers the
                       sparse format, which is smaller and faster);
  --optimize balanced  the fewest bytes among formats estimated at most 2x int8's instructions.
The estimates (instructions per layer) are the costs of the kernels the lowering emits for each
format: the pass asks the op's kernel choice (edgekit.lower.base.KERNEL_CHOICES, the very function
its lowering calls) which kernel a format gets on this target and shape, and prices the layer with
that kernel's registry cost (edgekit.lower.kernels: per-MAC / per-entry figures measured on the
emulated Cortex-M4 by benchmarks/format_costs.py). They rank formats, they are not promises. A
format the op has no kernel for is not a candidate.
"""
from __future__ import annotations

import numpy as np

from edgekit import formats
from edgekit.errors import EdgekitError
from edgekit.ir import Graph, Op, WeightsChoice
from edgekit.lower.base import KERNEL_CHOICES
from edgekit.lower.kernels import Kernel
from edgekit.targets import Target

WEIGHT_MODES = ("auto", "int8") + formats.FORMATS
OPTIMIZE_MODES = ("size", "speed", "balanced")
COMPRESSIBLE = ("CONV_2D", "FULLY_CONNECTED", "DEPTHWISE_CONV_2D")
BALANCED_SLOWDOWN = 2.0


def weight_rows(graph: Graph, op: Op) -> np.ndarray:
    """The layer's weights as the matrix the kernels read: [out][K] int8 (conv OHWI rows, FC
    rows); a depthwise filter [1, k_h, k_w, C] is one row."""
    w = graph.t(op.inputs[1])
    data = np.asarray(w.data).astype(np.int8)
    if op.kind == "DEPTHWISE_CONV_2D":
        return data.reshape(1, -1)
    return data.reshape(int(w.shape[0]), -1)


def output_pixels(graph: Graph, op: Op) -> int:
    """How many times each weight row is used per inference (output pixels or batch rows)."""
    out = graph.t(op.outputs[0])
    if op.kind == "FULLY_CONNECTED":
        return max(1, out.size // int(graph.t(op.inputs[1]).shape[0]))
    return int(np.prod(out.shape[1:3])) if len(out.shape) == 4 else 1


def estimate(k: Kernel, enc, rows: np.ndarray, pixels: int) -> tuple[int, int]:
    """The layer's estimated instructions per inference on kernel k (its registry cost) with the
    weights `rows` in k's format (enc: their encoding, None for int8), and the Huffman decoding
    share of them."""
    indexed = enc is not None and "book" in enc.fields
    entries = int(enc.array("windex")[-1]) if k.weights == "sparse" else 0    # stored entries, fillers too
    total = k.cost.estimate(macs=pixels * rows.size, weights=rows.size, rows=rows.shape[0], pixels=pixels,
                            entries=entries, indexed=indexed)
    return total, int(rows.size * k.cost.decode_per_weight(indexed))


def layer_kernels(graph: Graph, op: Op, target: Target | None, boot: bool) -> dict[str, Kernel]:
    """format -> the kernel the op's lowering emits for it on this target (the formats it has a
    kernel for); Huffman decoded at boot runs the int8 kernel."""
    out: dict[str, Kernel] = {}
    for fmt in ("int8",) + formats.FORMATS:
        try:
            out[fmt] = KERNEL_CHOICES[op.kind](graph, op, target, "int8" if boot and fmt == "huffman" else fmt)
        except (ValueError, KeyError, IndexError, EdgekitError):
            continue
    return out


HUFFMAN_DECODE = ("layer", "boot")


def choose_weight_formats(graph: Graph, mode: str = "auto", optimize: str = "speed",
                          target: Target | None = None, huffman_decode: str = "layer") -> list[WeightsChoice]:
    """Choose each conv/FC/depthwise layer's format and record it in op.notes.weights (also
    returned, in op order). huffman_decode 'boot': Huffman layers are decoded once at boot into
    RAM (the int8 kernel's speed, the int8 size in RAM)."""
    if mode not in WEIGHT_MODES:
        raise ValueError(f"unknown weights format {mode!r}; use one of {', '.join(WEIGHT_MODES)}")
    if optimize not in OPTIMIZE_MODES:
        raise ValueError(f"unknown --optimize {optimize!r}; use one of {', '.join(OPTIMIZE_MODES)}")
    if huffman_decode not in HUFFMAN_DECODE:
        raise ValueError(f"unknown --huffman-decode {huffman_decode!r}; use layer or boot")
    boot = huffman_decode == "boot"
    choices = []
    for op in graph.ops:
        if op.kind not in COMPRESSIBLE or len(op.inputs) < 2 or graph.t(op.inputs[1]).data is None:
            continue
        if graph.t(op.inputs[1]).dtype not in ("int8", "int4"):
            continue     # the lowering refuses it with its own message
        rows = weight_rows(graph, op)
        pixels = output_pixels(graph, op)
        kernels = layer_kernels(graph, op, target, boot)
        if "int8" not in kernels:
            continue     # the lowering refuses the layer with its own message
        candidates: dict[str, tuple[int, int, object, int]] = {}
        reasons: dict[str, str] = {}
        for fmt in ("int8",) + formats.FORMATS:
            if fmt not in kernels:
                reasons[fmt] = f"{op.kind.lower()} layers take {' or '.join(kernels)} weights"
                continue
            if mode not in ("auto", fmt) and fmt != "int8":
                continue
            k = kernels[fmt]
            at_boot = boot and fmt == "huffman"      # decoded at boot, the layer runs its int8 kernel
            # Decoded at boot, the kernel's int8 array is coded whole, as one row of values.
            coded = rows.reshape(1, -1) if at_boot else rows
            enc = None if fmt == "int8" else formats.encode(fmt, coded)
            if isinstance(enc, str):
                reasons[fmt] = enc
                continue
            nbytes = rows.size if fmt == "int8" else enc.nbytes
            cost, decode = estimate(k, None if at_boot else enc, rows, pixels)
            candidates[fmt] = (nbytes, cost, enc, decode)
        int8_bytes, int8_cost, _, _ = candidates["int8"]
        note = ""
        if mode == "auto":
            limit = {"size": float("inf"), "speed": int8_cost,
                     "balanced": BALANCED_SLOWDOWN * int8_cost}[optimize]
            fast_enough = {f: v for f, v in candidates.items() if v[1] <= limit or f == "int8"}
            chosen = min(fast_enough, key=lambda f: (fast_enough[f][0], fast_enough[f][1]))
        elif mode in candidates:
            chosen = mode
        else:
            chosen = "int8"
            if mode != "int8":
                note = f"{mode} not possible: {reasons.get(mode, 'not applicable')}; int8 used"
        boot_decoded = boot and chosen == "huffman"
        if boot_decoded:
            note = (note + "; " if note else "") + f"decoded at boot into {rows.size:,} bytes of RAM"
        nbytes, cost, enc, decode = candidates[chosen]
        if chosen == "huffman" and "book" in enc.fields:
            note = (note + "; " if note else "") + (f"codes the indices of {enc.rows} per-channel codebooks of "
                                                    f"{enc.fields['levels']} values")
        op.notes.weights = WeightsChoice(format=chosen, boot=boot_decoded, requested=mode, weight_format_bytes=nbytes,
                                         int8_weight_bytes=int8_bytes, est_instructions=cost,
                                         est_int8_instructions=int8_cost, est_decode_instructions=decode, note=note)
        choices.append(op.notes.weights)
    return choices
