"""Compressed variants of the three MLPerf Tiny reference models for tests and benchmarks: pruned,
clustered and pruned-then-clustered made with edgekit.train (what `edgekit compress` does), and an
INT4 variant made with tensorflow-model-optimization (tests/tfmot_int4.py), the one producer here of
TFLite's packed INT4 weight tensors.

    python tests/model_variants.py MODEL KIND OUT.tflite [MODEL KIND OUT.tflite ...]
    python tests/model_variants.py --paths MODEL KIND [MODEL KIND ...]    (the cached ones, as JSON)
        MODEL: kws | resnet | ad        KIND: pruned | clustered | pruned-clustered | int4

builds the variants in this (child) process. The in-process API, ``variant_path(model, kind)`` and
``variant_paths(pairs)``, runs this script with ``sys.executable`` (one child for the edgekit.train
kinds, on Keras 3, and one for int4: importing tfmot sets TF_USE_LEGACY_KERAS=1, which would break
Keras 3 in the same process) and caches the results under ``$EDGEKIT_TEST_CACHE/variants`` (default
``~/.cache/edgekit-tests/variants``), keyed by a hash of the builder's sources (this file and
edgekit/train, or tfmot_int4.py), the model files' bytes, the arguments and the package versions. A
build is deterministic: the same bytes alone or in a batch, run after run.

Sources: kws_ref_model_savedmodel/ (a Keras 2 SavedModel), pretrainedResnet.h5 and ad01.h5. Each is
fine-tuned for a few steps on self-distillation data: fixed-seed random inputs whose int8 images
cover the reference int8 model's whole input range, the float model itself as the teacher
(keras.distillation through edgekit.train.fit, labels unweighted); BatchNormalization statistics
stay frozen. The kinds, each `edgekit.train.compress` with a Recipe and no QAT, then the int8
conversion `edgekit export` makes of a Keras model (full-integer PTQ, int8 input and output):
  pruned     Recipe(prune=0.8): magnitude pruning of every Conv2D, DepthwiseConv2D and Dense
             kernel to exactly 80 % zeros, on a schedule over the fine-tune.
  clustered  Recipe(clusters=16): k-means to 16 shared values per layer, kept through the
             fine-tune: each output channel of the int8 model holds at most 16 distinct values.
  pruned-clustered
             Deep Compression's pipeline, Recipe(prune=0.8, clusters=16): pruned as above, then the
             remaining weights clustered to 16 values with the zeros kept: >= 75 % zeros AND at most
             16 distinct int8 values per output channel, zero included.
  int4       tfmot QAT with 4-bit weights (see tfmot_int4.py): INT4 weights for every CONV_2D,
             DEPTHWISE_CONV_2D and FULLY_CONNECTED.
The script checks the property its kind claims before it writes OUT (atomically), and prints one
JSON report line per variant (seconds per phase, bytes, per-layer statistics); the API keeps it as
OUT's .json.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from importlib import metadata
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
from conftest import SHARED_MODELS  # noqa: E402  (one place says where ../shared/models is)

MODELS = {
    # name: (the float Keras source, the reference int8 .tflite)
    "kws": ("kws_ref_model_savedmodel", "kws_ref_model.tflite"),
    "resnet": ("pretrainedResnet.h5", "pretrainedResnet_quant.tflite"),
    "ad": ("ad01.h5", "ad01_int8.tflite"),
}
KINDS = ("pruned", "clustered", "pruned-clustered", "int4")
SEED = 2026
SPARSITY = 0.8
CLUSTERS = 16
# The edgekit.train recipe of each kind but int4 (keyword arguments of edgekit.train.Recipe).
RECIPES = {"pruned": dict(prune=SPARSITY), "clustered": dict(clusters=CLUSTERS),
           "pruned-clustered": dict(prune=SPARSITY, clusters=CLUSTERS)}
# Fine-tuning and calibration samples per model: a few seconds on two shared cores.
TRAIN_SAMPLES = {"kws": 256, "resnet": 128, "ad": 256}
BATCH = 32
EPOCHS = 2
CALIB_SAMPLES = 32
LEARNING_RATE = 1e-4
CHILD_TIMEOUT_S = 300  # per variant

WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
# The kinds whose weight tensors must be sparse, and those limited to CLUSTERS values per channel
# (edgekit.train compresses every conv, depthwise and FC layer).
SPARSE_KINDS = ("pruned", "pruned-clustered")
CLUSTERED_KINDS = ("clustered", "pruned-clustered")
INT4 = 17  # TensorType.INT4


# --------------------------------------------------------------------------
# In-process API (no TensorFlow import)
# --------------------------------------------------------------------------

def cache_dir() -> Path:
    return Path(os.environ.get("EDGEKIT_TEST_CACHE") or Path.home() / ".cache" / "edgekit-tests") / "variants"


def _check_args(model: str, kind: str) -> None:
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}: one of {', '.join(MODELS)}")
    if kind not in KINDS:
        raise ValueError(f"unknown variant kind {kind!r}: one of {', '.join(KINDS)}")


def _require_models() -> Path:
    if not SHARED_MODELS.is_dir():
        raise FileNotFoundError(f"the MLPerf Tiny models are not at {SHARED_MODELS} (only the project's CI and "
                                "developer machines have ../shared): cannot build compressed model variants")
    return SHARED_MODELS


def _hash_path(h, path: Path) -> None:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(str(f.relative_to(path.parent)).encode() + b"\0")
        h.update(f.read_bytes())


def _builder_sources(kind: str) -> list[Path]:
    """The files whose code builds a variant of `kind`."""
    if kind == "int4":
        return [Path(__file__).resolve(), TESTS / "tfmot_int4.py"]
    return [Path(__file__).resolve(), REPO / "edgekit" / "frontend" / "keras.py",
            *sorted((REPO / "edgekit" / "train").glob("*.py"))]


def _builder_packages(kind: str) -> tuple[str, ...]:
    return (("tensorflow", "tf-keras", "tensorflow-model-optimization") if kind == "int4"
            else ("tensorflow", "keras", "tf-keras"))


def cache_key(model: str, kind: str) -> str:
    """Hash of the builder's sources, the model files' bytes, the arguments and the package versions."""
    _check_args(model, kind)
    root = _require_models()
    h = hashlib.sha256()
    for source in _builder_sources(kind):
        h.update(source.name.encode() + b"\0" + source.read_bytes())
    for name in MODELS[model]:
        _hash_path(h, root / name)
    h.update(f"{model}\0{kind}".encode())
    for dist in _builder_packages(kind):
        h.update(f"\0{dist}={metadata.version(dist)}".encode())
    return h.hexdigest()[:20]


def _cached(model: str, kind: str) -> Path:
    return cache_dir() / f"{model}-{kind}-{cache_key(model, kind)}.tflite"


def variant_path(model: str, kind: str) -> Path:
    """The variant's .tflite, built in a child process on first use and cached on disk."""
    return variant_paths([(model, kind)])[(model, kind)]


