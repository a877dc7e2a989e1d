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
the emulated Cortex-M4 by benchmarks/compression.py; they rank formats, they are not promises.
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

# Estimated instructions: per MAC for dense formats, per stored entry (fillers included) and
# output pixel for sparse, and the Huffman decode per weight per inference on top of its dense
# compute (huff_mac). Measured as the instructions of one kernel call in QEMU under -icount (a
# bare-metal firmware timing each call with the board timer, 5 instructions per tick) on four
# layers: FC 640->128 and 128->128, a 1x1 convolution 64->64 on 25x5 pixels, a 3x3 convolution
# 16->32 on 12x12; random weights each format can hold (uniform int4, 16 levels per channel for
# lut4, Laplace for lut8 and huffman, 80 % zeros for sparse); the mean over the four layers.
# Each figure includes its kernel's requantization and loop overheads, so per entry is larger
# for short rows. The "dsp" sparse figure was re-measured when ek_conv2d_s8_sparse_dsp began
# computing four output pixels per pass, on the pruned MLPerf Tiny layers (per entry and output
# pixel): FC 640->128 5.0, FC 128->128 7.3, KWS's 1x1 64->64 3.9, ResNet-8's 3x3 16->32 3.4 and
# 16->16 4.4 (patches included); 5.0 is their mean (4.8) rounded up.
#   "dsp":      Cortex-M4 (mps2-an386), the _dsp kernels (int8: ek_fc_s8_dsp, ek_conv2d_s8_1x1_dsp,
#               ek_conv2d_s8_dsp; the formats: ek_*_s8_<w>_dsp).
#   "portable": Cortex-M3 (mps2-an385), the portable kernels (ek_conv2d_s8, ek_fc_s8, ek_*_s8_<w>).
# huff_decode and huff_mac are solved from the FC 128->128 layer (each weight used once) and the
# 1x1 convolution (each weight used 125 times). huff_books (a Huffman code over codebook indices:
# mapping each decoded index through its row's codebook, per weight) is the difference of whole-
# model instructions between index and value codes on the clustered FC autoencoder and ResNet-8
# (2.2 and 2.4 per index-coded weight on the M4, rounded up; the portable kernels run the same C
# loop). patch (building a conv patch, per value) is the earlier estimate, not re-measured.
COST = {
    "dsp": dict(int8=2.0, int4=2.25, lut4=4.5, lut8=4.6, sparse_entry=5.0, huff_mac=2.7,
                huff_decode=14.0, huff_books=2.5, patch=2.0),
    "portable": dict(int8=7.6, int4=6.1, lut4=7.1, lut8=6.6, sparse_entry=10.8, huff_mac=5.4,
                     huff_decode=13.7, huff_books=2.5, patch=2.0),
}


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


def decode_instructions(fmt: str, enc, rows: np.ndarray, dsp: bool) -> int:
    """Huffman's decoding work per inference (every weight is decoded once per inference, and
    mapped through its row's codebook when the code is over codebook indices)."""
    if fmt != "huffman":
        return 0
    c = COST["dsp" if dsp else "portable"]
    per_weight = c["huff_decode"] + (c["huff_books"] if "book" in enc.fields else 0.0)
    return int(rows.size * per_weight)


def estimate_instructions(fmt: str, enc, rows: np.ndarray, pixels: int, dsp: bool,
                          patch: bool) -> int:
    c = COST["dsp" if dsp else "portable"]
    n_rows, k = rows.shape
    macs = pixels * n_rows * k
    patch_cost = pixels * k * c["patch"] if patch else 0
    if fmt == "int8":
        return int(macs * c["int8"])
    if fmt == "sparse":
        entries = int(enc.array("windex")[-1])     # stored entries, fillers included
        return int(pixels * entries * c["sparse_entry"] + patch_cost)
    if fmt == "huffman":
        blocks = -(-n_rows // max(1, int(enc.fields.get("block_rows", n_rows))))
        return int(decode_instructions(fmt, enc, rows, dsp) + macs * c["huff_mac"] + patch_cost * blocks)
    return int(macs * c[fmt] + patch_cost)


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
        w_shape = graph.t(op.inputs[1]).shape    # a 1x1 filter never pads
        patch = op.kind == "CONV_2D" and wformats.conv_needs_patch(int(w_shape[1]), int(w_shape[2]), 0, 0)
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
            cost = estimate_instructions("int8" if at_boot else fmt, enc, rows, pixels, dsp, patch)
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
                                   else decode_instructions(chosen, enc, rows, dsp)))
    return choices

