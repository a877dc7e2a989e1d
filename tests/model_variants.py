"""Compressed variants of the three MLPerf Tiny reference models, made with
tensorflow-model-optimization (tfmot) on tf_keras, for tests and benchmarks.

    python tests/model_variants.py MODEL KIND OUT.tflite [MODEL KIND OUT.tflite ...]
        MODEL: kws | resnet | ad        KIND: pruned | clustered | pruned-clustered | int4

builds the variants in this (child) process: importing tfmot sets TF_USE_LEGACY_KERAS=1, which
would break Keras 3 in a test process. The in-process API, ``variant_path(model, kind)`` and
``variant_paths(pairs)`` (all missing ones in one child: one TensorFlow import, ~1.5 min for all
twelve), runs this script with ``sys.executable`` and caches the results under
``$EDGEKIT_TEST_CACHE/variants`` (default ``~/.cache/edgekit-tests/variants``), keyed by a hash of
this file's source, the model files' bytes, the arguments and the TF/tfmot versions. A build is
deterministic: the same bytes alone or in a batch, run after run.

Sources: kws_ref_model_savedmodel/ (loads as a tf_keras Functional model), pretrainedResnet.h5 and
ad01.h5. Each is fine-tuned for a few steps on self-distillation data: fixed-seed random inputs whose
int8 images cover the reference int8 model's whole input range, with the float model's own outputs
as targets; BatchNormalization statistics stay frozen. The kinds:
  pruned     prune_low_magnitude to 80 % (ConstantSparsity, frequency 1) on every layer tfmot prunes
             (Conv2D, Dense; never DepthwiseConv2D), strip_pruning, full-integer int8 PTQ.
  clustered  cluster_weights, 16 clusters (KMEANS_PLUS_PLUS) on Conv2D and Dense, strip_clustering,
             int8 PTQ: each output channel of those layers holds at most 16 distinct int8 values.
  pruned-clustered
             Deep Compression's pipeline: pruned exactly as "pruned" (prune_low_magnitude, fine-tune,
             strip_pruning), then sparsity-preserving clustering (experimental.cluster_weights, 16
             clusters, KMEANS_PLUS_PLUS, preserve_sparsity=True: one centroid is held at zero and the
             pruned weights stay in it), a fine-tune, strip_clustering and int8 PTQ: those layers are
             >= 75 % zeros AND each output channel holds at most 16 distinct int8 values, zero included.
  int4       QAT with DefaultNBitQuantizeScheme(num_bits_weight=4, num_bits_activation=8): INT4
             (TensorType 17, two per byte, low nibble first) weights for every CONV_2D,
             DEPTHWISE_CONV_2D and FULLY_CONNECTED. Runs in TFLM, not in LiteRT's BUILTIN_REF
             when it has a depthwise convolution (no DEPTHWISE_CONV_2D version 7 there).
int8 PTQ is done as for the reference models: int8 input and output, representative dataset,
TFLITE_BUILTINS_INT8, per-channel conv and per-tensor FULLY_CONNECTED weights. The script checks
the property its kind claims before it writes OUT (atomically), and prints one JSON report line
per variant (seconds per phase, bytes, per-layer statistics); the API keeps it as OUT's .json.
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

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
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
# Fine-tuning and calibration samples per model: a few seconds on two shared cores.
TRAIN_SAMPLES = {"kws": 256, "resnet": 128, "ad": 256}
BATCH = 32
EPOCHS = 2
CALIB_SAMPLES = 32
LEARNING_RATE = 1e-4
# tfmot's activation quantizers track ranges with an EMA of decay 0.999 from an initial [-6, 6]: a
# run of a few dozen steps would keep ~[-6, 6]. The QAT fine-tune uses this decay instead.
QAT_EMA_DECAY = 0.7
CHILD_TIMEOUT_S = 300  # per variant

WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
# The TFLite ops of the layers tfmot prunes and clusters (it skips DepthwiseConv2D).
COMPRESSED_OPS = {"pruned": ("CONV_2D", "FULLY_CONNECTED"), "clustered": ("CONV_2D", "FULLY_CONNECTED"),
                  "pruned-clustered": ("CONV_2D", "FULLY_CONNECTED"), "int4": WEIGHT_OPS}
# The kinds whose compressed layers must be sparse, and those limited to CLUSTERS values per channel.
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


def cache_key(model: str, kind: str) -> str:
    """Hash of this script's source, the model files' bytes, the arguments and the TF/tfmot versions."""
    _check_args(model, kind)
    root = _require_models()
    h = hashlib.sha256(Path(__file__).read_bytes())
    for name in MODELS[model]:
        _hash_path(h, root / name)
    h.update(f"{model}\0{kind}".encode())
    for dist in ("tensorflow", "tf-keras", "tensorflow-model-optimization"):
        h.update(f"\0{dist}={metadata.version(dist)}".encode())
    return h.hexdigest()[:20]


def _cached(model: str, kind: str) -> Path:
    return cache_dir() / f"{model}-{kind}-{cache_key(model, kind)}.tflite"


def variant_path(model: str, kind: str) -> Path:
    """The variant's .tflite, built in a child process on first use and cached on disk."""
    return variant_paths([(model, kind)])[(model, kind)]


