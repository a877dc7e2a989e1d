"""`edgekit eval OUT --data x --labels y`: the accuracy of the exact integer model of an export,
computed by edgekit's integer reference, equals what the host C build gives on the same data
(the bundled Fashion-MNIST DS-CNN on its 200 test images); every user error is one sentence.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from cli_helpers import assert_user_error, call
from conftest import _need
from edgekit.api import load
from edgekit.export import export
from edgekit.targets import get_target
from opmodels import op_model

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
SUBSET = EXAMPLES / "fashion_test_subset.npz"
ACCURACY = re.compile(r"^accuracy: (\d+\.\d\d)% top-1 \(([\d,]+) of ([\d,]+) samples\) for the integer model of (.+) "
                      r"\((\d+) layers, edgekit's integer reference\)$")
THROUGHPUT = re.compile(r"^throughput: [\d,]+ samples/s \(([\d,]+) samples in \d+\.\d\d s, batches of ([\d,]+)\)$")


def number(text: str) -> int:
    return int(text.replace(",", ""))


@pytest.fixture(scope="module")
def fashion(tmp_path_factory) -> Path:
    """The bundled example exported for the host, with its host C build's outputs on the subset."""
    out = tmp_path_factory.mktemp("eval") / "fashion"
    export(EXAMPLES / "fashion_dscnn.h5", out, get_target("host"), calib=EXAMPLES / "fashion_calib.npy")
    return out


@pytest.fixture(scope="module")
def host_outputs(fashion) -> np.ndarray:
    return load(fashion).predict(np.load(SUBSET)["x"])


def test_accuracy_equals_the_host_c_build(fashion, host_outputs, tmp_path, capsys):
    data = np.load(SUBSET)
    rc, out, err = call(capsys, "eval", fashion, "--data", SUBSET, "--labels", SUBSET,
                        "--out", tmp_path / "preds.npy", "--save-outputs", tmp_path / "y.npy")
    assert rc == 0 and err == "", err
    lines = out.splitlines()
    m = ACCURACY.match(lines[0])
    assert m and THROUGHPUT.match(lines[1]) and len(lines) == 2, out
    host_correct = int((host_outputs.argmax(axis=1) == data["y"]).sum())
    assert (number(m.group(2)), number(m.group(3))) == (host_correct, 200)
    assert m.group(1) == f"{100 * host_correct / 200:.2f}"
    assert host_correct == 182          # 91.0 %, as the README reports for the firmware
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), host_outputs)
    np.testing.assert_array_equal(np.load(tmp_path / "preds.npy"), host_outputs.argmax(axis=1))


def test_int8_data_batches_and_npy_labels(fashion, host_outputs, tmp_path, capsys):
    """int8 data is used as is; the batch size changes nothing; .npy labels work as well."""
    data = np.load(SUBSET)
    report = load(fashion).report
    xq = np.clip(np.round(data["x"] / np.float32(report["input"]["scale"])) + report["input"]["zero_point"],
                 -128, 127).astype(np.int8)
    np.save(tmp_path / "x.npy", xq)
    np.save(tmp_path / "y.npy", data["y"].astype(np.int64))
    rc, out, err = call(capsys, "eval", fashion, "--data", tmp_path / "x.npy", "--labels", tmp_path / "y.npy",
                        "--batch", "7", "--save-outputs", tmp_path / "o.npy")
    assert rc == 0, err
    assert number(ACCURACY.match(out.splitlines()[0]).group(2)) == 182
    assert THROUGHPUT.match(out.splitlines()[1]).group(2) == "7"
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), host_outputs)


def test_without_labels_summarizes_predictions(fashion, host_outputs, tmp_path, capsys):
    rc, out, err = call(capsys, "eval", fashion, "--data", SUBSET, "--out", tmp_path / "p.npy")
    assert rc == 0, err
    first = out.splitlines()[0]
    assert first.startswith(f"predictions of the integer model of {fashion} (10 layers, edgekit's integer "
                            "reference) for 200 samples: class ")
    preds = host_outputs.argmax(axis=1)
    top = np.bincount(preds).argmax()
    assert f"class {top}: {np.bincount(preds)[top]}" in first
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), preds)


