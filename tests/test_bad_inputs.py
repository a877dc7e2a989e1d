"""Bad input is part of the interface: `edgekit export` given a bad model, bad calibration data,
a model it cannot compile or fit, hostile names, or a bad output directory.

Every case runs the real CLI (in a subprocess, or edgekit.cli.main in-process where TensorFlow
would otherwise be imported again) and checks three things: one line "edgekit: error: ..." on
stderr naming what is wrong and what to do, exit status 2, and the disk: nothing half-written.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import subprocess
import sys
import warnings
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

import edgekit
from cli_helpers import assert_not_written, assert_user_error, call, leftovers, patched, run_edgekit
from conftest import assert_bit_exact, test_inputs
from edgekit.cli import main
from edgekit.run.reference import reference_outputs
from opmodels import _convert, cache_dir, op_model

FC = "fc_1d_u7"              # int8 FULLY_CONNECTED 16 -> 7: the small valid model most cases start from
MULTI = "add_conv_conv"      # CONV_2D x2 + ADD: intermediate tensors in the arena, three layer comments


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def snapshot(d: Path) -> dict[str, str]:
    """Every file under d (relative path -> sha256) to show a directory was left untouched."""
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.fixture
def fc_model(tmp_path) -> Path:
    path = tmp_path / "fc.tflite"
    path.write_bytes(op_model(FC))
    return path


# --------------------------------------------------------------------------
# Models built with Keras, once per session (disk-cached where conversion is needed)
# --------------------------------------------------------------------------

def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf
    return tf, keras


def _cached_tflite(name: str, build) -> bytes:
    """build() -> (keras model, representative samples); converted to int8 once per TF version."""
    key = hashlib.sha256(f"{name}-v1-{metadata.version('tensorflow')}-{metadata.version('keras')}"
                         .encode()).hexdigest()[:16]
    path = cache_dir() / f"bad-inputs-{name}-{key}.tflite"
    if path.exists():
        return path.read_bytes()
    tf, _ = _tf()
    model, samples = build()
    data = bytes(_convert(tf, model, samples))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return data


def _samples(shape, n=8, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, (1, *shape)).astype(np.float32) for _ in range(n)]


def _ad01_like():
    """The MLPerf Tiny anomaly-detection autoencoder's shape: Dense 640 -> 128 x4 -> 8 -> 128 x4 -> 640
    (about 270 KB of int8 weights)."""
    _, keras = _tf()
    keras.utils.set_random_seed(1)
    x = inp = keras.Input((640,))
    for units in (128, 128, 128, 128, 8, 128, 128, 128, 128):
        x = keras.layers.Dense(units, activation="relu")(x)
    return keras.Model(inp, keras.layers.Dense(640)(x)), _samples((640,))


@pytest.fixture(scope="session")
def ad01_tflite() -> bytes:
    return _cached_tflite("ad01-like", _ad01_like)


@pytest.fixture(scope="session")
def keras_files(tmp_path_factory) -> dict[str, Path]:
    """Keras 2 (tf_keras) and Keras 3 files: with Lambda layers, weights only, and plain models."""
    d = tmp_path_factory.mktemp("keras")
    tf, keras = _tf()
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    m2 = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(3),
                              tf_keras.layers.Lambda(lambda x: x * 2.0, name="double_it")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # "HDF5 is a legacy format": the point here
        m2.save(str(d / "lambda_k2.h5"))
    plain2 = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(3)])
    plain2.save_weights(str(d / "weights_only.h5"))

    keras.utils.set_random_seed(0)
    m3 = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
                           keras.layers.Lambda(lambda x: x * 2.0, name="triple_it")])
    m3.save(d / "lambda_k3.keras")
    inner = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda x: x + 1.0, name="deep_lambda")],
                             name="inner")
    outer = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), inner])
    outer.save(d / "nested_lambda.keras")

    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"),
                              keras.layers.Dense(2)])
    dense.save(d / "dense.keras")

    # An op edgekit lacks, between two supported layers so the op keeps its Keras layer's name.
    for kind, layer in (("mul", keras.layers.Multiply), ("sub", keras.layers.Subtract)):
        inp = keras.Input((8,))
        a = keras.layers.Dense(6, name="branch_a")(inp)
        b = keras.layers.Dense(6, name="branch_b")(inp)
        y = layer(name=f"my_{kind}")([a, b])
        keras.Model(inp, keras.layers.Dense(3, name="head")(y)).save(d / f"{kind}.keras")
    return {p.stem: p for p in d.iterdir()}


@pytest.fixture(scope="session")
def float_tflite(keras_files) -> bytes:
    """A float32 TFLite model (converted without int8 quantization)."""
    tf, keras = _tf()
    model = keras.models.load_model(keras_files["dense"], compile=False)
    return bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())


# --------------------------------------------------------------------------
# 1. The model file itself: missing, a directory, unknown format, empty, corrupt
# --------------------------------------------------------------------------

def test_missing_model_file(tmp_path):
    p = run_edgekit("export", "nope.tflite", "-o", "out", cwd=tmp_path)
    assert_user_error(p.returncode, p.stderr, "nope.tflite", "does not exist")
    assert p.stdout == ""
    assert_not_written(tmp_path / "out")


def test_directory_as_model(tmp_path):
    (tmp_path / "model.tflite").mkdir()
    p = run_edgekit("export", "model.tflite", "-o", "out", cwd=tmp_path)
    assert_user_error(p.returncode, p.stderr, "model.tflite", "is a directory", ".tflite")
    assert_not_written(tmp_path / "out")


def test_unknown_extension(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07" + bytes(100))
    p = run_edgekit("export", "model.onnx", "-o", "out", cwd=tmp_path)
    assert_user_error(p.returncode, p.stderr, "model.onnx", ".onnx", ".h5", ".keras", ".tflite")
    assert_not_written(tmp_path / "out")


@pytest.mark.parametrize("name", ["empty.tflite", "empty.h5", "empty.keras"])
def test_empty_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    p = run_edgekit("export", name, "-o", "out", "--calib", "random", cwd=tmp_path)
    assert_user_error(p.returncode, p.stderr, name, "empty")
    assert_not_written(tmp_path / "out")


def _corrupt_variants() -> dict[str, bytes]:
    good = op_model(FC)
    rng = np.random.default_rng(7)
    noise = bytes(rng.integers(0, 256, 2000, dtype=np.uint8))
    out = {"random": noise, "random_with_TFL3": noise[:4] + b"TFL3" + noise[8:]}
    for cut in (4, 8, 12, 24, 64, len(good) // 3, len(good) // 2, len(good) - 16, len(good) - 1):
        out[f"truncated_{cut}"] = good[:cut]
    return out


@pytest.mark.parametrize("variant", list(_corrupt_variants()))
def test_corrupt_tflite(tmp_path, variant):
    (tmp_path / "bad.tflite").write_bytes(_corrupt_variants()[variant])
    p = run_edgekit("export", "bad.tflite", "-o", "out", cwd=tmp_path)
    line = assert_user_error(p.returncode, p.stderr, "bad.tflite")
    assert re.search(r"corrupt|truncated|not a TFLite flatbuffer", line), line
    assert p.stdout == ""
    assert_not_written(tmp_path / "out")


def test_flipped_bytes_never_crash(tmp_path, capsys):
    """Bytes flipped inside a valid model (fixed seed): each export either succeeds (only weights
    changed) or fails with one line; never an exception, never a half-written directory."""
    good = op_model(MULTI)
    rng = np.random.default_rng(2024)
    outcomes = {"ok": 0, "error": 0}
    for i in range(150):
        data = bytearray(good)
        lo, hi = 8, len(good)
        for pos in rng.integers(lo, hi, size=int(rng.integers(1, 5))):
            data[pos] ^= int(rng.integers(1, 256))
        model = tmp_path / f"flip{i}.tflite"
        model.write_bytes(bytes(data))
        out = tmp_path / f"out{i}"
        rc, _, err = call(capsys, "export", model, "-o", out, "--target", "cortex-m4")
        if rc == 0:
            outcomes["ok"] += 1
            assert (out / "report.json").exists()
        else:
            assert_user_error(rc, err)
            assert_not_written(out)
            outcomes["error"] += 1
    assert outcomes["error"] > 50, outcomes      # most flips hit structure, not weights


@pytest.mark.parametrize("edit, words", [
    (lambda m: setattr(m.subgraphs[0], "inputs", np.array([999], dtype=np.int32)),
     ["corrupt", "subgraph input", "999"]),
    (lambda m: setattr(m.subgraphs[0].operators[0], "outputs", np.array([-3], dtype=np.int32)),
     ["corrupt", "output of operator 0"]),
    (lambda m: setattr(m.subgraphs[0].operators[0], "opcodeIndex", 77),
     ["corrupt", "opcode index"]),
], ids=["input_index", "output_index", "opcode_index"])
def test_inconsistent_flatbuffer(tmp_path, edit, words):
    """Well-formed flatbuffers whose indices point nowhere (these once raised IndexError)."""
    (tmp_path / "bad.tflite").write_bytes(patched(op_model(FC), edit))
    p = run_edgekit("export", "bad.tflite", "-o", "out", cwd=tmp_path)
    assert_user_error(p.returncode, p.stderr, "bad.tflite", "re-export", *words)
    assert_not_written(tmp_path / "out")


def test_zero_stride(tmp_path):
    """A stride of 0 in a conv op (once a ZeroDivisionError in the quantization helpers)."""
    def edit(m):
        m.subgraphs[0].operators[0].builtinOptions.strideH = 0
    (tmp_path / "bad.tflite").write_bytes(patched(op_model(MULTI), edit))
    p = run_edgekit("export", "bad.tflite", "-o", "out", cwd=tmp_path)
    assert_user_error(p.returncode, p.stderr, "bad.tflite", "corrupt", "strideH")
    assert_not_written(tmp_path / "out")


# --------------------------------------------------------------------------
# 2. Corrupt Keras files
# --------------------------------------------------------------------------

def test_random_bytes_h5(tmp_path):
    (tmp_path / "model.h5").write_bytes(bytes(np.random.default_rng(3).integers(0, 256, 4000, dtype=np.uint8)))
    p = run_edgekit("export", "model.h5", "--calib", "random", "-o", "out", cwd=tmp_path)
    assert_user_error(p.returncode, p.stderr, "model.h5", "HDF5")
    assert_not_written(tmp_path / "out")


def test_weights_only_h5(tmp_path, keras_files):
    p = run_edgekit("export", keras_files["weights_only"], "--calib", "random", "-o", "out", cwd=tmp_path)
    assert_user_error(p.returncode, p.stderr, "weights_only.h5", "no Keras model", "model.save")
    assert_not_written(tmp_path / "out")


@pytest.mark.parametrize("how", ["random", "truncated", "no_config"])
def test_corrupt_keras_archive(tmp_path, keras_files, how):
    path = tmp_path / "bad.keras"
    good = keras_files["dense"].read_bytes()
    if how == "random":
        path.write_bytes(bytes(np.random.default_rng(4).integers(0, 256, 4000, dtype=np.uint8)))
    elif how == "truncated":
        path.write_bytes(good[: len(good) // 2])
    else:   # a valid zip without config.json
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("metadata.json", "{}")
    p = run_edgekit("export", "bad.keras", "--calib", "random", "-o", "out", cwd=tmp_path)
    assert_user_error(p.returncode, p.stderr, "bad.keras", ".keras archive", "corrupt")
    assert_not_written(tmp_path / "out")


# --------------------------------------------------------------------------
# 3. Lambda layers are refused before anything is deserialized
# --------------------------------------------------------------------------

def _export_in_fresh_process(model: Path, cwd: Path) -> subprocess.CompletedProcess:
    """`edgekit export model --calib random` via cli.main in a new interpreter that then prints which
    of Keras, tf_keras and TensorFlow got imported (none may be, for a refused model)."""
    probe = ("import sys\nfrom edgekit.cli import main\n"
             f"rc = main(['export', {str(model)!r}, '--calib', 'random', '-o', 'out'])\n"
             "loaded = sorted(m for m in ('keras', 'tf_keras', 'tensorflow') if m in sys.modules)\n"
             "print('LOADED', loaded)\nsys.exit(rc)\n")
    return subprocess.run([sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("stem, layer, kind", [
    ("lambda_k2", "double_it", "Lambda"),
    ("lambda_k3", "triple_it", "Lambda"),
    ("nested_lambda", "deep_lambda", "Lambda"),
])
def test_lambda_refused_without_loading_keras(tmp_path, keras_files, stem, layer, kind):
    """The check reads the stored config as JSON: neither Keras nor TensorFlow is even imported."""
    model = keras_files[stem]
    p = _export_in_fresh_process(model, tmp_path)
    assert_user_error(p.returncode, p.stderr, model.name, f"'{layer}'", kind, "never runs code")
    assert "LOADED []" in p.stdout, p.stdout
    assert_not_written(tmp_path / "out")


def _rewrite_keras_config(src: Path, dest: Path, edit) -> Path:
    """A copy of a .keras archive with config.json replaced by edit(config) (dict or raw text)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dest, "w") as zout:
        new = edit(json.loads(zin.read("config.json")))
        for item in zin.namelist():
            data = zin.read(item)
            if item == "config.json":
                data = new if isinstance(new, (bytes, str)) else json.dumps(new)
            zout.writestr(item, data)
    return dest


