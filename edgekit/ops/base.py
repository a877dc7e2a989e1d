"""What an op lowers to: one call of a hand-written C kernel with an integer params struct.

Each lowering function (registered with @lowering) reads the IR op, does its float work through
edgekit.quant, and returns a KernelCall (or an Alias for ops that only reinterpret a buffer).
The emitter renders KernelCalls without knowing any op: params become a `static const` struct
with designated initializers, ConstArrays become `static const` arrays in flash.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Union

import numpy as np

from ..errors import UnsupportedModelError
from ..ir import Graph, Op, short_name


@dataclass(frozen=True)
class ConstArray:
    """A constant array placed in flash; `name` is a C identifier suffix chosen by the lowering."""
    name: str
    ctype: str                 # 'int8_t' | 'int32_t'
    values: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.values.size * np.dtype(self.ctype.replace("_t", "")).itemsize)


@dataclass(frozen=True)
class TensorArg:
    """A pointer to an activation tensor (arena, model input or model output)."""
    index: int


@dataclass(frozen=True)
class TensorListArg:
    """An array of pointers to activation tensors (e.g. CONCATENATION's inputs)."""
    indices: tuple[int, ...]


@dataclass(frozen=True)
class ArrayArg:
    """A pointer to one of the call's ConstArrays, or NULL when name is None."""
    name: str | None


@dataclass(frozen=True)
class ArrayRef:
    """A params field that points at one of the call's ConstArrays."""
    name: str


Arg = Union[TensorArg, TensorListArg, ArrayArg]


@dataclass
class KernelCall:
    kernel: str                               # C function, ek_<op>_<dtype>[_<variant>]
    header: str                               # header declaring it and its params type
    sources: tuple[str, ...]                  # kernel .c files it needs (firmware/kernels)
    params_type: str
    params: dict[str, int | ArrayRef | list[int]]
    args: list[Arg]
    arrays: list[ConstArray] = field(default_factory=list)
    macs: int = 0

    @property
    def weight_bytes(self) -> int:
        return sum(a.nbytes for a in self.arrays)


@dataclass
class Alias:
    """The op's output is its input reinterpreted (RESHAPE, SQUEEZE...): no code, no memory."""
    source: int
    target: int


# A lowering gets the graph, the op and the target (None: portable C only); target features
# (e.g. has_dsp) and the op's shapes select the kernel variant with readable predicates.
Lowering = Callable[[Graph, Op, "Target | None"], Union[KernelCall, Alias]]
LOWERINGS: dict[str, Lowering] = {}


def lowering(*kinds: str):
    """Register a lowering function for one or more TFLite builtin op names."""
    def register(fn: Lowering) -> Lowering:
        for kind in kinds:
            LOWERINGS[kind] = fn
        return fn
    return register


def unsupported(op: Op, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"layer {op.location} cannot be compiled: {why}")


def require_int8(graph: Graph, op: Op, *tensors: int) -> None:
    for index in tensors:
        t = graph.t(index)
        if t.dtype != "int8":
            raise unsupported(op, f"tensor '{short_name(t.name)}' is {t.dtype}; edgekit compiles "
                                  "full-integer int8 models (quantize with a representative dataset)")
        if t.scale is None:
            raise unsupported(op, f"tensor '{short_name(t.name)}' has no quantization parameters")


def dims4(shape: tuple[int, ...]) -> list[int]:
    """A shape padded on the left with 1s to 4 dims."""
    if len(shape) > 4:
        raise ValueError(f"shape {list(shape)} has more than 4 dimensions")
    return [1] * (4 - len(shape)) + [int(d) for d in shape]


def nhwc(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(H, W, C) of a batch-1 NHWC shape."""
    if len(shape) != 4 or shape[0] != 1:
        raise ValueError(f"expected a batch-1 NHWC shape, got {list(shape)}")
    return int(shape[1]), int(shape[2]), int(shape[3])

