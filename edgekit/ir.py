"""edgekit's intermediate representation: a flat list of tensors and ops in execution order.

The importers (edgekit.importers) build a Graph; the passes (edgekit.passes) rewrite it; the
op lowering (edgekit.ops) turns each Op into a kernel call; the planner (edgekit.planner)
places the activation tensors in one arena; the emitter (edgekit.codegen) writes C.
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
class Op:
    kind: str                      # TFLite builtin name, e.g. 'CONV_2D'
    inputs: list[int]              # tensor indices, -1 for an absent optional input
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)
    name: str = ""                 # a human-readable location (output tensor name): untrusted

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