@pytest.fixture(scope="module")
def fc_export(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("eval_fc")
    (d / "fc.tflite").write_bytes(op_model("fc_1d_u7"))
    export(d / "fc.tflite", d / "out", get_target("host"))
    return d / "out"


def _save(path: Path, value) -> Path:
    if isinstance(value, bytes):
        path.write_bytes(value)
    elif isinstance(value, dict):
        np.savez(path, **value)
    else:
        np.save(path, value)
    return path


X = np.zeros((5, 16), np.float32)


@pytest.mark.parametrize("data, labels, args, words", [
    (X, None, ["--batch", "0"], ["--batch 0", "at least 1"]),
    (np.zeros((5, 15), np.float32), None, [], ["[5, 15]", "[N, 16]"]),
    (np.zeros((0, 16), np.float32), None, [], ["no samples"]),
    (np.zeros((5, 16), np.uint8), None, [], ["uint8", "int8", "float"]),
    (b"not numpy\n", None, [], ["x.npy", "not a .npy or .npz"]),
    ({"a": X, "b": X}, None, [], ["holds the arrays a, b", "'x'"]),
    (X, np.arange(4), [], ["4 labels for 5 samples"]),
    (X, np.array([0, 1, 2, 3, 7]), [], ["label 7 of sample 4", "0 to 6"]),
    (X, np.array([0, 1, 2, 3, -1]), [], ["label -1 of sample 4"]),
    (X, np.full(5, 0.5), [], ["non-integer"]),
    (X, np.zeros((5, 2, 2), np.int64), [], ["[5, 2, 2]", "one integer class per sample"]),
], ids=["batch0", "shape", "empty", "uint8", "not_npy", "npz_keys", "labels_short", "label_range",
        "label_negative", "label_float", "label_shape"])
def test_user_errors(fc_export, tmp_path, capsys, data, labels, args, words):
    x = _save(tmp_path / ("x.npz" if isinstance(data, dict) else "x.npy"), data)
    argv = ["eval", fc_export, "--data", x, *args]
    if labels is not None:
        argv += ["--labels", _save(tmp_path / "y.npy", labels)]
    rc, out, err = call(capsys, *argv)
    assert_user_error(rc, err, *words)
    assert out == ""


def test_missing_files(fc_export, tmp_path, capsys):
    rc, out, err = call(capsys, "eval", tmp_path / "nope", "--data", tmp_path / "x.npy")
    assert_user_error(rc, err, "nope", "not an edgekit export")
    rc, out, err = call(capsys, "eval", fc_export, "--data", tmp_path / "x.npy")
    assert_user_error(rc, err, "--data", "x.npy", "does not exist")
    np.save(tmp_path / "x.npy", X)
    rc, out, err = call(capsys, "eval", fc_export, "--data", tmp_path / "x.npy", "--labels", tmp_path / "y.npy")
    assert_user_error(rc, err, "--labels", "y.npy", "does not exist")
    rc, out, err = call(capsys, "eval", fc_export, "--data", tmp_path / "x.npy", "--out", tmp_path / "no" / "p.npy")
    assert_user_error(rc, err, "--out", "does not exist")
    assert out == "" and not (tmp_path / "no").exists()


def test_full_test_set_accuracy_equals_litert_int8(fashion, tmp_path, capsys):
    """On all 10,000 Fashion-MNIST test images (Debian's dataset-fashion-mnist), the exact integer
    model scores the int8 accuracy measured with LiteRT's reference kernels (fashion_dscnn.json)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("fashion_mnist", EXAMPLES / "fashion_mnist.py")
    fashion_mnist = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fashion_mnist)
    try:
        x, y = fashion_mnist.load_split("test")
    except (OSError, ValueError) as e:   # skips on a user's machine, fails under CI (.ci/run installs it)
        _need(False, f"Fashion-MNIST is not installed (sudo apt-get install dataset-fashion-mnist): {e}")
    np.save(tmp_path / "x.npy", fashion_mnist.to_model_input(x))
    np.save(tmp_path / "y.npy", y)
    rc, out, err = call(capsys, "eval", fashion, "--data", tmp_path / "x.npy", "--labels", tmp_path / "y.npy")
    assert rc == 0, err
    m = ACCURACY.match(out.splitlines()[0])
    expected = json.loads((EXAMPLES / "fashion_dscnn.json").read_text())["int8_test_accuracy"]
    assert m and number(m.group(3)) == 10000 and number(m.group(2)) == round(expected * 10000), out