def variant_paths(pairs) -> dict[tuple[str, str], Path]:
    """{(model, kind): .tflite path} for every pair; the missing ones are built in one child process
    (one per Keras: edgekit.train's kinds on Keras 3, int4 on tf_keras).

    Safe for concurrent callers: lock files (taken in a fixed order) make one caller build a variant
    while the others wait, and each file appears by an atomic rename, so no reader sees a partial one."""
    wanted = {(m, k): _cached(m, k) for m, k in pairs}
    if all(p.exists() for p in wanted.values()):
        return wanted
    cache_dir().mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        for pair in sorted(wanted):
            lock = stack.enter_context(open(wanted[pair].with_name(wanted[pair].name + ".lock"), "w"))
            fcntl.flock(lock, fcntl.LOCK_EX)
        missing = [pair for pair in sorted(wanted) if not wanted[pair].exists()]
        # One child per Keras: edgekit.train's kinds on Keras 3, tfmot's int4 on tf_keras.
        for group in ([p for p in missing if p[1] != "int4"], [p for p in missing if p[1] == "int4"]):
            if group:
                _build_in_child(group, wanted)
    return wanted


def _build_in_child(pairs: list[tuple[str, str]], paths: dict[tuple[str, str], Path]) -> None:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONHASHSEED="0")
    cmd = [sys.executable, str(Path(__file__).resolve())]
    for model, kind in pairs:
        cmd += [model, kind, str(paths[model, kind])]
    what = ", ".join(f"{k} {m}" for m, k in pairs)
    timeout = CHILD_TIMEOUT_S * len(pairs)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"building the model variants ({what}) took over {timeout} s") from None
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            report = json.loads(line)
            _write_atomic(paths[report["model"], report["kind"]].with_suffix(".json"),
                          json.dumps(report, indent=1).encode())
    failed = [f"{k} {m}" for m, k in pairs if not paths[m, k].exists()]
    if proc.returncode != 0 or failed:
        tail = "\n".join(proc.stderr.strip().splitlines()[-30:])
        raise RuntimeError(f"building the model variants failed for {', '.join(failed) or what} "
                           f"(exit status {proc.returncode}):\n{tail}")


def variant_report(model: str, kind: str) -> dict:
    """What the build of a cached variant reported: timings, sizes, per-layer statistics."""
    path = variant_path(model, kind)
    report = path.with_suffix(".json")
    return json.loads(report.read_text()) if report.exists() else {}


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------
# Reading the weights of a .tflite (flatbuffer schema only)
# --------------------------------------------------------------------------

