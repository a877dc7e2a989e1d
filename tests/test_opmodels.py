"""edgekit.run.reference, the TFLite reference interpreter wrapper every bit-exactness test compares
with: whole batches, every intermediate tensor, paths or bytes, and clear errors.

(That each op case of tests/opmodels.py holds the ops and options it promises is checked by
opmodels.op_model itself whenever a test takes the case.)"""

import numpy as np
import pytest

from edgekit.errors import EdgekitError
from edgekit.run.reference import reference_outputs, reference_tensors

try:  # tests/ on sys.path (rootdir-relative import, no tests/__init__.py) or tests as a package
    import opmodels
except ImportError:
    from tests import opmodels


def test_reference_runs_a_batch_sample_by_sample():
    tflite = opmodels.op_model("mini_resnet")
    model = opmodels.describe(tflite)
    (inp,), (out,) = model["inputs"], model["outputs"]
    x = np.random.default_rng(1234).integers(-128, 128, size=(3, *inp["shape"][1:]), dtype=np.int8)
    y = reference_outputs(tflite, x)
    assert y.dtype == np.int8
    assert y.shape == (3, *out["shape"][1:])
    # One sample at a time through a fresh interpreter gives the same bytes as the batch loop.
    np.testing.assert_array_equal(reference_outputs(tflite, x[2:3]), y[2:3])


def test_reference_tensors_hold_every_activation():
    tflite = opmodels.op_model("mini_dscnn")
    model = opmodels.describe(tflite)
    x = np.random.default_rng(7).integers(-128, 128, size=model["inputs"][0]["shape"][1:], dtype=np.int8)
    tensors = reference_tensors(tflite, x)
    for op in model["ops"]:
        for t in op["outputs"]:
            assert tensors[t["index"]].shape == tuple(t["shape"])
    np.testing.assert_array_equal(tensors[model["inputs"][0]["index"]][0], x)
    out = model["outputs"][0]["index"]
    np.testing.assert_array_equal(tensors[out], reference_outputs(tflite, x[np.newaxis]))


def test_reference_accepts_a_path(tmp_path):
    tflite = opmodels.op_model("fc_1d_u7")
    path = tmp_path / "m.tflite"
    path.write_bytes(tflite)
    x = np.random.default_rng(3).integers(-128, 128, size=(2, 16), dtype=np.int8)
    np.testing.assert_array_equal(reference_outputs(path, x), reference_outputs(tflite, x))


@pytest.mark.parametrize("x, message", [
    (np.zeros((2, 16), np.float32), "not int8"),
    (np.zeros((2, 15), np.int8), "shape"),
    (np.zeros(16, np.int8), "shape"),
])
def test_reference_rejects_bad_inputs(x, message):
    with pytest.raises(EdgekitError, match=message):
        reference_outputs(opmodels.op_model("fc_1d_u7"), x)


def test_reference_rejects_bad_models(tmp_path):
    with pytest.raises(EdgekitError, match="cannot load"):
        reference_outputs(b"not a flatbuffer", np.zeros((1, 16), np.int8))
    with pytest.raises(EdgekitError, match="Cannot read"):
        reference_outputs(tmp_path / "missing.tflite", np.zeros((1, 16), np.int8))
