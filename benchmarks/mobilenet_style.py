"""A MobileNetV1-style int8 model that edgekit was never tuned on (not one of the shared models).

    .venv/bin/python benchmarks/mobilenet_style.py      # prints the path and the operators

The model is `keras.applications.MobileNet(input_shape=(96, 96, 3), alpha=0.25, classes=2,
weights=None)`: the MLPerf Tiny visual wake words shape (13 depthwise-separable blocks, 3x3
depthwise convolutions at strides 1 and 2, ZeroPadding2D before each stride-2 depthwise,
BatchNormalization + ReLU6 everywhere, global average pool, a 1x1 convolution as classifier,
softmax). Nothing is downloaded and nothing is trained: every weight is drawn from
`np.random.default_rng(SEED)` in layer order; then each BatchNormalization's moving mean and
variance are set to the statistics of its input on a fixed-seed batch (one forward pass in
training mode with momentum 0), so activations neither die nor saturate through 27 ReLU6 layers
and the two outputs depend on the input (with purely random statistics every input gave the
same output, which would make a bit-exactness test vacuous). The converter's representative
dataset is fixed-seed uniform noise in [-1, 1] (the range of MobileNet's preprocessing).
Full-integer int8 post-training quantization, int8 input and output.

`mobilenet_tflite()` converts once and caches the .tflite under `$EDGEKIT_TEST_CACHE` or
`~/.cache/edgekit-tests/`, keyed by a hash of this file and the TensorFlow and Keras versions.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np

SEED = 2026
INPUT_SHAPE = (96, 96, 3)
ALPHA = 0.25
CLASSES = 2
REPRESENTATIVE_SAMPLES = 16
BN_BATCH = 16
LABEL = "MobileNetV1-style 0.25x 96x96 (not a shared model)"


def cache_path() -> Path:
    root = Path(os.environ.get("EDGEKIT_TEST_CACHE") or Path.home() / ".cache" / "edgekit-tests")
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(f"tensorflow {metadata.version('tensorflow')} keras {metadata.version('keras')}".encode())
    return root / f"mobilenet_style-{h.hexdigest()[:20]}.tflite"


def mobilenet_tflite() -> Path:
    """Path of the cached int8 .tflite (converted on first use, ~15 s)."""
    path = cache_path()
    if path.exists():
        return path
    tflite = convert()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(tflite)
    os.replace(tmp, path)  # atomic: concurrent callers never see half a file
    return path


def build_model(keras, rng: np.random.Generator):
    keras.backend.clear_session()  # layer names (and so tensor names) do not depend on history
    inp = keras.Input(INPUT_SHAPE, batch_size=1, name="x")
    model = keras.applications.MobileNet(input_tensor=inp, alpha=ALPHA, weights=None, classes=CLASSES,
                                         include_top=True)
    for layer in model.layers:
        if not layer.weights:
            continue
        depthwise = type(layer).__name__ == "DepthwiseConv2D"   # kernel [kh, kw, channels, 1]
        values = []
        for w in layer.weights:
            name = w.name.split("/")[-1].split(":")[0]
            shape = tuple(w.shape)
            if name in ("kernel", "depthwise_kernel"):
                fan_in = int(np.prod(shape[:2] if depthwise else shape[:-1]))
                v = rng.uniform(-1.0, 1.0, shape) * (1.7 / np.sqrt(fan_in))
            elif name == "bias":
                v = rng.uniform(-0.3, 0.3, shape)
            elif name in ("gamma", "moving_variance"):
                v = rng.uniform(0.5, 1.5, shape)
            elif name in ("beta", "moving_mean"):
                v = rng.uniform(-0.3, 0.3, shape)
            else:
                raise ValueError(f"no rule to draw weight {w.name!r} of layer {layer.name!r}")
            values.append(v.astype(np.float32))
        layer.set_weights(values)
    # Data-dependent BatchNormalization statistics: moving = batch statistics (momentum 0). Every
    # BatchNormalization precedes the Dropout, the only other layer that acts in training mode.
    batch = rng.uniform(-1.0, 1.0, (BN_BATCH, *INPUT_SHAPE)).astype(np.float32)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            layer.momentum = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the Input is batch 1; the batch of 16 goes through anyway
        model(batch, training=True)
    return model


def convert() -> bytes:
    """Build, draw the weights and quantize (no cache)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    rng = np.random.default_rng(SEED)
    model = build_model(keras, rng)
    samples = [rng.uniform(-1.0, 1.0, (1, *INPUT_SHAPE)).astype(np.float32) for _ in range(REPRESENTATIVE_SAMPLES)]
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([s] for s in samples)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return conv.convert()


def operators(path: Path) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=str(path))
    return [d["op_name"] for d in interp._get_ops_details()]


if __name__ == "__main__":
    p = mobilenet_tflite()
    ops = operators(p)
    print(p, f"{p.stat().st_size:,} bytes")
    print(f"{len(ops)} operators:", ", ".join(f"{o} x{ops.count(o)}" for o in dict.fromkeys(ops)))
