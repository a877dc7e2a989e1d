"""`edgekit verify OUT --layers`: the host build with TRACE=1 dumps every layer's output, and the
first layer that differs from edgekit's integer reference is named, with its first differing byte.

A clean export reports every layer matching (portable kernels, and the DSP variants of a
cortex-m4 export built for the host); an export whose model.c has one layer's multiplier array
altered is diagnosed at exactly that layer, even where the final outputs still match TFLite.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_user_error, call
from edgekit.errors import EdgekitError
from edgekit.export import export
from edgekit.run.intref import IntReference
from edgekit.targets import get_target
from edgekit.run.trace import read_trace
from opmodels import op_model

CASE = "mini_resnet"        # conv, add, mean, FC, softmax; 11 layers
FIRST = re.compile(r"^layer (\d+) \((\w+), (.+)\) is the first whose output differs from edgekit's integer "
                   r"reference: sample (\d+), byte (\d+) \(index \[([\d, ]*)\]\): C (-?\d+), reference (-?\d+); "
                   r"(\d+) of (\d+) bytes of this layer differ$")


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("trace")
    (d / "m.tflite").write_bytes(op_model(CASE))
    out = {}
    for target in ("host", "cortex-m4"):
        export(d / "m.tflite", d / target, get_target(target))
        out[target] = d / target
    return out


def tamper(src: Path, dst: Path, layer: int) -> None:
    """A copy of the export whose model.c has every value of one layer's multipliers halved (its
    mult array, or the DSP convolutions' folded per-channel block, which holds them)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("build"))
    text = (dst / "model.c").read_text()
    m = None
    for array in ("mult", "bias"):
        m = m or re.search(rf"static const int32_t ek_l{layer}_{array}\[\d+\] = \{{\n(.*?)\n\}};", text, re.S)
    assert m, f"layer {layer} has no mult or bias array"
    halved = re.sub(r"-?\d+", lambda v: str(int(v.group()) // 2), m.group(1))
    (dst / "model.c").write_text(text[:m.start(1)] + halved + text[m.end(1):])


@pytest.mark.parametrize("target", ["host", "cortex-m4"])
def test_clean_export_all_layers_match(exports, target, capsys):
    rc, out, err = call(capsys, "verify", exports[target], "--layers", "--count", "4")
    assert rc == 0, err
    layers = len(json.loads((exports[target] / "report.json").read_text())["layers"])
    assert out.splitlines() == ["4/4 outputs match the TFLite reference (host, TRACE=1 build)",
                                f"all {layers} layers match edgekit's integer reference on 4 inputs"]
    assert (exports[target] / "build" / "host-trace" / "model_host").exists()


@pytest.mark.parametrize("target, layer", [("host", 0), ("host", 5), ("host", 9), ("cortex-m4", 4)])
def test_tampered_layer_is_named(exports, target, layer, tmp_path, capsys):
    bad = tmp_path / "bad"
    tamper(exports[target], bad, layer)
    x = np.random.default_rng(21).integers(-128, 128, size=(6, 8, 8, 3), dtype=np.int8)
    np.save(tmp_path / "x.npy", x)
    rc, out, err = call(capsys, "verify", bad, "--layers", "--inputs", tmp_path / "x.npy",
                        "--save-outputs", tmp_path / "y.npy")
    assert rc == 1 and "Traceback" not in err, err
    lines = out.splitlines()
    assert len(lines) == 2 and lines[0].endswith("outputs match the TFLite reference (host, TRACE=1 build)")
    m = FIRST.match(lines[1])
    assert m, lines[1]
    report = json.loads((bad / "report.json").read_text())["layers"][layer]
    assert (int(m.group(1)), m.group(2), m.group(3)) == (layer, report["kernel"], f"{report['op']} '{report['name']}'")
    # The byte and the reference value it names are the integer reference's.
    sample, byte = int(m.group(4)), int(m.group(5))
    ref = IntReference.from_export(bad)
    step = next(t for t in ref.run_traced(x[sample]) if t.layer.startswith(f"{report['op']} '{report['name']}'"))
    flat = step.values.reshape(-1)
    assert int(m.group(8)) == flat[byte] and int(m.group(7)) != flat[byte]
    assert [int(v) for v in m.group(6).split(",")] == list(np.unravel_index(byte, step.values.shape))
    assert np.load(tmp_path / "y.npy").shape == (6, *ref.output_shape[1:])


def test_export_without_trace_hooks(exports, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(exports["host"], old, ignore=shutil.ignore_patterns("build"))
    text = (old / "model.c").read_text()
    (old / "model.c").write_text("\n".join(l for l in text.splitlines() if "EK_TRACE_LAYER" not in l) + "\n")
    rc, out, err = call(capsys, "verify", old, "--layers")
    assert_user_error(rc, err, "exported before per-layer tracing", "export the model again")
    assert out == "" and not (old / "build").exists()


def test_layers_needs_the_host_build(exports, capsys):
    rc, out, err = call(capsys, "verify", exports["cortex-m4"], "--layers", "--emulate")
    assert_user_error(rc, err, "--layers", "drop --emulate")


def test_trace_file_format(tmp_path):
    good = tmp_path / "t.txt"
    good.write_text("0 0 5 3 00ff80\n1 0 5 3 010203\n")
    assert read_trace(good) == {(0, 0): (5, b"\x00\xff\x80"), (1, 0): (5, b"\x01\x02\x03")}
    for text in ("0 0 5 4 00ff80\n", "0 0 x 3 00ff80\n", "0 0 5 3 0zff80\n"):
        good.write_text(text)
        with pytest.raises(EdgekitError, match="trace file"):
            read_trace(good)