def _add_layer(obj):
    def edit(config):
        config["config"]["layers"].append(obj)
        return config
    return edit


def _dense_activation(obj):
    def edit(config):
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "Dense":
                layer["config"]["activation"] = obj
        return config
    return edit


@pytest.mark.parametrize("edit, words", [
    (_add_layer({"module": "os", "class_name": "system", "config": "touch PWNED", "registered_name": "system"}),
     ["'system'", "module 'os'", "not from Keras", "never runs code"]),
    (_dense_activation({"module": "os", "class_name": "function", "config": "system",
                        "registered_name": "system"}),
     ["module 'os'", "not from Keras"]),
    (lambda c: {"module": "subprocess", "class_name": "check_output",
                "config": {"args": ["touch", "PWNED"]}, "registered_name": None},
     ["'check_output'", "module 'subprocess'", "not from Keras"]),
    (_add_layer({"class_name": ["Lambda"], "config": {}}), ["class name", "not a string"]),
    (lambda c: "[" * 5000 + "]" * 5000, [".keras archive", "corrupt"]),
    (lambda c: b"\xff\xfe{}", [".keras archive", "corrupt"]),
], ids=["os_system_layer", "os_activation", "subprocess_model", "list_class_name", "deep_nesting", "bad_utf8"])
def test_keras_config_is_checked_before_keras_sees_it(tmp_path, keras_files, edit, words):
    """Configs naming classes from other modules (what CVE-2025-1550 abused) or malformed ones are
    refused by edgekit itself, before Keras is imported; nothing from them runs."""
    model = _rewrite_keras_config(keras_files["dense"], tmp_path / "crafted.keras", edit)
    p = _export_in_fresh_process(model, tmp_path)
    assert_user_error(p.returncode, p.stderr, "crafted.keras", *words)
    assert "LOADED []" in p.stdout, p.stdout
    assert not (tmp_path / "PWNED").exists()
    assert_not_written(tmp_path / "out")


