"""`edgekit verify`: run the generated C (host build, or firmware in QEMU) and compare every
output byte with TFLite's reference interpreter on out/model.tflite. Tolerance 0.

Every byte of every output is compared: a sample matches when all its outputs do, and a
mismatch names the output (for a model with several) and the first differing index."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from edgekit.api import CompiledModel, join_outputs, output_layout, quantize_input, saved_outputs
from edgekit.errors import EdgekitError


class Difference(NamedTuple):
    """The first differing byte: its sample, its output, its index in that output's shape
    (without the batch axis), and the two values."""
    sample: int
    output: int
    index: list[int]
    got: int
    expected: int


@dataclass
class Comparison:
    """N samples of the generated code's outputs against a reference, every byte of every output:
    int8 [N, total output bytes], each sample's outputs back to back as the C's output buffer
    holds them (layout: edgekit.api.output_layout, one entry per output)."""
    outputs: np.ndarray
    reference: np.ndarray
    layout: list[dict]

    @property
    def matched(self) -> int:
        """Samples whose every output byte matches."""
        return int((self.outputs == self.reference).all(axis=1).sum())

    @property
    def total(self) -> int:
        return int(self.outputs.shape[0])

    def saved(self) -> np.ndarray:
        """The outputs as --save-outputs writes them (edgekit.api.saved_outputs)."""
        return saved_outputs(self.outputs, self.layout)

    def differing_samples(self, k: int) -> int:
        """Samples on which output k differs."""
        o = self.layout[k]
        part = slice(o["offset"], o["offset"] + o["size"])
        return int((self.outputs[:, part] != self.reference[:, part]).any(axis=1).sum())

    def first_difference(self) -> Difference | None:
        diff = np.argwhere(self.outputs != self.reference)
        if not len(diff):
            return None
        sample, byte = (int(v) for v in diff[0])
        k = max(i for i, o in enumerate(self.layout) if o["offset"] <= byte)
        o = self.layout[k]
        index = [int(v) for v in np.unravel_index(byte - o["offset"], tuple(o["shape"][1:]))]
        return Difference(sample, k, index, int(self.outputs[sample, byte]), int(self.reference[sample, byte]))

    def differing_outputs(self) -> str:
        """For a model with several outputs, '; differing: output k 'name' on n of N samples, ...'
        naming each output that differs; '' otherwise."""
        if len(self.layout) == 1:
            return ""
        which = ", ".join(f"output {k} '{o['name']}' on {n} of {self.total} samples"
                          for k, o in enumerate(self.layout) if (n := self.differing_samples(k)))
        return f"; differing: {which}" if which else ""

    def differences(self) -> str:
        """'' when every byte matches; else which outputs differ and the first differing byte."""
        d = self.first_difference()
        if d is None:
            return ""
        output = f"output {d.output} '{self.layout[d.output]['name']}', " if len(self.layout) > 1 else ""
        return (f"{self.differing_outputs()}; first difference at sample {d.sample}, {output}index {d.index}: "
                f"got {d.got}, reference {d.expected}")


@dataclass
class VerifyResult(Comparison):
    where: str                 # 'host' or the QEMU machine
    # a model with exits: per exit<k> signature of model.tflite, (key, output, samples equal to that
    # output of the full model under LiteRT)
    signatures: list[tuple[str, int, int]] | None = None

    @property
    def ok(self) -> bool:
        return self.matched == self.total and all(n == self.total for _, _, n in self.signatures or [])

    def describe(self) -> str:
        lines = [f"{self.matched}/{self.total} outputs match the TFLite reference ({self.where})" + self.differences()]
        for key, k, n in self.signatures or []:
            lines.append(f"{n}/{self.total} outputs of model.tflite's signature '{key}' equal output {k} of the "
                         "full model (LiteRT, for phones)")
        return "\n".join(lines)


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
    """For models whose file has a float input or float outputs around QUANTIZE/DEQUANTIZE
    (edgekit's C takes the int8 side), the int8 quantization the reference run must map through:
    input_qparams, and output_qparams with one entry per output (None for an int8 one)."""
    out = {}
    if report["input"].get("float_in_model"):
        out["input_qparams"] = (report["input"]["scale"], report["input"]["zero_point"])
    layout = output_layout(report)
    if any(o.get("float_in_model") for o in layout):
        out["output_qparams"] = [(o["scale"], o["zero_point"]) if o.get("float_in_model") else None
                                 for o in layout]
    return out


def reference_flat(model: CompiledModel, x: np.ndarray) -> np.ndarray:
    """TFLite's reference outputs for the int8 batch x as the C's output buffers, int8
    [N, total output bytes] (every output of each sample back to back)."""
    from edgekit.run.reference import reference_outputs
    ref = reference_outputs(model.tflite_path, x, **boundary_qparams(model.report))
    return join_outputs(ref, model.output_layout)


def verify(out_dir: str | Path, inputs: str | Path | None = None, count: int = 10, seed: int = 0,
           emulate: bool = False, sanitize: bool = False) -> VerifyResult:
    model = CompiledModel(out_dir, sanitize=sanitize)
    x = load_inputs(inputs, model, count, seed)
    if emulate:
        from edgekit.run.emulate import run_firmware_flat
        y, where = run_firmware_flat(model, x)
    else:
        y, where = model.predict_flat(x), "host"
    reference = reference_flat(model, x)
    return VerifyResult(outputs=y, reference=reference, layout=model.output_layout, where=where,
                        signatures=check_signatures(model, x, reference))


def check_signatures(model: CompiledModel, x: np.ndarray, reference: np.ndarray) -> list[tuple[str, int, int]]:
    """Each exit<k> signature of model.tflite (edgekit.emit.signatures) against output k of the
    full model's reference outputs: (key, output, samples equal)."""
    budget = model.report.get("budget")
    if not budget:
        return []
    from edgekit.emit.signatures import exit_signatures
    from edgekit.run.reference import signature_outputs
    content = model.tflite_path.read_bytes()
    keys = exit_signatures(content)
    if len(keys) != len(budget["exits"]) - 1:
        raise EdgekitError(f"{model.tflite_path} has {len(keys)} exit signatures for {len(budget['exits']) - 1} "
                           "early exits: export the model again")
    out = []
    for key, e in zip(keys, budget["exits"]):
        o = model.output_layout[e["output"]]
        want = reference[:, o["offset"]:o["offset"] + o["size"]]
        got = signature_outputs(content, key, x).reshape(len(x), -1)
        out.append((key, e["output"], int((got == want).all(axis=1).sum())))
    return out