def unpack_int4(raw: bytes, count: int) -> np.ndarray:
    """TFLite INT4: two values per byte, element 2k in the low nibble and 2k+1 in the high nibble
    (TF's PackInt4ValuesDensely), each a two's-complement 4-bit number; an odd count pads the last
    high nibble."""
    b = np.frombuffer(raw, dtype=np.uint8)
    vals = np.empty(b.size * 2, dtype=np.int16)
    vals[0::2], vals[1::2] = b & 0x0F, b >> 4
    vals = np.where(vals > 7, vals - 16, vals)
    return vals[:count].astype(np.int8)


def weight_tensors(tflite: bytes) -> list[dict]:
    """The weight tensor of every CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED op, in execution order:
    {"op", "name", "type" (TensorType number), "shape", "values" (int8 array; INT4 unpacked),
    "channel_axis" (the output-channel axis)}."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if isinstance(v, int)}
    graph = model.subgraphs[0]
    result = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        name = names[max(code.builtinCode, code.deprecatedBuiltinCode)]
        if name not in WEIGHT_OPS:
            continue
        t = graph.tensors[op.inputs[1]]
        shape = tuple(int(d) for d in t.shape)
        raw = model.buffers[t.buffer].data
        raw = bytes(np.asarray(raw, dtype=np.uint8)) if raw is not None else b""
        count = int(np.prod(shape))
        if t.type == INT4:
            values = unpack_int4(raw, count).reshape(shape)
        else:
            values = np.frombuffer(raw, dtype=np.int8)[:count].reshape(shape)
        result.append({"op": name, "name": t.name.decode() if isinstance(t.name, bytes) else str(t.name),
                       "type": int(t.type), "shape": shape, "values": values,
                       "channel_axis": 3 if name == "DEPTHWISE_CONV_2D" else 0})
    return result


def distinct_per_channel(w: dict) -> int:
    """The largest number of distinct values in one output channel of a weight tensor."""
    v = np.moveaxis(w["values"], w["channel_axis"], 0).reshape(w["shape"][w["channel_axis"]], -1)
    return max(len(np.unique(row)) for row in v)


def layer_stats(tflite: bytes) -> list[dict]:
    return [{"op": w["op"], "shape": list(w["shape"]), "type": "INT4" if w["type"] == INT4 else "INT8",
             "zero_fraction": round(float(np.mean(w["values"] == 0)), 4),
             "max_distinct_per_channel": distinct_per_channel(w),
             "min": int(w["values"].min()), "max": int(w["values"].max())}
            for w in weight_tensors(tflite)]


def check_variant(tflite: bytes, kind: str) -> list[str]:
    """What is wrong with a variant's weights (empty when it has the property its kind claims)."""
    problems = []
    weights = weight_tensors(tflite)
    if not weights:
        return ["the model has no CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED op"]
    for i, w in enumerate(weights):
        where = f"{w['op']} weight tensor {i} {list(w['shape'])}"
        if kind == "int4" and w["type"] != INT4:
            problems.append(f"{where}: type {w['type']}, not INT4 ({INT4})")
        if kind != "int4" and w["type"] == INT4:
            problems.append(f"{where}: INT4 in an int8 variant")
        if kind in SPARSE_KINDS and np.mean(w["values"] == 0) < 0.75:
            problems.append(f"{where}: only {np.mean(w['values'] == 0):.1%} zeros")
        if kind in CLUSTERED_KINDS and distinct_per_channel(w) > CLUSTERS:
            problems.append(f"{where}: {distinct_per_channel(w)} distinct values in one output channel")
        if kind == "int4" and not (w["values"].min() >= -8 and w["values"].max() <= 7):
            problems.append(f"{where}: values outside [-8, 7]")
    return problems


# --------------------------------------------------------------------------
# The child: build variants (imports TensorFlow; Keras 3 with edgekit.train, or tf_keras with tfmot)
# --------------------------------------------------------------------------

def reference_input(model: str) -> tuple[tuple[int, ...], float, int]:
    """The reference int8 model's input: (shape without the batch, scale, zero point)."""
    from ai_edge_litert.interpreter import Interpreter

    d = Interpreter(model_path=str(SHARED_MODELS / MODELS[model][1])).get_input_details()[0]
    scale, zero_point = d["quantization"]
    return tuple(int(s) for s in d["shape"][1:]), float(scale), int(zero_point)


def samples(rng, n, shape, scale, zero_point) -> np.ndarray:
    """Float inputs whose int8 images cover the reference model's whole input range."""
    q = rng.integers(-128, 128, size=(n, *shape)).astype(np.float32)
    return ((q - zero_point) * scale).astype(np.float32)


