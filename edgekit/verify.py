"""`edgekit verify`: run the generated C (host build, or firmware in QEMU) and compare every
output byte with TFLite's reference interpreter on out/model.tflite. Tolerance 0."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .api import CompiledModel, quantize_input
from .errors import EdgekitError


@dataclass
class VerifyResult:
    outputs: np.ndarray        # [N, *output_shape] int8 from the generated code
    reference: np.ndarray      # same shape, from the reference interpreter
    where: str                 # 'host' or the QEMU machine

    @property
    def matched(self) -> int:
        axes = tuple(range(1, self.outputs.ndim))
        return int((self.outputs == self.reference).all(axis=axes).sum())

    @property
    def total(self) -> int:
        return int(self.outputs.shape[0])

    @property
    def ok(self) -> bool:
        return self.matched == self.total

    def first_mismatch(self) -> tuple[int, ...] | None:
        diff = np.argwhere(self.outputs != self.reference)
        return tuple(int(v) for v in diff[0]) if len(diff) else None

    def describe(self) -> str:
        line = f"{self.matched}/{self.total} outputs match the TFLite reference ({self.where})"
        first = self.first_mismatch()
        if first is not None:
            line += (f"; first difference at sample {first[0]}, index {list(first[1:])}: "
                     f"got {int(self.outputs[first])}, reference {int(self.reference[first])}")
        return line


def load_inputs(path: str | Path | None, model: CompiledModel, count: int, seed: int) -> np.ndarray:
    """int8 inputs [N, *input_shape]: from a .npy/.npz file, or fixed-seed random."""
    if path is None:
        rng = np.random.default_rng(seed)
        return rng.integers(-128, 128, size=(count, *model.input_shape[1:]), dtype=np.int8)
    try:
        data = np.load(path, allow_pickle=False)
    except OSError as e:
        raise EdgekitError(f"cannot read inputs {path}: {e.strerror or e}") from None
    except ValueError:
        raise EdgekitError(f"inputs {path} is not a .npy or .npz file (numpy.save / numpy.savez)") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        data = data["x"] if "x" in data else data[list(data.keys())[0]]
    return quantize_input(data, model.report)


def boundary_qparams(report: dict) -> dict:
    """For models whose file has float input/output around QUANTIZE/DEQUANTIZE (edgekit's C
    takes the int8 side), the int8 quantization the reference run must map through."""
    out = {}
    for role in ("input", "output"):
        if report[role].get("float_in_model"):
            out[f"{role}_qparams"] = (report[role]["scale"], report[role]["zero_point"])
    return out


def verify(out_dir: str | Path, inputs: str | Path | None = None, count: int = 10, seed: int = 0,
           emulate: bool = False, sanitize: bool = False) -> VerifyResult:
    from .reference import reference_outputs
    model = CompiledModel(out_dir, sanitize=sanitize)
    x = load_inputs(inputs, model, count, seed)
    if emulate:
        from .emulate import run_firmware
        y, where = run_firmware(model, x)
    else:
        y, where = model.predict(x), "host"
    ref = reference_outputs(model.tflite_path, x, **boundary_qparams(model.report))
    return VerifyResult(outputs=y, reference=ref, where=where)