@pytest.mark.parametrize("config", [b"\xff\xfe not utf-8", b"{not json", b"[" * 5000])
def test_h5_with_bad_model_config(tmp_path, config):
    import h5py
    with h5py.File(tmp_path / "model.h5", "w") as f:
        f.attrs["keras_version"] = b"2.21.0"
        f.attrs["model_config"] = np.bytes_(config)
    p = run_edgekit("export", "model.h5", "--calib", "random", "-o", "out", cwd=tmp_path)
    assert_user_error(p.returncode, p.stderr, "model.h5", "not valid JSON", "corrupt")
    assert_not_written(tmp_path / "out")


# --------------------------------------------------------------------------
# 4. Calibration data
# --------------------------------------------------------------------------

def test_keras_without_calib(tmp_path, keras_files):
    p = run_edgekit("export", keras_files["dense"], "-o", "out", cwd=tmp_path)
    assert_user_error(p.returncode, p.stderr, "dense.keras", "--calib", "--calib random", "int8")
    assert_not_written(tmp_path / "out")


def test_calib_random_warns_and_succeeds(tmp_path, keras_files, capsys):
    out = tmp_path / "out"
    rc, stdout, err = call(capsys, "export", keras_files["dense"], "--calib", "random", "-o", out)
    assert rc == 0, err
    assert "WARNING" in err and "--calib random" in err and "accuracy" in err, err
    assert "Traceback" not in err
    assert (out / "report.json").exists() and (out / "model.c").exists()
    assert json.loads((out / "report.json").read_text())["input"]["shape"] == [1, 4]
    assert f"wrote {out}" in stdout
    assert leftovers(out) == []


