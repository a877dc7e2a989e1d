"""Models whose file keeps float input/output (QUANTIZE first, DEQUANTIZE last): edgekit's C takes
the int8 side of those ops, and its outputs equal the reference run mapped through them."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import assert_bit_exact, test_inputs
from edgekit.api import load
from edgekit.export import export
from edgekit.frontend.tflite import load_tflite
from edgekit.run.reference import reference_outputs
from edgekit.targets import get_target
from edgekit.run.verify import boundary_qparams, verify


@pytest.fixture(scope="module")
def float_io_tflite() -> bytes:
    import tensorflow as tf
    keras = tf.keras
    keras.utils.set_random_seed(3)
    inp = keras.Input((6, 5, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(3, activation="softmax")(x)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(3)
    data = rng.uniform(-2, 2, size=(16, 6, 5, 2)).astype(np.float32)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([data[i:i + 1]] for i in range(len(data)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return bytes(conv.convert())      # float32 input and output, QUANTIZE/DEQUANTIZE inside


def test_boundary_ops_are_stripped_and_outputs_match(float_io_tflite, tmp_path):
    kinds = [op.kind for op in load_tflite(float_io_tflite).ops]
    assert kinds[0] == "QUANTIZE" and kinds[-1] == "DEQUANTIZE"
    src = tmp_path / "float_io.tflite"
    src.write_bytes(float_io_tflite)
    result = export(src, tmp_path / "out", get_target("host"))
    assert result.report["input"]["float_in_model"] and result.report["output"]["float_in_model"]
    assert "QUANTIZE" not in [l["op"] for l in result.report["layers"]]
    model = load(tmp_path / "out", sanitize=True)
    x = test_inputs(model.input_shape[1:], n=10, seed=4)
    ref = reference_outputs(float_io_tflite, x, **boundary_qparams(model.report))
    assert_bit_exact(model.predict(x), ref, "float-io model")
    assert verify(tmp_path / "out", count=5).ok
