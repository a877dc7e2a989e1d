"""Keras models in every file format a user has: Keras 3 .h5 and .keras, tf_keras (Keras 2) .h5
(the bundled example, like the MLPerf Tiny files), quantized by TensorFlow's converter and
compiled bit-exact; edgekit.compile(...).predict is the one-line check."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgekit
from conftest import assert_bit_exact, test_inputs
from edgekit.run.reference import reference_outputs

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _keras3_model():
    import keras
    keras.utils.set_random_seed(12)
    inp = keras.Input((12, 10, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(max_value=6.0)(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(5, activation="softmax")(x)
    return keras.Model(inp, out)


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_keras3_files_export_bit_exact(suffix, tmp_path):
    model = _keras3_model()
    path = tmp_path / f"model{suffix}"
    model.save(path)
    calib = np.random.default_rng(1).uniform(-1, 1, size=(16, 12, 10, 3)).astype(np.float32)
    np.save(tmp_path / "calib.npy", calib)
    compiled = edgekit.compile(path, target="host", calib=tmp_path / "calib.npy", out_dir=tmp_path / "out")
    x = test_inputs((12, 10, 3), n=6, seed=8)
    assert_bit_exact(compiled.predict(x), reference_outputs(compiled.tflite_path, x), path.name)
    # Float inputs are quantized with the model's input scale and zero point.
    assert compiled.predict(calib[:3]).shape == (3, 5)


def test_bundled_example_tf_keras_h5(tmp_path):
    """The project's own Keras 2 model: export, predict on real test images, accuracy holds."""
    data = np.load(EXAMPLES / "fashion_test_subset.npz")
    compiled = edgekit.compile(EXAMPLES / "fashion_dscnn.h5", calib=EXAMPLES / "fashion_calib.npy",
                               out_dir=tmp_path / "out")
    y = compiled.predict(data["x"])
    assert_bit_exact(y, reference_outputs(compiled.tflite_path, compiled.quantize(data["x"])), "example")
    assert (y.argmax(axis=1) == data["y"]).mean() >= 0.85