@pytest.mark.parametrize("content, words", [
    (np.zeros((8, 5), np.float32), ["calib.npy", "[8, 5]", "[N, 4]"]),
    (np.zeros((0, 4), np.float32), ["calib.npy", "no samples"]),
    (np.full((8, 4), "a"), ["calib.npy", "not numbers"]),
    (b"1.0 2.0 3.0 4.0\n", ["calib.npy", "not a .npy or .npz"]),
], ids=["wrong_shape", "no_samples", "strings", "text_file"])
def test_bad_calib_file(tmp_path, keras_files, capsys, content, words):
    calib = tmp_path / "calib.npy"
    if isinstance(content, bytes):
        calib.write_bytes(content)
    else:
        np.save(calib, content)
    out = tmp_path / "out"
    rc, stdout, err = call(capsys, "export", keras_files["dense"], "--calib", calib, "-o", out)
    assert_user_error(rc, err, *words)
    assert_not_written(out)


def test_calib_not_npy_and_missing(tmp_path, keras_files, capsys, fc_model):
    out = tmp_path / "out"
    rc, _, err = call(capsys, "export", keras_files["dense"], "--calib", fc_model, "-o", out)
    assert_user_error(rc, err, "fc.tflite", "not a .npy or .npz", "numpy.save")
    rc, _, err = call(capsys, "export", keras_files["dense"], "--calib", tmp_path / "nope.npy", "-o", out)
    assert_user_error(rc, err, "nope.npy", "does not exist", "--calib random")
    assert_not_written(out)