def variant_paths(pairs) -> dict[tuple[str, str], Path]:
    """{(model, kind): .tflite path} for every pair; the missing ones are built in one child process
    (one TensorFlow import for all of them).

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
        if missing:
            _build_in_child(missing, wanted)
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
        if w["op"] not in COMPRESSED_OPS[kind]:
            continue
        if kind in SPARSE_KINDS and np.mean(w["values"] == 0) < 0.75:
            problems.append(f"{where}: only {np.mean(w['values'] == 0):.1%} zeros")
        if kind in CLUSTERED_KINDS and distinct_per_channel(w) > CLUSTERS:
            problems.append(f"{where}: {distinct_per_channel(w)} distinct values in one output channel")
        if kind == "int4" and not (w["values"].min() >= -8 and w["values"].max() <= 7):
            problems.append(f"{where}: values outside [-8, 7]")
    return problems


# --------------------------------------------------------------------------
# The child: build one variant (imports TensorFlow and tfmot)
# --------------------------------------------------------------------------

def _reference_input(ref_tflite: Path) -> tuple[tuple[int, ...], float, int]:
    from ai_edge_litert.interpreter import Interpreter

    d = Interpreter(model_path=str(ref_tflite)).get_input_details()[0]
    scale, zero_point = d["quantization"]
    return tuple(int(s) for s in d["shape"][1:]), float(scale), int(zero_point)


def _load_float_model(keras, model: str):
    src = SHARED_MODELS / MODELS[model][0]
    m = keras.models.load_model(str(src), compile=False)
    if not isinstance(m, keras.Model) or not any(len(l.weights) for l in m.layers):
        raise RuntimeError(f"{src} did not load as a tf_keras model with layers")
    return m


def _samples(rng, n, shape, scale, zero_point) -> np.ndarray:
    """Float inputs whose int8 images cover the reference model's whole input range."""
    q = rng.integers(-128, 128, size=(n, *shape)).astype(np.float32)
    return ((q - zero_point) * scale).astype(np.float32)


