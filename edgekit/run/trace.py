"""`edgekit verify OUT --layers`: which layer of the generated C first departs from edgekit's
integer reference, and at which byte.

The host build with TRACE=1 (templates/Makefile.j2 adds -DEK_TRACE) calls ek_trace() after every
kernel call (the EK_TRACE_LAYER hook in templates/model.c.j2); host_main.c writes each layer's
output tensor to $EK_TRACE_FILE, one line per sample and layer:
"<sample> <layer> <tensor> <bytes> <hex>". edgekit's integer reference (edgekit.run.intref) computes
the same tensors from OUT/model.tflite with the portable lowering. Layers are matched by the
tensor they write, so an export for a DSP target (its own kernel variants, maybe its own layer
order) is diagnosed the same way; they are compared in the export's layer order, and the first
layer whose output differs on any sample is the culprit (every later layer only inherits it).
The final outputs are compared with TFLite's reference interpreter too, as `edgekit verify` does.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.api import CompiledModel, flat_outputs
from edgekit.build import run_make
from edgekit.errors import EdgekitError
from edgekit.run.verify import Comparison


@dataclass
class LayerMismatch:
    layer: int                 # the export's layer index (model.c's "Layer N")
    kernel: str
    location: str              # e.g. CONV_2D 'model/conv2d/Relu'
    tensor: int
    sample: int                # first sample on which it differs
    byte: int                  # first differing byte of that sample's tensor (flat)
    index: tuple[int, ...]     # the same byte as an index into the tensor's shape
    got: int                   # the C's value
    expected: int              # the integer reference's value
    differing: int             # differing bytes of this layer over all samples
    total: int                 # bytes of this layer over all samples


@dataclass
class LayersResult(Comparison):
    """The traced host build's outputs against TFLite's reference (edgekit.run.verify.Comparison:
    flat [N, total output bytes], every output), and its layers against the integer reference."""
    layers: int
    first: LayerMismatch | None

    @property
    def ok(self) -> bool:
        return self.first is None and self.matched == self.total

    def describe(self) -> str:
        lines = [f"{self.matched}/{self.total} outputs match the TFLite reference (host, TRACE=1 build)"
                 + self.differing_outputs()]
        m = self.first
        if m is None:
            lines.append(f"all {self.layers} layers match edgekit's integer reference on {self.total} inputs")
        else:
            lines.append(
                f"layer {m.layer} ({m.kernel}, {m.location}) is the first whose output differs from edgekit's "
                f"integer reference: sample {m.sample}, byte {m.byte} (index {list(m.index)}): C {m.got}, "
                f"reference {m.expected}; {m.differing} of {m.total} bytes of this layer differ")
        return "\n".join(lines)


def read_trace(path: Path) -> dict[tuple[int, int], tuple[int, bytes]]:
    """{(sample, layer): (tensor, bytes)} from a trace file written by host_main.c."""
    records = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            parts = line.split()
            try:
                sample, layer, tensor, size = (int(v) for v in parts[:4])
                data = bytes.fromhex(parts[4]) if len(parts) > 4 else b""
            except (ValueError, IndexError):
                raise EdgekitError(f"the trace file {path} is malformed at line {number}") from None
            if len(data) != size:
                raise EdgekitError(f"the trace file {path} holds {len(data)} bytes for layer {layer} at line "
                                   f"{number}, not {size}")
            records[sample, layer] = (tensor, data)
    return records


def run_traced_host(model: CompiledModel, x: np.ndarray, sanitize: bool = False):
    """Build OUT with TRACE=1, run the int8 batch x; returns (outputs [N, total output bytes],
    trace records)."""
    out_dir = model.out_dir
    if "EK_TRACE_LAYER" not in (out_dir / "model.c").read_text(errors="replace"):
        raise EdgekitError(f"{out_dir} was exported before per-layer tracing existed: export the model "
                           "again to use --layers")
    run_make(out_dir, "host", sanitize=sanitize, variables={"TRACE": "1"})
    binary = out_dir / "build" / ("host-sanitize-trace" if sanitize else "host-trace") / "model_host"
    with tempfile.TemporaryDirectory(prefix="edgekit-trace-") as tmp:
        trace = Path(tmp) / "trace.txt"
        proc = subprocess.run([str(binary)], input=x.tobytes(), capture_output=True,
                              env=dict(os.environ, EK_TRACE_FILE=str(trace)))
        if proc.returncode != 0:
            raise EdgekitError(f"the traced host build of {out_dir} failed: "
                               f"{proc.stderr.decode(errors='replace').strip()[:2000]}")
        records = read_trace(trace)
    return flat_outputs(proc.stdout, x.shape[0], model.output_size, "the traced host build"), records


def first_differing_layer(model: CompiledModel, x: np.ndarray, records: dict) -> tuple[int, LayerMismatch | None]:
    """Compare every traced layer with the integer reference; (layers, first mismatch or None)."""
    from edgekit.run.intref import IntReference
    ref = IntReference.from_export(model.out_dir)
    expected = {t.tensor: t.values for t in ref.trace_batch(x)}
    report_layers = model.report.get("layers", [])
    n = x.shape[0]
    layers = sorted({layer for _, layer in records})
    if len(records) != n * len(layers) or any((s, layer) not in records for s in range(n) for layer in layers):
        raise EdgekitError(f"the trace of {model.out_dir} is incomplete ({len(records)} records for {n} "
                           f"samples and {len(layers)} layers)")
    for layer in layers:
        tensor = records[0, layer][0]
        if tensor not in expected:
            raise EdgekitError(f"layer {layer} of {model.out_dir} writes tensor {tensor}, which the integer "
                               "reference of its model.tflite does not compute: export the model again")
        want = expected[tensor].reshape(n, -1)
        got = np.stack([np.frombuffer(records[s, layer][1], dtype=np.int8) for s in range(n)])
        if got.shape != want.shape:
            raise EdgekitError(f"layer {layer} of {model.out_dir} traces {got.shape[1]} bytes of tensor {tensor}, "
                               f"the integer reference has {want.shape[1]}: export the model again")
        diff = np.argwhere(got != want)
        if len(diff):
            sample, byte = (int(v) for v in diff[0])
            shape = expected[tensor].shape[1:]
            info = report_layers[layer] if layer < len(report_layers) else {}
            location = f"{info.get('op', '?')} '{info.get('name', '')}'" if info else f"tensor {tensor}"
            return len(layers), LayerMismatch(
                layer=layer, kernel=info.get("kernel", "?"), location=location, tensor=tensor, sample=sample,
                byte=byte, index=tuple(int(v) for v in np.unravel_index(byte, shape)),
                got=int(got[sample, byte]), expected=int(want[sample, byte]), differing=len(diff),
                total=int(got.size))
    return len(layers), None


def verify_layers(out_dir: str | Path, inputs: str | Path | None = None, count: int = 10, seed: int = 0,
                  emulate: bool = False, sanitize: bool = False) -> LayersResult:
    """`edgekit verify OUT --layers` (see the module docstring)."""
    from edgekit.run.verify import load_inputs, reference_flat
    if emulate:
        raise EdgekitError("--layers traces the host build of the export; drop --emulate")
    model = CompiledModel(out_dir, sanitize=sanitize)
    x = load_inputs(inputs, model, count, seed)
    y, records = run_traced_host(model, x, sanitize=sanitize)
    layers, first = first_differing_layer(model, x, records)
    return LayersResult(outputs=y, reference=reference_flat(model, x), layout=model.output_layout, layers=layers,
                        first=first)