# --------------------------------------------------------------------------
# 5. Models edgekit cannot compile
# --------------------------------------------------------------------------

@pytest.mark.parametrize("kind, op", [("mul", "MUL"), ("sub", "SUB")])
def test_unsupported_op(tmp_path, keras_files, capsys, kind, op):
    out = tmp_path / "out"
    rc, _, err = call(capsys, "export", keras_files[kind], "--calib", "random", "-o", out)
    err = err.split("\n", 1)[1]          # after the --calib random warning
    line = assert_user_error(rc, err, f"op {op}", f"my_{kind}", "supported ops", "FULLY_CONNECTED", "CONV_2D")
    assert op not in line.split("supported ops:")[1].replace(",", " ").split()
    assert_not_written(out)


def test_float_model(tmp_path, float_tflite):
    (tmp_path / "float.tflite").write_bytes(float_tflite)
    p = run_edgekit("export", "float.tflite", "-o", "out", cwd=tmp_path)
    assert_user_error(p.returncode, p.stderr, "float32", "int8", "full-integer")
    assert_not_written(tmp_path / "out")


def test_two_subgraphs(tmp_path):
    data = patched(op_model(FC), lambda m: m.subgraphs.append(copy.deepcopy(m.subgraphs[0])))
    (tmp_path / "two.tflite").write_bytes(data)
    p = run_edgekit("export", "two.tflite", "-o", "out", cwd=tmp_path)
    assert_user_error(p.returncode, p.stderr, "two.tflite", "2 subgraphs", "single-subgraph")
    assert_not_written(tmp_path / "out")


# --------------------------------------------------------------------------
# 6. Models that do not fit the part
# --------------------------------------------------------------------------

def _needs_and_over(line: str) -> tuple[int, int, int]:
    m = re.search(r"needs about ([\d,]+) bytes of (?:flash|RAM).* has ([\d,]+): ([\d,]+) bytes too many", line)
    assert m, line
    return tuple(int(g.replace(",", "")) for g in m.groups())


@pytest.mark.parametrize("option, size, memory", [("--ram", "8K", "RAM"), ("--flash", "16K", "flash")])
def test_does_not_fit(tmp_path, ad01_tflite, option, size, memory):
    (tmp_path / "ad01.tflite").write_bytes(ad01_tflite)
    p = run_edgekit("export", "ad01.tflite", "--target", "cortex-m0plus", option, size, "-o", "out", cwd=tmp_path)
    line = assert_user_error(p.returncode, p.stderr, f"bytes of {memory}", "cortex-m0plus", "too many",
                             option, "smaller model")
    needs, has, over = _needs_and_over(line)
    assert has == int(size[:-1]) * 1024 and needs - has == over > 0
    assert_not_written(tmp_path / "out")


