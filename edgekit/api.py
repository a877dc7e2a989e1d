"""Python API: export + build for the host and run the generated C from Python.

    m = edgekit.compile("model.h5", calib="calib.npy")      # target="host" by default
    y = m.predict(x)                                         # int8 [N, *output_shape]
    assert (y == edgekit.reference.reference_outputs(m.tflite_path, m.quantize(x))).all()
"""
from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from .build import host_binary
from .errors import EdgekitError
from .targets import get_target


class CompiledModel:
    """An export directory with its host build: predict() runs the generated C."""

    def __init__(self, out_dir: str | Path, sanitize: bool = False):
        self.out_dir = Path(out_dir)
        report = self.out_dir / "report.json"
        if not report.exists():
            raise EdgekitError(f"{self.out_dir} is not an edgekit export directory (no report.json)")
        try:
            self.report = json.loads(report.read_text())
            self.report["input"]["shape"], self.report["output"]["shape"], self.report["target"]
        except (OSError, ValueError, KeyError, TypeError):
            raise EdgekitError(f"{report} is unreadable or incomplete: export the model again") from None
        self.sanitize = sanitize
        self._binary: Path | None = None

    @property
    def tflite_path(self) -> Path:
        return self.out_dir / "model.tflite"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.report["input"]["shape"])

    @property
    def output_shape(self) -> tuple[int, ...]:
        return tuple(self.report["output"]["shape"])

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """A batch [N, *input_shape] as int8: int8 passes through, floats are quantized."""
        return quantize_input(x, self.report)

    def dequantize(self, y: np.ndarray) -> np.ndarray:
        o = self.report["output"]
        return ((y.astype(np.int32) - o["zero_point"]) * np.float32(o["scale"])).astype(np.float32)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Run the generated C on the host for a batch; returns int8 [N, *output_shape]."""
        xq = self.quantize(x)
        if self._binary is None:
            self._binary = host_binary(self.out_dir, sanitize=self.sanitize)
        proc = subprocess.run([str(self._binary)], input=xq.tobytes(), capture_output=True)
        if proc.returncode != 0:
            raise EdgekitError(f"the host build of {self.out_dir} failed: "
                               f"{proc.stderr.decode(errors='replace').strip()[:2000]}")
        n = xq.shape[0]
        out = np.frombuffer(proc.stdout, dtype=np.int8)
        expect = n * int(np.prod(self.output_shape[1:]))
        if out.size != expect:
            raise EdgekitError(f"the host build returned {out.size} bytes instead of {expect}")
        return out.reshape((n, *self.output_shape[1:]))


def quantize_input(x: np.ndarray, report: dict) -> np.ndarray:
    shape = tuple(report["input"]["shape"][1:])
    x = np.asarray(x)
    if x.shape == shape:
        x = x[None]
    if x.shape[1:] != shape:
        raise EdgekitError(f"inputs have shape {list(x.shape)}, but the model expects [N, "
                           f"{', '.join(map(str, shape))}]")
    if x.dtype == np.int8:
        return np.ascontiguousarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise EdgekitError(f"inputs are {x.dtype}: pass int8 (already quantized) or float32 values")
    scale, zp = np.float32(report["input"]["scale"]), report["input"]["zero_point"]
    q = np.round(x.astype(np.float32) / scale) + zp
    return np.clip(q, -128, 127).astype(np.int8)


def compile(model, target: str = "host", calib=None, out_dir: str | Path | None = None,
            sanitize: bool = False, weights: str = "auto", optimize: str = "speed",
            huffman_decode: str = "layer") -> CompiledModel:
    """Export `model` (path to .h5/.keras/.tflite) and return it ready to predict on the host.
    `weights`, `optimize` and `huffman_decode` choose the weight formats as `edgekit export
    --weights/--optimize/--huffman-decode`."""
    from .export import export
    if out_dir is None:
        out_dir = Path(tempfile.mkdtemp(prefix="edgekit-")) / "out"
    export(model, out_dir, get_target(target), calib=calib, weights=weights, optimize=optimize,
           huffman_decode=huffman_decode)
    return CompiledModel(out_dir, sanitize=sanitize)


def load(out_dir: str | Path, sanitize: bool = False) -> CompiledModel:
    """An existing export directory."""
    return CompiledModel(out_dir, sanitize=sanitize)