def _build_edgekit(model: str, kind: str) -> tuple[bytes, dict, int]:
    """(the .tflite, seconds per phase, the float model's number of Conv2D/DepthwiseConv2D/Dense
    layers) of an edgekit.train kind."""
    times = {}
    t = time.monotonic()
    import edgekit.train as ekt          # first: it sets TensorFlow's environment for training
    import keras

    from edgekit.frontend.keras import quantize_keras
    from edgekit.train.graph import kind as layer_kind
    times["import"] = time.monotonic() - t

    t = time.monotonic()
    keras.utils.set_random_seed(SEED)
    shape, scale, zero_point = reference_input(model)
    student = ekt.load_model(SHARED_MODELS / MODELS[model][0])
    teacher = ekt.load_model(SHARED_MODELS / MODELS[model][0])
    if tuple(student.inputs[0].shape[1:]) != shape:
        raise RuntimeError(f"{model}: Keras input {tuple(student.inputs[0].shape[1:])} != reference {shape}")
    rng = np.random.default_rng(SEED)
    x = samples(rng, TRAIN_SAMPLES[model], shape, scale, zero_point)
    calib = samples(rng, CALIB_SAMPLES, shape, scale, zero_point)
    y = np.asarray(teacher.predict(x, batch_size=64, verbose=0))
    # The labels carry no weight (alpha=1: the teacher's outputs are the targets); a classifier's are
    # the teacher's own answers, an autoencoder's its outputs.
    data = ekt.check_data(student, x, np.argmax(y, axis=1) if model != "ad" else y, "variant data")
    for layer in student.layers:          # trainable=False: Keras runs BatchNormalization in inference mode
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
    n_layers = sum(layer_kind(layer) is not None for layer in student.layers)
    times["load"] = time.monotonic() - t

    t = time.monotonic()
    recipe = ekt.Recipe(**RECIPES[kind], bits=None, teacher=teacher, alpha=1.0, epochs=EPOCHS,
                        learning_rate=LEARNING_RATE, batch_size=BATCH, seed=SEED)
    result = ekt.compress(student, data, validation=data, recipe=recipe, calib=calib, verbose=0,
                          measure_int8=False)
    times["fine_tune"] = time.monotonic() - t

    t = time.monotonic()
    tflite = quantize_keras(result.model, keras, calib)
    times["convert"] = time.monotonic() - t
    return tflite, times, n_layers


def build(model: str, kind: str) -> tuple[bytes, dict]:
    _check_args(model, kind)
    _require_models()
    if kind == "int4":
        from tfmot_int4 import build_int4
        tflite, times, n_layers = build_int4(model)
    else:
        tflite, times, n_layers = _build_edgekit(model, kind)
    layers = layer_stats(tflite)
    problems = check_variant(tflite, kind)
    if len(layers) != n_layers:
        problems.append(f"{len(layers)} weight ops in the .tflite for {n_layers} Conv2D/DepthwiseConv2D/Dense layers")
    if problems:
        raise RuntimeError(f"the {kind} variant of {model} lacks its property:\n  " + "\n  ".join(problems))
    report = {"model": model, "kind": kind, "bytes": len(tflite),
              "seconds": {k: round(v, 2) for k, v in times.items()}, "layers": layers}
    return tflite, report


def main(argv: list[str]) -> int:
    """MODEL KIND OUT [MODEL KIND OUT ...]: build each, write it atomically, print one JSON report line.
    --paths MODEL KIND [MODEL KIND ...]: print {"MODEL/KIND": cached .tflite path} as JSON, building
    what is missing (how benchmarks/compression.py gets the variants)."""
    if argv[:1] == ["--paths"] and len(argv) % 2 == 1 and len(argv) > 1:
        pairs = [(argv[i], argv[i + 1]) for i in range(1, len(argv), 2)]
        for model, kind in pairs:
            _check_args(model, kind)
        paths = variant_paths(pairs)
        print(json.dumps({f"{m}/{k}": str(paths[m, k]) for m, k in pairs}))
        return 0
    if not argv or len(argv) % 3:
        print(f"usage: python {Path(__file__).name} {{{'|'.join(MODELS)}}} {{{'|'.join(KINDS)}}} OUT.tflite "
              "[MODEL KIND OUT ...]", file=sys.stderr)
        return 2
    jobs = [argv[i:i + 3] for i in range(0, len(argv), 3)]
    for model, kind, _ in jobs:
        _check_args(model, kind)
    status = 0
    for model, kind, out in jobs:
        t0 = time.monotonic()
        try:
            tflite, report = build(model, kind)
        except Exception:
            traceback.print_exc()
            print(f"FAILED: the {kind} variant of {model}", file=sys.stderr)
            status = 1
            continue
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(out, tflite)
        report["seconds"]["total"] = round(time.monotonic() - t0, 2)
        print(json.dumps(report), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