def test_fits_with_the_parts_defaults(tmp_path, ad01_tflite):
    (tmp_path / "ad01.tflite").write_bytes(ad01_tflite)
    p = run_edgekit("export", "ad01.tflite", "--target", "cortex-m0plus", "-o", "out", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "out" / "link.ld").exists()


@pytest.mark.parametrize("option, value, words", [
    ("--ram", "12Q", ["'12Q' is not a size", "64K"]),
    ("--flash", "0", ["'0'", "positive"]),
    ("--ram", "-4K", ["'-4K'", "positive"]),
    ("--flash", "1.5M", ["'1.5M' is not a size"]),
])
def test_bad_size(tmp_path, fc_model, option, value, words):
    p = run_edgekit("export", fc_model, f"{option}={value}", "-o", "out", cwd=tmp_path)
    assert_user_error(p.returncode, p.stderr, *words)
    assert_not_written(tmp_path / "out")


# --------------------------------------------------------------------------
# 7. Names from the model file (and --name) never reach C as code
# --------------------------------------------------------------------------

HOSTILE_NAMES = [
    b'*/ #include "/etc/passwd" /*\n evil();',
    b"x\n#define int void\nint evil2(void) { return 1; }\n",
    b"line\\\nsplice(); // \\",
    b"??/\nevil3(); ??= ??( ??' ??!",
    b'"); system("rm -rf /"); ("',
    "\u202e*/ \u00fcn\u00efc\u00f6d\u00e9 \u2028evil4(); \u0000 /*".encode(),
    b"\xff\xfe*/ evil5(); /*\r\n\x1b]0;pwned\x07\x1b[2J",
    b"%s%n%x */" * 30,
]
# Not even inside a comment (a bare word like "passwd" may survive there as harmless text).
DANGEROUS = ['#include "/', '"/etc', "#define int", "evil(", "evil2(", "evil3(", "evil4(", "evil5(",
             "system(", "??", "\\", "%n", "splice(", "\x07", "\x1b", "\r"]


def _hostile(tflite: bytes) -> bytes:
    def edit(m):
        for i, t in enumerate(m.subgraphs[0].tensors):
            t.name = HOSTILE_NAMES[i % len(HOSTILE_NAMES)]
        m.subgraphs[0].name = HOSTILE_NAMES[0]
        m.description = HOSTILE_NAMES[1]
        for sd in m.signatureDefs or []:
            sd.signatureKey = HOSTILE_NAMES[2]
    return patched(tflite, edit)


def _strip_comments(c: str) -> str:
    return re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", "", c, flags=re.S))


def test_hostile_tensor_names(tmp_path, capsys):
    """Tensor, subgraph and signature names crafted to break out of comments and strings: the
    generated code is exactly the code of the same model with clean names, the comments hold only
    a safe character set, it compiles with -Wall -Wextra -Werror and stays bit-exact."""
    clean, hostile = tmp_path / "clean.tflite", tmp_path / "hostile.tflite"
    clean.write_bytes(op_model(MULTI))
    hostile.write_bytes(_hostile(op_model(MULTI)))
    evil_name = 'm"; int evil(void); /* ??/\n*/'
    outs = {}
    for src in (clean, hostile):
        outs[src.stem] = tmp_path / f"out_{src.stem}"
        rc, stdout, err = call(capsys, "export", src, "--target", "host", "-o", outs[src.stem],
                               "--name", evil_name, "--show-plan")
        assert rc == 0, err
        assert all(c.isprintable() or c == "\n" for c in stdout + err), repr(stdout + err)

    for fname in ("model.c", "model.h"):
        text = (outs["hostile"] / fname).read_text(encoding="ascii")      # ASCII only
        code = _strip_comments(text)
        assert code == _strip_comments((outs["clean"] / fname).read_text()), f"{fname}: names reached code"
        assert "/*" not in code and "*/" not in code
        for bad in DANGEROUS:
            assert bad not in text, f"{fname} contains {bad!r}"
        for comment in re.findall(r"/\* Layer \d+: (.*?) \*/", text):
            assert re.fullmatch(r"[A-Za-z0-9_./:+\- >]*", comment), comment
    header = (outs["hostile"] / "model.h").read_text()
    m = re.search(r'#define EK_MODEL_NAME\s+"([^"\n]*)"', header)
    assert m and re.fullmatch(r"[A-Za-z0-9_-]+", m.group(1)), m
    assert m.group(1).startswith("m") and "evil" in m.group(1)        # sanitized, not dropped
    assert json.loads((outs["hostile"] / "report.json").read_text())["model"] == m.group(1)

    compiled = edgekit.load(outs["hostile"])
    x = test_inputs(compiled.input_shape[1:], n=6, seed=5)
    assert_bit_exact(compiled.predict(x), reference_outputs(compiled.tflite_path, x), "hostile names")


