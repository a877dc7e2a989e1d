"""The `edgekit` command line: `verify` (good, tampered and non-exports; --inputs, --count,
--save-outputs), `targets`, `--version` and the unknown-target message.

Each case checks the printed text, the exit status (0 ok, 1 outputs differ, 2 user error) and
what is on disk afterwards.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgekit
from edgekit.cli import main
from edgekit.run.reference import reference_outputs
from edgekit.targets import TARGETS
from cli_helpers import assert_user_error, call, run_edgekit
from opmodels import op_model

FC = "fc_1d_u7"          # int8 FULLY_CONNECTED 16 -> 7
MATCH = re.compile(r"^(\d+)/(\d+) outputs match the TFLite reference \(host\)"
                   r"(?:; first difference at sample (\d+), index \[([\d, ]*)\]: got (-?\d+), reference (-?\d+))?$")


def snapshot(d: Path) -> dict[str, str]:
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def fc_export(tmp_path_factory) -> Path:
    """A host export of the FC model, built once (read-only for the tests; copy to tamper)."""
    d = tmp_path_factory.mktemp("cli")
    (d / "fc.tflite").write_bytes(op_model(FC))
    assert main(["export", str(d / "fc.tflite"), "--target", "host", "-o", str(d / "out")]) == 0
    edgekit.load(d / "out").predict(np.zeros((1, 16), np.int8))          # builds build/host/model_host
    return d / "out"


def _quantize(x: np.ndarray, report: dict) -> np.ndarray:
    scale, zp = report["input"]["scale"], report["input"]["zero_point"]
    return np.clip(np.round(x / np.float32(scale)) + zp, -128, 127).astype(np.int8)


# --------------------------------------------------------------------------
# verify
# --------------------------------------------------------------------------

def test_verify_ok(fc_export, capsys):
    before = snapshot(fc_export)
    rc, out, err = call(capsys, "verify", fc_export)
    assert rc == 0, err
    assert out.strip() == "10/10 outputs match the TFLite reference (host)"
    assert snapshot(fc_export) == before


def test_verify_not_an_export(tmp_path):
    p = run_edgekit("verify", "missing", cwd=tmp_path)
    assert_user_error(p.returncode, p.stderr, "missing", "not an edgekit export")
    d = tmp_path / "stuff"
    d.mkdir()
    (d / "model.c").write_text("int main(void) { return 0; }\n")
    before = snapshot(d)
    p = run_edgekit("verify", "stuff", cwd=tmp_path)
    assert_user_error(p.returncode, p.stderr, "stuff", "not an edgekit export", "report.json")
    assert snapshot(d) == before and not (d / "build").exists()


def test_verify_tampered_export(fc_export, tmp_path, capsys):
    """Flip the sign of one bias value in model.c: verify names how many samples match and the
    first differing byte, exits 1, and --save-outputs holds what the tampered C computed."""
    out = tmp_path / "out"
    shutil.copytree(fc_export, out)
    model_c = out / "model.c"
    text = model_c.read_text()
    m = re.search(r"static const int32_t ek_l0_bias\[\d+\] = \{\n\s*(-?\d+),", text)
    assert m and int(m.group(1)) != 0
    text = text[:m.start(1)] + str(-int(m.group(1))) + text[m.end(1):]
    model_c.write_text(text)

    x = np.random.default_rng(11).integers(-128, 128, size=(12, 16), dtype=np.int8)
    np.save(tmp_path / "x.npy", x)
    rc, stdout, err = call(capsys, "verify", out, "--inputs", tmp_path / "x.npy",
                           "--save-outputs", tmp_path / "y.npy")
    assert rc == 1, (stdout, err)
    assert "Traceback" not in err
    m = MATCH.match(stdout.strip())
    assert m and m.group(3) is not None, stdout
    got = np.load(tmp_path / "y.npy")
    ref = reference_outputs(out / "model.tflite", x)
    matching = int((got == ref).all(axis=1).sum())
    first = np.argwhere(got != ref)[0]
    assert (int(m.group(1)), int(m.group(2))) == (matching, 12) and matching < 12
    assert (int(m.group(3)), [int(v) for v in m.group(4).split(",")]) == (first[0], list(first[1:]))
    assert (int(m.group(5)), int(m.group(6))) == (got[tuple(first)], ref[tuple(first)])


def test_verify_inputs_wrong_shape(fc_export, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((3, 5), np.int8))
    rc, out, err = call(capsys, "verify", fc_export, "--inputs", tmp_path / "x.npy",
                        "--save-outputs", tmp_path / "y.npy")
    assert_user_error(rc, err, "[3, 5]", "[N, 16]")
    assert out == "" and not (tmp_path / "y.npy").exists()


@pytest.mark.parametrize("content, words", [
    (np.zeros((3, 16), np.int32), ["int32", "int8", "float32"]),
    (b"not numpy at all\n", ["x.npy"]),
], ids=["int32", "not_npy"])
def test_verify_inputs_unusable(fc_export, tmp_path, capsys, content, words):
    path = tmp_path / "x.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content)
    rc, _, err = call(capsys, "verify", fc_export, "--inputs", path)
    assert_user_error(rc, err, *words)


def test_verify_float_inputs_are_quantized(fc_export, tmp_path, capsys):
    """float32 inputs go through the model's input scale and zero point; --save-outputs writes the
    raw int8 outputs [N, *output_shape], equal to the reference on the quantized inputs."""
    x = np.random.default_rng(3).uniform(-1.5, 1.5, size=(5, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", x=x)
    report = json.loads((fc_export / "report.json").read_text())
    for inputs, saved in (("x.npy", "y.npy"), ("x.npz", "y2.npy")):
        rc, out, err = call(capsys, "verify", fc_export, "--inputs", tmp_path / inputs,
                            "--save-outputs", tmp_path / saved)
        assert rc == 0, err
        assert out.strip() == "5/5 outputs match the TFLite reference (host)"
        y = np.load(tmp_path / saved)
        assert y.dtype == np.int8 and y.shape == (5, *report["output"]["shape"][1:]) == (5, 7)
        np.testing.assert_array_equal(y, reference_outputs(fc_export / "model.tflite", _quantize(x, report)))


def test_verify_single_sample_without_batch_axis(fc_export, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.arange(-8, 8, dtype=np.int8))
    rc, out, err = call(capsys, "verify", fc_export, "--inputs", tmp_path / "x.npy")
    assert rc == 0, err
    assert out.strip() == "1/1 outputs match the TFLite reference (host)"


@pytest.mark.parametrize("count", ["0", "-3"])
def test_verify_bad_count(fc_export, capsys, count):
    rc, out, err = call(capsys, "verify", fc_export, f"--count={count}")
    assert_user_error(rc, err, f"--count {count}", "at least 1")
    assert out == ""


def test_verify_save_outputs_to_missing_directory(fc_export, tmp_path, capsys):
    target = tmp_path / "no" / "such" / "y.npy"
    rc, out, err = call(capsys, "verify", fc_export, "--save-outputs", target)
    assert_user_error(rc, err, str(target), "does not exist")
    assert out == "" and not (tmp_path / "no").exists()


def test_verify_count_and_seed(fc_export, tmp_path, capsys):
    """--count N random inputs with --seed: same seed, same outputs; every output saved."""
    saved = []
    for seed, name in ((4, "a.npy"), (4, "b.npy"), (5, "c.npy")):
        rc, out, err = call(capsys, "verify", fc_export, "--count", "3", "--seed", seed,
                            "--save-outputs", tmp_path / name)
        assert rc == 0 and out.strip() == "3/3 outputs match the TFLite reference (host)", err
        saved.append(np.load(tmp_path / name))
    assert saved[0].shape == (3, 7)
    np.testing.assert_array_equal(saved[0], saved[1])
    assert not np.array_equal(saved[0], saved[2])


def test_verify_emulate_needs_an_emulated_target(fc_export, capsys):
    rc, _, err = call(capsys, "verify", fc_export, "--emulate")
    assert_user_error(rc, err, "host", "no emulator board", "cortex-m4")


# --------------------------------------------------------------------------
# targets, --version, unknown target, usage
# --------------------------------------------------------------------------

def test_targets_lists_every_target(tmp_path):
    p = run_edgekit("targets", cwd=tmp_path)
    assert p.returncode == 0 and p.stderr == ""
    names = [line.split()[0] for line in p.stdout.strip().splitlines()]
    assert names == list(TARGETS)
    assert {"cortex-m4", "cortex-m7", "cortex-m3", "cortex-m0plus", "host"} <= set(names)
    for line, t in zip(p.stdout.strip().splitlines(), TARGETS.values()):
        assert t.description in line


def test_version(tmp_path):
    p = run_edgekit("--version", cwd=tmp_path)
    assert p.returncode == 0
    assert p.stdout.strip() == f"edgekit {edgekit.__version__}"


def test_console_script_matches_module(tmp_path):
    script = Path(sys.executable).parent / "edgekit"
    if not script.exists():
        pytest.skip(f"no console script beside {sys.executable}")
    p = subprocess.run([str(script), "--version"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == f"edgekit {edgekit.__version__}"


def test_unknown_target_lists_targets(tmp_path):
    (tmp_path / "fc.tflite").write_bytes(op_model(FC))
    p = run_edgekit("export", "fc.tflite", "--target", "cortex-m5", "-o", "out", cwd=tmp_path)
    line = assert_user_error(p.returncode, p.stderr, "unknown target 'cortex-m5'", "choose one of")
    for name in TARGETS:
        assert name in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv", [[], ["verify"], ["export"], ["frobnicate"]])
def test_usage_errors(tmp_path, argv):
    """argparse's own errors: usage and one error line, status 2, no traceback."""
    p = run_edgekit(*argv, cwd=tmp_path)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert p.stderr.startswith("usage: edgekit") and "error:" in p.stderr.strip().splitlines()[-1]
