"""Python API: export + build for the host and run the generated C from Python.

    m = edgekit.compile("model.h5", calib="calib.npy")      # target="host" by default
    y = m.predict(x)                                         # int8 [N, *output_shape]
    assert (y == edgekit.run.reference.reference_outputs(m.tflite_path, m.quantize(x))).all()

A model with several outputs answers like Keras' predict: a list with one int8 [N, *shape] array
per output, in the model's output order (its .tflite's); predict_flat() gives the C's output
buffer instead, [N, total bytes], every output back to back at the offsets report.json's
"outputs" (and model.h's EK_MODEL_OUTPUT<k>_OFFSET) give.
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from edgekit.build import host_binary
from edgekit.datasets import quantize_input
from edgekit.errors import EdgekitError
from edgekit.targets import get_target


class CompiledModel:
    """An export directory with its host build: predict() runs the generated C."""

    def __init__(self, out_dir: str | Path, sanitize: bool = False):
        self.out_dir = Path(out_dir)
        report = self.out_dir / "report.json"
        if not report.exists():
            raise EdgekitError(f"{self.out_dir} is not an edgekit export directory (no report.json)")
        try:
            self.report = json.loads(report.read_text())
            self.report["input"]["shape"], self.report["target"]
            self.output_layout = output_layout(self.report)
            for o in self.output_layout:       # the fields every reader of an output needs
                o["shape"][:], o["offset"] + o["size"], o["scale"], o["zero_point"]
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
    def output_shapes(self) -> list[tuple[int, ...]]:
        return [tuple(o["shape"]) for o in self.output_layout]

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The shape of the model's output (a model with several: see output_shapes)."""
        if len(self.output_layout) != 1:
            raise EdgekitError(f"{self.out_dir} has {len(self.output_layout)} outputs: use output_shapes")
        return self.output_shapes[0]

    @property
    def output_size(self) -> int:
        """Bytes of every output of one sample (the C's output buffer, EK_MODEL_OUTPUT_SIZE)."""
        return sum(o["size"] for o in self.output_layout)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """A batch [N, *input_shape] as int8: int8 passes through, floats are quantized."""
        return quantize_input(x, self.report)

    def dequantize(self, y):
        """predict()'s answer as float32, each output with its own scale and zero point."""
        parts = [((p.astype(np.int32) - o["zero_point"]) * np.float32(o["scale"])).astype(np.float32)
                 for p, o in zip(per_output(y, self.output_layout), self.output_layout)]
        return parts[0] if len(parts) == 1 else parts

    def predict(self, x: np.ndarray):
        """Run the generated C on the host for a batch: int8 [N, *output_shape], or for a model
        with several outputs a list of them, one per output in the model's output order."""
        return model_answer(self.predict_flat(x), self.output_layout)

    def predict_flat(self, x: np.ndarray) -> np.ndarray:
        """Run the generated C on the host for a batch: int8 [N, output_size], the C's output
        buffer (every output back to back, at its offset in output_layout)."""
        xq = self.quantize(x)
        return flat_outputs(self._run_host(xq), xq.shape[0], self.output_size, "the host build")

    def _run_host(self, xq: np.ndarray, env: dict | None = None) -> bytes:
        """The host build's stdout for the int8 batch xq (built on first use)."""
        if self._binary is None:
            self._binary = host_binary(self.out_dir, sanitize=self.sanitize)
        proc = subprocess.run([str(self._binary)], input=xq.tobytes(), capture_output=True,
                              env=None if env is None else dict(os.environ, **env))
        if proc.returncode != 0:
            raise EdgekitError(f"the host build of {self.out_dir} failed: "
                               f"{proc.stderr.decode(errors='replace').strip()[:2000]}")
        return proc.stdout

    def predict_budget(self, x: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
        """A model exported with --budgets: run ek_model_invoke_budget at budget `level` on the
        host for a batch; (the exit each sample took [N], that exit's int8 scores [N, classes])."""
        budget = self.report.get("budget")
        if not budget:
            raise EdgekitError(f"{self.out_dir} has no budget levels: export the model with --budgets N --val val.npz")
        xq = self.quantize(x)
        rows = flat_outputs(self._run_host(xq, dict(EK_BUDGET=str(level))), xq.shape[0], 1 + budget["classes"],
                            "the host build")
        return rows[:, 0].astype(np.int64), rows[:, 1:]


def output_layout(report: dict) -> list[dict]:
    """report["outputs"]: each output's name, shape, scale, zero point, and its bytes in the C's
    output buffer (offset, size); an export made before several outputs existed has its one
    "output", at offset 0."""
    if "outputs" in report:
        return report["outputs"]
    o = report["output"]
    return [dict(o, name="", offset=0, size=int(np.prod(o["shape"])))]


def flat_outputs(data: bytes, n: int, size: int, source: str) -> np.ndarray:
    """n samples' output buffers of `size` bytes each as int8 [n, size]."""
    out = np.frombuffer(data, dtype=np.int8)
    if out.size != n * size:
        raise EdgekitError(f"{source} returned {out.size} bytes instead of {n * size}")
    return out.reshape(n, size)


def split_outputs(flat: np.ndarray, layout: list[dict]) -> list[np.ndarray]:
    """[N, total bytes] -> one int8 [N, *shape] array per output."""
    n = flat.shape[0]
    return [flat[:, o["offset"]:o["offset"] + o["size"]].reshape(n, *o["shape"][1:]) for o in layout]


def model_answer(flat: np.ndarray, layout: list[dict]):
    """predict()'s answer from the flat buffers: [N, *shape] for one output, a list for several."""
    parts = split_outputs(flat, layout)
    return parts[0] if len(parts) == 1 else parts


def per_output(y, layout: list[dict]) -> list[np.ndarray]:
    """predict()'s answer (an array, or a list with one per output) as a list, one per output."""
    parts = [y] if isinstance(y, np.ndarray) else list(y)
    if len(parts) != len(layout):
        raise EdgekitError(f"got {len(parts)} output arrays for a model with {len(layout)} outputs")
    return [np.asarray(p) for p in parts]


def join_outputs(y, layout: list[dict]) -> np.ndarray:
    """predict()'s answer as the C's flat output buffers, int8 [N, total bytes]."""
    parts = per_output(y, layout)
    n = parts[0].shape[0]
    return np.ascontiguousarray(np.concatenate([p.astype(np.int8).reshape(n, -1) for p in parts], axis=1))


def saved_outputs(flat: np.ndarray, layout: list[dict]) -> np.ndarray:
    """What --save-outputs writes: [N, *output_shape] for one output; for several, the flat
    [N, total bytes] buffers (report.json's "outputs" give each one's offset and size)."""
    return flat if len(layout) > 1 else split_outputs(flat, layout)[0]


def compile(model, target: str = "host", calib=None, out_dir: str | Path | None = None,
            sanitize: bool = False, weights: str = "auto", optimize: str = "speed",
            huffman_decode: str = "layer") -> CompiledModel:
    """Export `model` (path to .h5/.keras/.tflite) and return it ready to predict on the host.
    `weights`, `optimize` and `huffman_decode` choose the weight formats as `edgekit export
    --weights/--optimize/--huffman-decode`."""
    from edgekit.export import export
    if out_dir is None:
        out_dir = Path(tempfile.mkdtemp(prefix="edgekit-")) / "out"
    export(model, out_dir, get_target(target), calib=calib, weights=weights, optimize=optimize,
           huffman_decode=huffman_decode)
    return CompiledModel(out_dir, sanitize=sanitize)


def load(out_dir: str | Path, sanitize: bool = False) -> CompiledModel:
    """An existing export directory."""
    return CompiledModel(out_dir, sanitize=sanitize)