def test_hostile_names_in_messages(tmp_path):
    """An unsupported op named with newlines and escapes still gives one printable line."""
    def edit(m):
        for t in m.subgraphs[0].tensors:
            t.name = b"evil\nedgekit: error: a fake second line\r\x1b[31m"
        m.operatorCodes[0].builtinCode = schema.BuiltinOperator.MUL
        m.operatorCodes[0].deprecatedBuiltinCode = schema.BuiltinOperator.MUL
    (tmp_path / "m.tflite").write_bytes(patched(op_model(FC), edit))
    p = run_edgekit("export", "m.tflite", "-o", "out", cwd=tmp_path)
    assert_user_error(p.returncode, p.stderr, "op MUL", "supported ops", "evil?edgekit")
    assert_not_written(tmp_path / "out")


def test_model_file_name_is_sanitized(tmp_path, capsys):
    model = tmp_path / 'we"ird *; ??= na\\me\n.tflite'
    model.write_bytes(op_model(FC))
    rc, _, err = call(capsys, "export", model, "-o", tmp_path / "out")
    assert rc == 0, err
    m = re.search(r'#define EK_MODEL_NAME\s+"([^"\n]*)"', (tmp_path / "out" / "model.h").read_text())
    assert m and re.fullmatch(r"[A-Za-z0-9_-]+", m.group(1)) and "we" in m.group(1), m


# --------------------------------------------------------------------------
# 8. The output directory
# --------------------------------------------------------------------------

def test_out_is_a_foreign_directory(tmp_path, fc_model):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    (out / "sub").mkdir()
    (out / "sub" / "data.bin").write_bytes(b"\x00\x01")
    before = snapshot(out)
    p = run_edgekit("export", fc_model, "-o", out, cwd=tmp_path)
    assert_user_error(p.returncode, p.stderr, str(out), "not empty", "not an earlier edgekit export")
    assert snapshot(out) == before
    assert leftovers(out) == []


def test_out_is_a_file(tmp_path, fc_model):
    (tmp_path / "out").write_text("a file")
    p = run_edgekit("export", fc_model, "-o", "out", cwd=tmp_path)
    assert_user_error(p.returncode, p.stderr, "out", "not a directory")
    assert (tmp_path / "out").read_text() == "a file"
    p = run_edgekit("export", fc_model, "-o", "out/sub", cwd=tmp_path)
    assert_user_error(p.returncode, p.stderr, "out/sub", "not a directory")
    assert leftovers(tmp_path / "out") == []


@pytest.mark.parametrize("out", [".", ""])
def test_out_is_the_current_directory(tmp_path, fc_model, out):
    """Even an empty cwd is refused: the export would rename the shell's directory away."""
    work = tmp_path / "work"
    work.mkdir()
    p = run_edgekit("export", fc_model, "-o", out, cwd=work)
    assert_user_error(p.returncode, p.stderr, "current directory", "-o out")
    assert list(work.iterdir()) == [] and sorted(os.listdir(tmp_path)) == ["fc.tflite", "work"]


def test_model_inside_the_out_dir(tmp_path, fc_model):
    assert run_edgekit("export", fc_model, "-o", "out", cwd=tmp_path).returncode == 0
    inside = tmp_path / "out" / "mine.tflite"
    inside.write_bytes(op_model(MULTI))
    before = snapshot(tmp_path / "out")
    p = run_edgekit("export", "out/mine.tflite", "-o", "out", cwd=tmp_path)
    assert_user_error(p.returncode, p.stderr, "mine.tflite", "inside the output directory")
    assert snapshot(tmp_path / "out") == before


