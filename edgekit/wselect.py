"""Pass: choose each layer's weight format (`edgekit export --weights ... --optimize ...`).

Every format in edgekit.wformats is a lossless encoding of the layer's int8 weights, so the
choice changes flash bytes and instructions, never an output byte. The pass records the
choice in op.options["weights_format"]; the lowerings (edgekit.ops.compressed) emit the
matching kernel. A format the user forces but a layer cannot take (too many distinct values
for a codebook, values outside [-8, 7] for int4, a depthwise layer and a codebook) falls back
to int8 for that layer, with the reason in the report.

auto picks per layer, among the formats the layer can take:
  --optimize size      the fewest flash bytes;
  --optimize speed     the fewest bytes among formats estimated no slower than int8
                       (the default: on dense layers that is int8, on very sparse layers the
                       sparse format, which is smaller and faster);
  --optimize balanced  the fewest bytes among formats estimated at most 2x int8's instructions.
The estimates (instructions per layer) come from COST, per-MAC / per-entry figures measured on
the emulated Cortex-M4 by benchmarks/format_costs.py; they rank formats, they are not promises.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import wformats
from .ir import Graph, Op
from .targets import Target

WEIGHT_MODES = ("auto", "int8") + wformats.FORMATS
OPTIMIZE_MODES = ("size", "speed", "balanced")
COMPRESSIBLE = ("CONV_2D", "FULLY_CONNECTED", "DEPTHWISE_CONV_2D")
DEPTHWISE_FORMATS = ("int8", "int4")
BALANCED_SLOWDOWN = 2.0

# Estimated instructions, per kernel set ("dsp": the _dsp kernels, Cortex-M4/M7; "portable": the
# portable C kernels) and op kind: per MAC for the dense formats (patches, requantization and loop
# overheads included); per stored entry (fillers included) and output pixel for sparse; for
# Huffman, huff_decode per weight per inference plus huff_mac per MAC on the decoded rows (a
# convolution's includes rebuilding its patches for every decoded block), and huff_books per
# weight when the code is over codebook indices (each mapped back through its channel's codebook).
# Measured by `.venv/bin/python benchmarks/format_costs.py` (every format on the MLPerf Tiny models
# and their tfmot variants, per layer, on the emulated Cortex-M4 with QEMU -icount: the _dsp and the
# portable kernels), whose summary prints this table; huff_books is the difference of whole-model
# instructions between index and value codes on the clustered FC autoencoder and ResNet-8 (2.2 and
# 2.4 per index-coded weight, rounded up). Short rows cost more per MAC than these means; they
# only rank a layer's formats against each other and int8.
COST = {
    ("dsp", "conv"): dict(int8=1.11, int4=1.38, lut4=2.22, lut8=2.21, sparse_entry=3.82, huff_decode=12.05,
                          huff_mac=1.51),
    ("dsp", "fc"): dict(int8=1.98, int4=2.21, lut4=4.70, lut8=4.81, sparse_entry=6.76, huff_decode=12.05,
                        huff_mac=1.98),
    ("dsp", "dwconv"): dict(int8=4.18, int4=8.09),
    # other depthwise shapes (not dw_3x3_dsp) run the portable kernels on a DSP core too
    ("dsp", "dwconv_other"): dict(int8=32.49, int4=13.62),
    ("portable", "conv"): dict(int8=8.56, int4=6.20, lut4=7.22, lut8=6.66, sparse_entry=11.58, huff_decode=9.23,
                               huff_mac=5.08),
    ("portable", "fc"): dict(int8=7.36, int4=5.95, lut4=6.87, lut8=6.35, sparse_entry=9.69, huff_decode=9.23,
                             huff_mac=7.36),
    ("portable", "dwconv"): dict(int8=32.49, int4=13.62),
}
HUFF_BOOKS_COST = 2.5


def dw_3x3_dsp(graph: Graph, op: Op) -> bool:
    """Whether a depthwise layer has the shape of the 3x3 _dsp kernels' int4 form
    (edgekit.ops.dwconv: 3x3, channel multiplier 1, no dilation, channels a multiple of 4), for
    which ("dsp", "dwconv") holds; other depthwise layers run int4 on the portable kernel."""
    w = graph.t(op.inputs[1]).shape
    in_c = graph.t(op.inputs[0]).shape[-1]
    dilated = int(op.options.get("dilationHFactor", 1)) != 1 or int(op.options.get("dilationWFactor", 1)) != 1
    return tuple(w[1:3]) == (3, 3) and w[3] == in_c and w[3] % 4 == 0 and not dilated
KINDS = {"CONV_2D": "conv", "FULLY_CONNECTED": "fc", "DEPTHWISE_CONV_2D": "dwconv"}


@dataclass
class LayerFormat:
    op: Op
    kind: str                 # op kind
    requested: str            # what --weights asked for ('auto', 'int8', 'lut4', ...)
    chosen: str               # the format used
    bytes: int                # flash bytes of the chosen encoding (weights only)
    int8_bytes: int           # the same weights as int8
    instructions: int         # estimated instructions of the layer in the chosen format
    int8_instructions: int
    note: str = ""            # why a forced format fell back to int8
    decode_instructions: int = 0   # Huffman: estimated decoding work per inference (in instructions)

    def as_dict(self) -> dict:
        return dict(format=self.chosen, requested=self.requested, weight_format_bytes=self.bytes,
                    int8_weight_bytes=self.int8_bytes, est_instructions=self.instructions,
                    est_int8_instructions=self.int8_instructions, est_decode_instructions=self.decode_instructions,
                    note=self.note)


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


def decode_instructions(fmt: str, enc, rows: np.ndarray, dsp: bool, kind: str = "fc") -> int:
    """Huffman's decoding work per inference (every weight is decoded once per inference, and
    mapped through its row's codebook when the code is over codebook indices)."""
    if fmt != "huffman":
        return 0
    per_weight = COST["dsp" if dsp else "portable", kind]["huff_decode"]
    per_weight += HUFF_BOOKS_COST if "book" in enc.fields else 0.0
    return int(rows.size * per_weight)


