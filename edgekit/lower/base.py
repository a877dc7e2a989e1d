"""What an op lowers to: one call of a hand-written C kernel with an integer params struct.

Each lowering function (registered with @lowering) reads the IR op, does its float work through
edgekit.lower.quant, and returns a KernelCall (or an Alias for ops that only reinterpret a buffer).
The emitter renders KernelCalls without knowing any op: params become a `static const` struct
with designated initializers, ConstArrays become `static const` arrays in flash.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Union

import numpy as np

from edgekit.errors import UnsupportedModelError
from edgekit.ir import ArrayRef, ConstArray, Graph, Op, short_name  # noqa: F401  (ArrayRef, ConstArray: re-exported)
from edgekit.lower.kernels import Kernel, kernel

if TYPE_CHECKING:
    from edgekit.targets import Target


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
class ScratchArg:
    """A pointer to the call's scratch buffer (KernelCall.scratch_bytes bytes of the arena, live
    only during this call; rendered `arena + offset`, or NULL when scratch_bytes is 0)."""


@dataclass(frozen=True)
class InPlace:
    """The kernel may write its output over the input at args[arg], with the output starting at
    least `gap` bytes below that input's start (gap 0: the same start).

    What the kernel promises by declaring it: it writes its output in increasing address order,
    and when it writes output byte j it will never again read an input byte with index below
    j + 1 - gap. An elementwise loop `out[i] = f(in[i])` (same size, same index mapping) holds it
    with gap 0; a sliding-window kernel that writes pixel after pixel needs a gap of about one
    window's worth of input rows. The planner uses it only when that input is not read after this
    call (see edgekit.plan)."""
    arg: int
    gap: int = 0


Arg = Union[TensorArg, TensorListArg, ArrayArg, ScratchArg]


@dataclass
class KernelCall:
    kernel: str                               # C function, a name in edgekit.lower.kernels.KERNELS
    params: dict[str, int | ArrayRef | list[int]]
    args: list[Arg]
    arrays: list[ConstArray] = field(default_factory=list)
    macs: int = 0
    scratch_bytes: int = 0                    # arena bytes for a ScratchArg, live during this call
    inplace: tuple[int | InPlace, ...] = ()   # args[k] (or InPlace(k, gap)) may share the output

    @property
    def header(self) -> str:
        """The header declaring the kernel and its params type (edgekit.lower.kernels)."""
        return kernel(self.kernel).header

    @property
    def sources(self) -> tuple[str, ...]:
        """The kernel .c files it needs (firmware/kernels)."""
        return kernel(self.kernel).sources

    @property
    def params_type(self) -> str:
        return kernel(self.kernel).params_type

    @property
    def output_arg(self) -> int:
        """Position in args of the output tensor: the last TensorArg."""
        return max(i for i, a in enumerate(self.args) if isinstance(a, TensorArg))

    def inplace_inputs(self) -> list[InPlace]:
        """The declared in-place inputs as InPlace(arg, gap), validated."""
        out = []
        for d in self.inplace:
            d = d if isinstance(d, InPlace) else InPlace(int(d))
            if not (0 <= d.arg < self.output_arg and isinstance(self.args[d.arg], TensorArg)) or d.gap < 0:
                raise ValueError(f"{self.kernel}: in-place declaration {d} does not name an input tensor")
            out.append(d)
        return out

    @property
    def weight_bytes(self) -> int:
        return sum(a.nbytes for a in self.arrays)

    @property
    def boot_ram_bytes(self) -> int:
        """RAM of the arrays decoded at boot (edgekit.lower.program.decode_at_boot)."""
        return sum(a.ram_nbytes for a in self.arrays if a.boot_code is not None)


@dataclass
class Alias:
    """The op's output is its input reinterpreted (RESHAPE, SQUEEZE...): no code, no memory."""
    source: int
    target: int


# A lowering gets the graph, the op and the target (None: portable C only); target features
# (e.g. has_dsp) and the op's shapes select the kernel variant with readable predicates.
Lowering = Callable[[Graph, Op, "Target | None"], Union[KernelCall, Alias]]
LOWERINGS: dict[str, Lowering] = {}


# A kernel choice gets the graph, the op, the target and a weight format ('int8' or one of
# edgekit.formats.FORMATS) and returns the registry entry of the kernel the op's lowering emits
# for that format (ValueError when the op has no kernel for it). The lowering itself calls the
# same function, so the weight-format choice (edgekit.passes.weights) prices exactly what is emitted.
KernelChoice = Callable[[Graph, Op, "Target | None", str], Kernel]
KERNEL_CHOICES: dict[str, KernelChoice] = {}


def choose_kernel(*kinds: str):
    """Register the kernel choice of one or more TFLite builtin op names."""
    def register(fn: KernelChoice) -> KernelChoice:
        for kind in kinds:
            KERNEL_CHOICES[kind] = fn
        return fn
    return register


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
        zp = np.asarray(t.zero_point if t.zero_point is not None else [0], dtype=np.int64)
        if zp.size and (zp.min() < -128 or zp.max() > 127):
            raise unsupported(op, f"tensor '{short_name(t.name)}' has zero point {int(zp.flat[0])}, outside "
                                  "int8's [-128, 127] (the file is corrupt or not an int8 model)")


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