def test_out_parent_cannot_be_created(tmp_path, fc_model):
    p = run_edgekit("export", fc_model, "-o", "/proc/no/such/dir", cwd=tmp_path)
    assert_user_error(p.returncode, p.stderr, "/proc/no/such/dir", "cannot create")


def test_reexport_replaces_earlier_export(tmp_path, capsys, fc_model):
    out = tmp_path / "out"
    assert call(capsys, "export", fc_model, "-o", out)[0] == 0
    (out / "stale.txt").write_text("from the earlier export")
    multi = tmp_path / "multi.tflite"
    multi.write_bytes(op_model(MULTI))
    rc, _, err = call(capsys, "export", multi, "-o", out)
    assert rc == 0, err
    assert not (out / "stale.txt").exists()
    assert json.loads((out / "report.json").read_text())["source"] == "multi.tflite"
    assert (out / "model.tflite").read_bytes() == multi.read_bytes()
    assert leftovers(out) == []


def test_failed_reexport_leaves_earlier_export(tmp_path, capsys, fc_model, ad01_tflite):
    out = tmp_path / "out"
    assert call(capsys, "export", fc_model, "-o", out, "--target", "cortex-m0plus")[0] == 0
    before = snapshot(out)
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(op_model(FC)[:300])
    big = tmp_path / "big.tflite"
    big.write_bytes(ad01_tflite)
    for argv, words in [((bad,), ["bad.tflite", "corrupt"]),
                        ((big, "--target", "cortex-m0plus", "--flash", "16K"), ["flash", "too many"]),
                        ((big, "--ram", "1K"), ["RAM", "too many"])]:
        rc, _, err = call(capsys, "export", *argv, "-o", out)
        assert_user_error(rc, err, *words)
        assert snapshot(out) == before
        assert leftovers(out) == []


@pytest.mark.parametrize("fail_at", ["write", "swap"])
def test_io_failure_while_writing(tmp_path, capsys, fc_model, monkeypatch, fail_at):
    """A disk error while writing (or while swapping the new export in): one line, the earlier
    export restored exactly, no temp directories left."""
    import edgekit.export as ex
    out = tmp_path / "out"
    assert call(capsys, "export", fc_model, "-o", out)[0] == 0
    before = snapshot(out)
    if fail_at == "write":
        def copyfile(src, dst):
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(ex.shutil, "copyfile", copyfile)
    else:
        real_rename, calls = os.rename, []

        def rename(a, b):
            calls.append((a, b))
            if len(calls) == 2:              # the earlier export is moved aside; the new one fails
                raise OSError(5, "Input/output error")
            return real_rename(a, b)
        monkeypatch.setattr(ex.os, "rename", rename)
    multi = tmp_path / "multi.tflite"
    multi.write_bytes(op_model(MULTI))
    rc, _, err = call(capsys, "export", multi, "-o", out)
    assert_user_error(rc, err, str(out), "cannot write")
    monkeypatch.undo()
    assert snapshot(out) == before
    assert leftovers(out) == []


def test_new_out_dir_not_created_on_failure(tmp_path, fc_model, ad01_tflite):
    big = tmp_path / "big.tflite"
    big.write_bytes(ad01_tflite)
    p = run_edgekit("export", big, "--target", "cortex-m0plus", "--ram", "8K", "-o", "deep/new/out", cwd=tmp_path)
    assert_user_error(p.returncode, p.stderr, "RAM")
    assert not (tmp_path / "deep").exists()


def test_h5_that_makes_hdf5_loop_forever_is_stopped_in_bounded_time(tmp_path):
    """A Keras 3 .h5 with one byte changed (found by fuzzing) makes HDF5 loop forever inside
    h5py; edgekit loads Keras files in a child process with a time limit."""
    import os
    import subprocess
    import sys
    import time
    src = Path(__file__).resolve().parent / "data" / "hdf5_loops_forever.h5"
    out = tmp_path / "out"
    env = dict(os.environ, EDGEKIT_KERAS_TIMEOUT="8")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "edgekit", "export", str(src), "--calib", "random",
                           "-o", str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert time.monotonic() - t0 < 60
    assert proc.returncode == 2
    assert "did not finish within 8 s" in proc.stderr and "corrupt" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()