def estimate_instructions(fmt: str, enc, rows: np.ndarray, pixels: int, dsp: bool, kind: str) -> int:
    """The layer's estimated instructions per inference in format fmt (COST); kind: 'conv', 'fc'
    or 'dwconv'."""
    c = COST["dsp" if dsp else "portable", kind]
    macs = pixels * rows.size
    if fmt == "sparse":
        entries = int(enc.array("windex")[-1])     # stored entries, fillers included
        return int(pixels * entries * c["sparse_entry"])
    if fmt == "huffman":
        return int(decode_instructions(fmt, enc, rows, dsp, kind) + macs * c["huff_mac"])
    return int(macs * c[fmt])


HUFFMAN_DECODE = ("layer", "boot")


def choose_weight_formats(graph: Graph, mode: str = "auto", optimize: str = "speed",
                          target: Target | None = None, huffman_decode: str = "layer") -> list[LayerFormat]:
    """Choose and record each conv/FC/depthwise layer's format. huffman_decode 'boot': Huffman
    layers are decoded once at boot into RAM (the int8 kernel's speed, the int8 size in RAM)."""
    if mode not in WEIGHT_MODES:
        raise ValueError(f"unknown weights format {mode!r}; use one of {', '.join(WEIGHT_MODES)}")
    if optimize not in OPTIMIZE_MODES:
        raise ValueError(f"unknown --optimize {optimize!r}; use one of {', '.join(OPTIMIZE_MODES)}")
    if huffman_decode not in HUFFMAN_DECODE:
        raise ValueError(f"unknown --huffman-decode {huffman_decode!r}; use layer or boot")
    boot = huffman_decode == "boot"
    dsp = target is not None and target.has_dsp
    choices = []
    for op in graph.ops:
        if op.kind not in COMPRESSIBLE or len(op.inputs) < 2 or graph.t(op.inputs[1]).data is None:
            continue
        if graph.t(op.inputs[1]).dtype not in ("int8", "int4"):
            continue     # the lowering refuses it with its own message
        rows = weight_rows(graph, op)
        pixels = output_pixels(graph, op)
        kind = KINDS[op.kind]
        if kind == "dwconv" and dsp and not dw_3x3_dsp(graph, op):
            kind = "dwconv_other"     # int4 takes the portable ek_dwconv_s8_w4 there
        allowed = ("int8",) + wformats.FORMATS
        if op.kind == "DEPTHWISE_CONV_2D":   # no depthwise kernel reads codebooks, sparse or Huffman
            allowed = DEPTHWISE_FORMATS + (("huffman",) if boot else ())
        candidates: dict[str, tuple[int, int, object]] = {}
        reasons: dict[str, str] = {}
        for fmt in ("int8",) + wformats.FORMATS:
            if fmt not in allowed:
                reasons[fmt] = f"{op.kind.lower()} layers take {' or '.join(allowed)} weights"
                continue
            if mode not in ("auto", fmt) and fmt != "int8":
                continue
            # Decoded at boot, the kernel's int8 array is coded whole, as one row of values.
            coded = rows.reshape(1, -1) if boot and fmt == "huffman" else rows
            enc = None if fmt == "int8" else wformats.encode(fmt, coded)
            if isinstance(enc, str):
                reasons[fmt] = enc
                continue
            nbytes = rows.size if fmt == "int8" else enc.nbytes
            at_boot = boot and fmt == "huffman"      # then the layer runs its int8 kernel
            cost = estimate_instructions("int8" if at_boot else fmt, enc, rows, pixels, dsp, kind)
            candidates[fmt] = (nbytes, cost, enc)
        int8_bytes, int8_cost, _ = candidates["int8"]
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
        op.options["weights_format"] = chosen
        op.options["weights_boot"] = boot and chosen == "huffman"
        if op.options["weights_boot"]:
            note = (note + "; " if note else "") + f"decoded at boot into {rows.size:,} bytes of RAM"
        nbytes, cost, enc = candidates[chosen]
        if chosen == "huffman" and "book" in enc.fields:
            note = (note + "; " if note else "") + (f"codes the indices of {enc.rows} per-channel codebooks of "
                                                    f"{enc.fields['levels']} values")
        choices.append(LayerFormat(op=op, kind=op.kind, requested=mode, chosen=chosen, bytes=nbytes,
                                   int8_bytes=int8_bytes, instructions=cost, int8_instructions=int8_cost,
                                   note=note, decode_instructions=0 if op.options["weights_boot"]
                                   else decode_instructions(chosen, enc, rows, dsp, kind)))
    return choices