def _freeze_batchnorm(keras, model) -> None:
    """Fine-tuning on synthetic data must not move the BatchNormalization statistics (with
    trainable=False, tf_keras runs BN in inference mode; the flag survives tfmot's cloning)."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def _fold_dense_batchnorm(keras, model):
    """The same float model with every Dense -> BatchNormalization [-> Activation] of a layer chain folded
    into one Dense (with that activation). QAT needs both:
    - TFLite's FULLY_CONNECTED has per-tensor weights, so the converter cannot fold a BN's per-unit scale
      into fake-quantized weights and leaves those FCs in float;
    - tfmot's LayerReluActivationQuantize gives a Dense followed by Activation('relu') a
      NoOpQuantizeConfig, which drops its weight quantizer too: the converter then makes per-channel
      INT8 weights, not INT4."""
    layers = model.layers
    if not any(isinstance(a, keras.layers.Dense) and isinstance(b, keras.layers.BatchNormalization)
               for a, b in zip(layers, layers[1:])):
        return model
    inp = keras.Input(shape=model.input_shape[1:])
    y, i = inp, int(isinstance(layers[0], keras.layers.InputLayer))
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, keras.layers.Dense) and isinstance(nxt, keras.layers.BatchNormalization):
            kernel, *bias = layer.get_weights()
            bias = bias[0] if bias else np.zeros(kernel.shape[1], np.float32)
            gamma, beta, mean, var = nxt.get_weights()   # a BN with center and scale
            k = gamma / np.sqrt(var + nxt.epsilon)
            config = dict(layer.get_config(), use_bias=True)
            i += 2
            if (config["activation"] == "linear" and i < len(layers)
                    and isinstance(layers[i], keras.layers.Activation)):
                config["activation"] = layers[i].get_config()["activation"]
                i += 1
            dense = keras.layers.Dense.from_config(config)
            y = dense(y)
            dense.set_weights([kernel * k, (bias - mean) * k + beta])
        else:
            clone = layer.__class__.from_config(layer.get_config())
            y = clone(y)
            clone.set_weights(layer.get_weights())
            i += 1
    folded = keras.Model(inp, y, name=model.name + "_bnfolded")
    x = np.random.default_rng(0).normal(size=(4, *model.input_shape[1:])).astype(np.float32)
    a, b = model(x, training=False).numpy(), folded(x, training=False).numpy()
    if not np.allclose(a, b, rtol=1e-4, atol=1e-4 * float(np.abs(a).max())):
        raise RuntimeError(f"{model.name}: folding BatchNormalization into Dense changed the outputs "
                           "(the model is not a chain of layers?)")
    return folded


def _fine_tune(keras, model, x, y, classifier: bool, callbacks=()) -> None:
    loss = keras.losses.CategoricalCrossentropy() if classifier else keras.losses.MeanSquaredError()
    model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), loss=loss)
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=True, verbose=0, callbacks=list(callbacks))


def _prune(tfmot, keras, model, x, y, classifier: bool):
    """prune_low_magnitude to SPARSITY on every layer tfmot prunes, fine-tune, strip_pruning."""
    sparsity = tfmot.sparsity.keras
    schedule = sparsity.ConstantSparsity(SPARSITY, begin_step=0, frequency=1)
    wrapped = sparsity.prune_low_magnitude(model, pruning_schedule=schedule)
    _fine_tune(keras, wrapped, x, y, classifier, callbacks=[sparsity.UpdatePruningStep()])
    return sparsity.strip_pruning(wrapped)


def _convert(tf, model, calib: np.ndarray | None) -> bytes:
    """Batch-1 concrete function -> TFLite with int8 input and output (full-integer PTQ with a
    representative dataset when calib is given; a QAT model carries its own ranges)."""
    fn = tf.function(lambda x: model(x, training=False))
    spec = tf.TensorSpec([1, *model.input_shape[1:]], tf.float32)
    # The converter saves its trackable object as a SavedModel: a bare module that holds just the
    # variables saves ~5x faster than the Keras model (which traces every layer's call again).
    holder = tf.Module()
    holder.weights = list(model.variables)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function(spec)], holder)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if calib is not None:
        # The reference models have per-tensor FULLY_CONNECTED weights; TF 2.21 defaults to per-channel.
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
        converter.representative_dataset = lambda: ([calib[i:i + 1]] for i in range(len(calib)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return bytes(converter.convert())


@contextlib.contextmanager
def _qat_ema_decay(decay: float):
    from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

    original = quant_ops.MovingAvgQuantize

    def moving_avg_quantize(*args, **kwargs):
        kwargs["ema_decay"] = decay
        return original(*args, **kwargs)

    quant_ops.MovingAvgQuantize = moving_avg_quantize
    try:
        yield
    finally:
        quant_ops.MovingAvgQuantize = original


def build(model: str, kind: str) -> tuple[bytes, dict]:
    _check_args(model, kind)
    _require_models()
    times = {}
    t = time.monotonic()
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras
    times["import"] = time.monotonic() - t

    t = time.monotonic()
    keras.backend.clear_session()  # fresh layer-name counters: the same bytes alone or after other builds
    keras.utils.set_random_seed(SEED)  # python random, numpy and tf
    tf.config.experimental.enable_op_determinism()
    shape, scale, zero_point = _reference_input(SHARED_MODELS / MODELS[model][1])
    float_model = _load_float_model(keras, model)
    if tuple(float_model.input_shape[1:]) != shape:
        raise RuntimeError(f"{model}: Keras input {float_model.input_shape[1:]} != reference {shape}")
    rng = np.random.default_rng(SEED)
    x = _samples(rng, TRAIN_SAMPLES[model], shape, scale, zero_point)
    calib = _samples(rng, CALIB_SAMPLES, shape, scale, zero_point)
    y = float_model.predict(x, batch_size=64, verbose=0)
    classifier = model != "ad"
    _freeze_batchnorm(keras, float_model)
    times["load"] = time.monotonic() - t

    t = time.monotonic()
    if kind == "pruned":
        final = _prune(tfmot, keras, float_model, x, y, classifier)
    elif kind == "pruned-clustered":
        # preserve_sparsity is in the experimental API only, and tfmot.clustering.keras.experimental is an
        # empty package in tfmot 0.8.1 (no cluster_weights attribute): import its cluster module itself.
        # tfmot takes the mask from the weights the initial clustering maps to the zero centroid, so the
        # pruned zeros (and any weight nearest zero) stay zero; it resets that centroid to zero each call.
        from tensorflow_model_optimization.python.core.clustering.keras.experimental import cluster as experimental

        clustering = tfmot.clustering.keras
        wrapped = experimental.cluster_weights(
            _prune(tfmot, keras, float_model, x, y, classifier), number_of_clusters=CLUSTERS,
            cluster_centroids_init=clustering.CentroidInitialization.KMEANS_PLUS_PLUS, preserve_sparsity=True)
        _fine_tune(keras, wrapped, x, y, classifier)
        final = clustering.strip_clustering(wrapped)
    elif kind == "clustered":
        clustering = tfmot.clustering.keras
        wrapped = clustering.cluster_weights(
            float_model, number_of_clusters=CLUSTERS,
            cluster_centroids_init=clustering.CentroidInitialization.KMEANS_PLUS_PLUS)
        _fine_tune(keras, wrapped, x, y, classifier)
        final = clustering.strip_clustering(wrapped)
    else:
        q = tfmot.quantization.keras
        scheme = q.experimental.default_n_bit.DefaultNBitQuantizeScheme(num_bits_weight=4, num_bits_activation=8)
        with _qat_ema_decay(QAT_EMA_DECAY):
            final = q.quantize_apply(q.quantize_annotate_model(_fold_dense_batchnorm(keras, float_model)), scheme)
            _fine_tune(keras, final, x, y, classifier)
    times["fine_tune"] = time.monotonic() - t

    t = time.monotonic()
    tflite = _convert(tf, final, None if kind == "int4" else calib)
    times["convert"] = time.monotonic() - t

    layers = layer_stats(tflite)
    n_keras = sum(isinstance(l, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense))
                  for l in float_model.layers)
    problems = check_variant(tflite, kind)
    if len(layers) != n_keras:
        problems.append(f"{len(layers)} weight ops in the .tflite for {n_keras} Conv2D/DepthwiseConv2D/Dense layers")
    if problems:
        raise RuntimeError(f"the {kind} variant of {model} lacks its property:\n  " + "\n  ".join(problems))
    report = {"model": model, "kind": kind, "bytes": len(tflite),
              "seconds": {k: round(v, 2) for k, v in times.items()}, "layers": layers}
    return tflite, report


def main(argv: list[str]) -> int:
    """MODEL KIND OUT [MODEL KIND OUT ...]: build each, write it atomically, print one JSON report line."""
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
