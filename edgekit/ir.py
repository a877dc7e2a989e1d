"""edgekit's intermediate representation: a flat list of tensors and ops in execution order.

The importers (edgekit.frontend) build a Graph; the passes (edgekit.passes) rewrite it; the
op lowering (edgekit.lower) turns each Op into a kernel call; the planner (edgekit.plan)
places the activation tensors in one arena; the emitter (edgekit.emit.codegen) writes C.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def short_name(name: str, limit: int = 60) -> str:
    """A readable, bounded form of a TFLite tensor/op name (its first ';'-separated part).
    Names come from model files: use this only in messages and reports, never in C code."""
    first = name.split(";")[0]
    return first if len(first) <= limit else "..." + first[-(limit - 3):]


@dataclass
class Tensor:
    index: int
    name: str                      # as found in the model file: untrusted, never emitted raw
    shape: tuple[int, ...]
    dtype: str                     # numpy dtype name: 'int8', 'int32', 'float32', 'int4' ...
    scale: np.ndarray | None = None        # float32 [n] (n = 1 per-tensor or channels)
    zero_point: np.ndarray | None = None   # int64 [n]
    quant_dim: int = 0
    data: np.ndarray | None = None         # constant tensors (weights, bias, shapes)

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize if self.dtype != "int4" else (self.size + 1) // 2

    def qparams(self) -> tuple[float, int]:
        """Per-tensor (scale, zero point) as TFLite stores them (scale is a float32 value)."""
        if self.scale is None or len(self.scale) == 0:
            raise ValueError(f"tensor {self.name!r} is not quantized")
        return float(np.float32(self.scale[0])), int(self.zero_point[0])


@dataclass
class WeightsChoice:
    """edgekit.passes.weights's decision for a conv / FC / depthwise layer, and what it estimated."""
    format: str = "int8"           # the format the layer's weights are stored in ('int8', 'int4', ...)
    boot: bool = False             # Huffman decoded once at boot into RAM (the int8 kernel runs)
    requested: str = "auto"        # what --weights asked for
    weight_format_bytes: int = 0   # flash bytes of the chosen encoding (weights only)
    int8_weight_bytes: int = 0     # the same weights as int8
    est_instructions: int = 0      # estimated instructions of the layer, chosen format / int8
    est_int8_instructions: int = 0
    est_decode_instructions: int = 0   # Huffman: decoding work per inference
    note: str = ""                 # why a forced format fell back to int8, how a code is built

    def as_report(self) -> dict:
        """The layer's "weights" entry in report.json."""
        return dict(format=self.format, requested=self.requested, weight_format_bytes=self.weight_format_bytes,
                    int8_weight_bytes=self.int8_weight_bytes, est_instructions=self.est_instructions,
                    est_int8_instructions=self.est_int8_instructions,
                    est_decode_instructions=self.est_decode_instructions, note=self.note)


@dataclass
class Annotations:
    """edgekit's own decisions about an op, each written by one pass (edgekit.passes.PASSES) and
    read by the lowering and the report; TFLite's options stay in Op.options."""
    weights: WeightsChoice | None = None       # edgekit.passes.weights (conv / FC / depthwise layers)


@dataclass
class Op:
    kind: str                      # TFLite builtin name, e.g. 'CONV_2D'
    inputs: list[int]              # tensor indices, -1 for an absent optional input
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)    # the model file's options, as TFLite names them
    name: str = ""                 # a human-readable location (output tensor name): untrusted
    notes: Annotations = field(default_factory=Annotations)

    @property
    def weights_format(self) -> str:
        """The format the layer's kernel reads: the weight-format pass's choice ('int8' when it did
        not run), 'int8' for Huffman decoded at boot (edgekit.lower.program.decode_at_boot)."""
        w = self.notes.weights
        return "int8" if w is None or w.boot else w.format

    @property
    def weights_boot(self) -> bool:
        return self.notes.weights is not None and self.notes.weights.boot

    @property
    def location(self) -> str:
        """A short, printable location for messages, e.g. CONV_2D 'model/conv2d/Relu'."""
        return f"{self.kind} '{short_name(self.name)}'" if self.name else self.kind


@dataclass
class Graph:
    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]
    name: str = "model"
    meta: dict[str, Any] = field(default_factory=dict)

    def t(self, index: int) -> Tensor:
        return self.tensors[index]

    def producers(self) -> dict[int, int]:
        """tensor index -> index of the op that writes it."""
        return {o: i for i, op in enumerate(self.ops) for o in op.outputs}

    def consumers(self) -> dict[int, list[int]]:
        """tensor index -> indices of the ops that read it."""
        out: dict[int, list[int]] = {}
        for i, op in enumerate(self.ops):
            for t in op.inputs:
                if t >= 0:
                    out.setdefault(t, []).append(i)
        return out


# Constant arrays: what lowered kernel calls (edgekit.lower) and weight encodings (edgekit.formats)
# carry into flash.

@dataclass(frozen=True)
class ConstArray:
    """A constant array placed in flash; `name` is a C identifier suffix chosen by the lowering.

    With `boot_code` (an edgekit.formats.Encoded Huffman encoding of `values`, see
    edgekit.lower.program.decode_at_boot) flash holds only the encoding; the array itself is a RAM
    buffer that ek_model_init() fills once by decoding it."""
    name: str
    ctype: str                 # 'int8_t' | 'int32_t' | 'uint8_t' ...
    values: np.ndarray
    boot_code: object = None

    @property
    def nbytes(self) -> int:
        """Flash bytes."""
        return int(self.boot_code.nbytes) if self.boot_code is not None else self.ram_nbytes

    @property
    def ram_nbytes(self) -> int:
        """Bytes of the array itself (in flash, or in RAM when decoded at boot)."""
        return int(self.values.size * np.dtype(self.ctype.replace("_t", "")).itemsize)


@dataclass(frozen=True)
class ArrayRef:
    """A params field that points at one of the call's ConstArrays."""
    name: str
