"""Small Keras 3 models and data for the training-side tests, and reading a converted model's
weights (shared by test_train.py and test_train_models.py)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekit.train.data import Data

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def toy_model(seed: int = 0, classes: int = 4):
    """Conv-BN-ReLU, depthwise-BN-ReLU, pointwise-BN, a residual Add, max pooling, another conv,
    global average pooling, Dense, Softmax: every kind of layer the stages handle, in 2,000 MACs'
    worth of seconds."""
    import keras
    keras.utils.set_random_seed(seed)
    L = keras.layers
    inp = keras.Input((12, 12, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inp)
    x = L.BatchNormalization(name="stem_bn")(x)
    a = L.ReLU(name="stem_relu")(x)
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(a)
    x = L.BatchNormalization(name="dw_bn")(x)
    x = L.ReLU(name="dw_relu")(x)
    x = L.Conv2D(8, 1, use_bias=False, name="pw")(x)
    x = L.BatchNormalization(name="pw_bn")(x)
    x = L.Add(name="residual")([x, a])
    x = L.ReLU(name="residual_relu")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(classes, name="logits")(x)
    out = L.Softmax(name="softmax")(x)
    return keras.Model(inp, out, name="toy")


def toy_data(n: int = 256, seed: int = 0, classes: int = 4) -> Data:
    """Inputs in [0, 1) whose class is which quarter of the image is brightest: learnable."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 0.5, size=(n, 12, 12, 3)).astype(np.float32)
    y = rng.integers(0, classes, n)
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, r * 6:(r + 1) * 6, q * 6:(q + 1) * 6, :] += 0.5
    return Data(x, y.astype(np.int64), classes)


def weight_tensors(tflite: bytes) -> list[tuple[str, np.ndarray]]:
    """(op kind, int8 weights as [..., output channels]) of every conv / depthwise / FC op."""
    from edgekit.frontend.tflite import load_tflite
    g = load_tflite(tflite)
    out = []
    for op in g.ops:
        if op.kind in WEIGHTED_OPS:
            w = np.asarray(g.t(op.inputs[1]).data)
            if op.kind == "CONV_2D" or op.kind == "FULLY_CONNECTED":
                w = np.moveaxis(w.reshape(w.shape[0], -1), 0, -1)       # [out, ...] -> [..., out]
            else:
                w = w.reshape(-1, w.shape[-1])                           # [1, kh, kw, C] -> [taps, C]
            out.append((op.kind, w))
    return out


def to_tflite(model, calib) -> bytes:
    """The int8 .tflite `edgekit export` makes of `model` (the same converter call)."""
    import keras

    from edgekit.frontend.keras import quantize_keras
    return quantize_keras(model, keras, np.asarray(calib, np.float32))


def fashion_split(directory: Path) -> Path:
    """The bundled 200 Fashion-MNIST test images as train.npz (160) and val.npz (40) in `directory`."""
    subset = np.load(EXAMPLES / "fashion_test_subset.npz")
    np.savez(directory / "train.npz", x=subset["x"][:160], y=subset["y"][:160])
    np.savez(directory / "val.npz", x=subset["x"][160:], y=subset["y"][160:])
    return directory
