"""The op-model factory converts every case to the ops it promises, and the reference runs them."""

import numpy as np
import pytest

from edgekit.errors import EdgekitError
from edgekit.reference import reference_outputs, reference_tensors

try:  # tests/ on sys.path (rootdir-relative import, no tests/__init__.py) or tests as a package
    import opmodels
except ImportError:
    from tests import opmodels

CASES = list(opmodels.OP_CASES)
BATCH = 3


@pytest.mark.parametrize("case_id", CASES)
def test_case_has_intended_ops(case_id):
    model = opmodels.describe(opmodels.op_model(case_id))
    assert [op["op"] for op in model["ops"]] == opmodels.OP_CASES[case_id]["ops"]
    intended = opmodels.intended_options(case_id)
    if intended is not None:
        name, options = intended
        found = [op["options"] for op in model["ops"] if op["op"] == name]
        assert any(all(o.get(k) == v for k, v in options.items()) for o in found), (
            f"no {name} with {options}; the converter produced {found}")
    (inp,), (out,) = model["inputs"], model["outputs"]
    assert inp["type"] == "INT8" and out["type"] == "INT8"
    assert inp["shape"] == [1, *opmodels.OP_CASES[case_id]["input"]]


@pytest.mark.parametrize("case_id", CASES)
def test_reference_runs(case_id):
    tflite = opmodels.op_model(case_id)
    model = opmodels.describe(tflite)
    (inp,), (out,) = model["inputs"], model["outputs"]
    x = np.random.default_rng(1234).integers(-128, 128, size=(BATCH, *inp["shape"][1:]), dtype=np.int8)
    y = reference_outputs(tflite, x)
    assert y.dtype == np.int8
    assert y.shape == (BATCH, *out["shape"][1:])
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


def test_cache_is_read_and_keyed_by_parameters(tmp_path, monkeypatch):
    case_id = "relu_input"
    monkeypatch.setenv("EDGEKIT_TEST_CACHE", str(tmp_path))
    (tmp_path / f"{case_id}-{opmodels.cache_key(case_id)}.tflite").write_bytes(b"cached")
    assert opmodels.op_model(case_id) == b"cached"  # served from disk, not converted
    key = opmodels.cache_key(case_id)
    case = opmodels.OP_CASES[case_id]
    monkeypatch.setitem(opmodels.OP_CASES, case_id, {**case, "ops": ["SOMETHING_ELSE"]})
    assert opmodels.cache_key(case_id) == key  # the expectation is not part of the key
    monkeypatch.setitem(opmodels.OP_CASES, case_id, {**case, "data": [-2.0, 2.0]})
    assert opmodels.cache_key(case_id) != key
