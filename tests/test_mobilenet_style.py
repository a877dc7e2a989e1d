"""A MobileNetV1-style model (benchmarks/mobilenet_style.py: 0.25x, 96x96x3, 2 classes, the visual
wake words shape) that edgekit was never tuned on: exported for cortex-m4 (DSP kernels on the
firmware, portable kernels on the host build), bit-exact against TFLite's reference interpreter
on the host build (with sanitizers) and on the emulated Cortex-M4.

The .tflite is converted once (~10 s, TensorFlow) and cached under ~/.cache/edgekit-tests/."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_bit_exact, test_inputs
from edgekit.api import load
from edgekit.run.emulate import run_firmware
from edgekit.export import export
from edgekit.run.reference import reference_outputs
from edgekit.targets import get_target

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from mobilenet_style import mobilenet_tflite  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tflite = mobilenet_tflite()
    out = tmp_path_factory.mktemp("mobilenet") / "out"
    result = export(tflite, out, get_target("cortex-m4"))
    return tflite, out, result.report


def test_mobilenet_style_exports_every_layer_with_the_dsp_kernels(exported):
    _, _, report = exported
    ops = [layer["op"] for layer in report["layers"]]
    assert ops.count("DEPTHWISE_CONV_2D") == 13 and ops.count("CONV_2D") == 15
    for layer in report["layers"]:
        if layer["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            assert layer["kernel"].endswith("_dsp"), layer
    assert report["totals"]["macs"] == 7_491_970


def test_mobilenet_style_bit_exact_on_host(exported):
    tflite, out, _ = exported
    model = load(out, sanitize=True)
    x = test_inputs(model.input_shape[1:], n=12, seed=2026)
    y = model.predict(x)
    # The outputs depend on the input: otherwise this check would prove little.
    assert len(np.unique(y, axis=0)) > 4
    assert_bit_exact(y, reference_outputs(tflite, x), "mobilenet_style (host)")


@pytest.mark.emulator
def test_mobilenet_style_bit_exact_on_cortex_m4(exported, qemu):
    tflite, out, _ = exported
    model = load(out)
    x = test_inputs(model.input_shape[1:], n=3, seed=2026)
    y, machine = run_firmware(model, x)
    assert machine == "mps2-an386"
    assert_bit_exact(y, reference_outputs(tflite, x), "mobilenet_style (emulated Cortex-M4)")
