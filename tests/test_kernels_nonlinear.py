"""Bit-exactness of the int8 SOFTMAX, LOGISTIC, TANH and MEAN kernels against TFLite.

The reference is ai-edge-litert's interpreter with OpResolverType.BUILTIN_REF. Each test converts
a tiny Keras model with a seeded representative dataset, runs the reference with every tensor
preserved, takes the op's own input and output tensors, feeds that exact input to the C kernel
(compiled once per session into a shared library and called through ctypes) with the params
computed by edgekit.lower.nonlinear from the flatbuffer's quantization, and demands equal bytes.

Besides the converted models, the quantization of a converted model is rewritten in the
flatbuffer ("patched") to sweep many input scales and zero points without reconverting.
"""
from __future__ import annotations

import ctypes
import hashlib
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from conftest import cached_cc  # noqa: E402
from cstructs import c_struct  # noqa: E402
from opmodels import cache_dir  # noqa: E402
from edgekit.lower import nonlinear  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# The converter warns that a Keras model has no input statistics; harmless here.
pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs:UserWarning")

KERNELS = REPO / "firmware" / "kernels"
SOURCES = ["ek_softmax_s8.c", "ek_lut_s8.c", "ek_mean_s8.c", "ek_mean_s8_rows.c"]

# Representative-data ranges [lo, hi] the converter calibrates on.
RANGES = {
    "tiny": (0.0, 1e-3),
    "moderate": (-4.0, 4.0),
    "huge": (-1e3, 1e3),
    "positive": (0.5, 6.0),
    "negative": (-6.0, -0.5),
}


# --------------------------------------------------------------------------
# The C kernels through ctypes
# --------------------------------------------------------------------------

# The C structs as the headers declare them (tests/cstructs.py).
SoftmaxParams = c_struct("ek_softmax.h", "ek_softmax_params")
LutParams = c_struct("ek_lut.h", "ek_lut_params")          # LOGISTIC and TANH
MeanParams = c_struct("ek_mean.h", "ek_mean_params")


def to_struct(cls, params: dict):
    """The params dict must name exactly the C struct's fields."""
    names = [name for name, _ in cls._fields_]
    assert sorted(params) == sorted(names), f"params keys {sorted(params)} != struct fields {names}"
    values = {}
    for name, ctype in cls._fields_:
        v = params[name]
        values[name] = ctype(*v) if isinstance(v, list) else v
    return cls(**values)


@pytest.fixture(scope="session")
def lib(tmp_path_factory):
    out = tmp_path_factory.mktemp("ek_nonlinear") / "libek_nonlinear.so"
    cmd = ["gcc", "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared",
           "-o", str(out)] + [str(KERNELS / s) for s in SOURCES]
    res = subprocess.run(cached_cc(cmd), capture_output=True, text=True)
    assert res.returncode == 0, f"compiling the kernels failed:\n{res.stderr}"
    so = ctypes.CDLL(str(out))
    i8p = ctypes.POINTER(ctypes.c_int8)
    for name, cls in (("ek_softmax_s8", SoftmaxParams), ("ek_lut_s8", LutParams),
                      ("ek_mean_s8", MeanParams), ("ek_mean_s8_rows", MeanParams)):
        getattr(so, name).argtypes = [ctypes.POINTER(cls), i8p, i8p]
        getattr(so, name).restype = None
    return so


def run_c(lib, fn: str, cls, params: dict, x: np.ndarray, out_size: int) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.int8)
    y = np.zeros(out_size, dtype=np.int8)
    i8p = ctypes.POINTER(ctypes.c_int8)
    getattr(lib, fn)(ctypes.byref(to_struct(cls, params)), x.ctypes.data_as(i8p), y.ctypes.data_as(i8p))
    return y


def assert_same(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    """Tolerance 0; on failure print every mismatching index."""
    got, ref = np.asarray(got).reshape(-1), np.asarray(ref).reshape(-1)
    assert got.shape == ref.shape, f"{what}: {got.size} bytes, reference has {ref.size}"
    bad = np.flatnonzero(got != ref)
    if bad.size:
        lines = "\n".join(f"  [{i}] got {int(got[i])}, reference {int(ref[i])}" for i in bad)
        pytest.fail(f"{what}: {bad.size} of {got.size} bytes differ from TFLite BUILTIN_REF:\n{lines}")


# --------------------------------------------------------------------------
# Models and the reference interpreter
# --------------------------------------------------------------------------

_MODELS: dict[tuple, bytes] = {}


def _tf():
    import tensorflow as tf
    return tf


def _disk_path(key: tuple, input_shape: tuple, data_range: tuple, seed: int) -> Path:
    """Where a conversion is kept between runs: keyed by its arguments, this file's source (which
    holds the model builders) and the TensorFlow and Keras versions."""
    from importlib import metadata
    blob = repr((key, tuple(input_shape), tuple(data_range), seed, metadata.version("tensorflow"),
                 metadata.version("keras"), hashlib.sha256(Path(__file__).read_bytes()).hexdigest()))
    return cache_dir() / "nonlinear" / f"{key[0]}-{hashlib.sha256(blob.encode()).hexdigest()[:20]}.tflite"


def convert(key: tuple, build, input_shape: tuple, data_range: tuple, seed: int = 0) -> bytes:
    """Full-integer int8 conversion with a seeded representative dataset, cached per session and
    on disk (beside the op models, tests/opmodels.py: a run with the cache warm imports no
    TensorFlow)."""
    if key not in _MODELS:
        path = _disk_path(key, input_shape, data_range, seed)
        if path.exists():
            _MODELS[key] = path.read_bytes()
            return _MODELS[key]
        tf = _tf()
        tf.keras.utils.set_random_seed(seed)
        model = build(tf.keras)
        rng = np.random.default_rng(seed)
        lo, hi = data_range

        def representative():
            for _ in range(16):
                yield [rng.uniform(lo, hi, size=(1, *input_shape)).astype(np.float32)]

        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
        _MODELS[key] = conv.convert()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(_MODELS[key])
        os.replace(tmp, path)      # atomic: a concurrent run never reads half a file
    return _MODELS[key]


def _schema():
    from ai_edge_litert import schema_py_generated as schema
    return schema


class OpView:
    """One operator of a model: its tensors' quantization, shapes, options and constant data."""

    def __init__(self, model_bytes: bytes, op_name: str):
        schema = _schema()
        self.model = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
        graph = self.model.subgraphs[0]
        code = getattr(schema.BuiltinOperator, op_name)
        found = [op for op in graph.operators
                 if max(self.model.operatorCodes[op.opcodeIndex].builtinCode,
                        self.model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode) == code]
        if len(found) != 1:
            raise LookupError(f"expected one {op_name} in the model, found {len(found)}")
        self.op = found[0]
        self.graph = graph
        self.input, self.output = int(self.op.inputs[0]), int(self.op.outputs[0])

    def quant(self, tensor: int) -> tuple[float, int]:
        q = self.graph.tensors[tensor].quantization
        return float(q.scale[0]), int(q.zeroPoint[0])

    def shape(self, tensor: int) -> list[int]:
        return [int(d) for d in self.graph.tensors[tensor].shape]

    def const_i32(self, tensor: int) -> list[int]:
        buf = self.model.buffers[self.graph.tensors[tensor].buffer].data
        return np.frombuffer(np.asarray(buf, dtype=np.uint8).tobytes(), dtype="<i4").tolist()

    def patched(self, quant: dict[int, tuple[float, int]], beta: float | None = None) -> bytes:
        """The model with some tensors' (scale, zero point) replaced, and optionally beta."""
        import flatbuffers
        for tensor, (scale, zp) in quant.items():
            q = self.graph.tensors[tensor].quantization
            q.scale, q.zeroPoint = [float(np.float32(scale))], [int(zp)]
        if beta is not None:
            self.op.builtinOptions.beta = float(beta)
        builder = flatbuffers.Builder(0)
        builder.Finish(self.model.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


def reference(model_bytes: bytes, x: np.ndarray, op: OpView,
              shape: tuple | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Run BUILTIN_REF on model input x (resized to shape if given); return the op's
    (input, output) tensors."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    it = Interpreter(model_content=model_bytes, experimental_preserve_all_tensors=True,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    detail = it.get_input_details()[0]
    if shape is not None:
        it.resize_tensor_input(detail["index"], list(shape))
    it.allocate_tensors()
    detail = it.get_input_details()[0]
    it.set_tensor(detail["index"], x.reshape(detail["shape"]).astype(detail["dtype"]))
    it.invoke()
    return it.get_tensor(op.input).copy(), it.get_tensor(op.output).copy()


def model_input(model_bytes: bytes, x_float: np.ndarray) -> np.ndarray:
    """Quantize float input data with the model's input quantization."""
    schema = _schema()
    m = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
    t = m.subgraphs[0].tensors[m.subgraphs[0].inputs[0]]
    s, zp = float(t.quantization.scale[0]), int(t.quantization.zeroPoint[0])
    return np.clip(np.round(x_float / s) + zp, -128, 127).astype(np.int8)


# --------------------------------------------------------------------------
# LOGISTIC and TANH: exhaustive over the 256 int8 inputs
# --------------------------------------------------------------------------

ALL_INT8 = np.arange(-128, 128, dtype=np.int8)
ELEMENTWISE = {
    "LOGISTIC": ("sigmoid", nonlinear.logistic_params, "ek_lut_s8"),
    "TANH": ("tanh", nonlinear.tanh_params, "ek_lut_s8"),
}


def activation_model(op_name: str, data: str) -> tuple[bytes, OpView]:
    act = ELEMENTWISE[op_name][0]
    b = convert(("act", act, data), lambda k: k.Sequential([k.Input((256,)), k.layers.Activation(act)]),
                (256,), RANGES[data])
    return b, OpView(b, op_name)


def check_elementwise(lib, op_name: str, model_bytes: bytes, op: OpView, what: str) -> None:
    _, params_fn, fn = ELEMENTWISE[op_name]
    x_op, y_ref = reference(model_bytes, ALL_INT8, op)
    assert np.array_equal(np.sort(x_op.reshape(-1)), ALL_INT8), "the op must see all 256 inputs"
    params = params_fn(x_op.size, *op.quant(op.input), *op.quant(op.output))
    y = run_c(lib, fn, LutParams, params, x_op, x_op.size)
    assert_same(y, y_ref, what)


@pytest.mark.parametrize("op_name", sorted(ELEMENTWISE))
@pytest.mark.parametrize("data", sorted(RANGES))
def test_elementwise_converted(lib, op_name, data):
    b, op = activation_model(op_name, data)
    check_elementwise(lib, op_name, b, op, f"{op_name} calibrated on {data} {RANGES[data]}")


@pytest.mark.parametrize("op_name", sorted(ELEMENTWISE))
def test_elementwise_quantization_sweep(lib, op_name):
    """80 random input scales (1e-4 .. 30) and zero points on one converted model."""
    b, op = activation_model(op_name, "moderate")
    rng = np.random.default_rng(7)
    for trial in range(80):
        scale = float(np.float32(10 ** rng.uniform(-4, 1.5)))
        zp = int(rng.integers(-128, 128))
        patched = op.patched({op.input: (scale, zp)})
        check_elementwise(lib, op_name, patched, OpView(patched, op_name),
                          f"{op_name} input scale {scale!r} zero point {zp}")


def test_logistic_rejects_other_output_scale():
    with pytest.raises(ValueError, match="1/256"):
        nonlinear.logistic_params(4, 0.1, 0, 1.0 / 255, -128)


def test_lut_order_and_range():
    p = nonlinear.tanh_params(10, 8.0 / 128, 0, 1.0 / 128, 0)
    assert len(p["table"]) == 256 and p["table"][0] == -128 and p["table"][128] == 0
    assert p["table"][255] == 127


# --------------------------------------------------------------------------
# SOFTMAX
# --------------------------------------------------------------------------

def softmax_rows(depth: int, n_random: int, seed: int) -> np.ndarray:
    """Extreme rows (all equal at several levels, one maximum, all -128 / 127, two levels)
    followed by fixed-seed random rows."""
    rng = np.random.default_rng(seed)
    rows = [np.full(depth, v) for v in (-128, -1, 0, 77, 127)]
    one_max = np.full(depth, -128)
    one_max[depth // 2] = 127
    rows.append(one_max)
    rows.append(np.where(np.arange(depth) % 2 == 0, 127, 126))
    rows.append(np.linspace(-128, 127, depth).round())
    rows += [rng.integers(-128, 128, size=depth) for _ in range(n_random)]
    rows += [rng.integers(100, 128, size=depth) for _ in range(2)]
    return np.array(rows, dtype=np.int8)


def reference_aborts(rows: np.ndarray, scale: float, beta: float) -> np.ndarray:
    """Rows whose sum of exponentials reaches 512: TFLite's reference hits
    TFLITE_CHECK(exponent <= 31) and aborts the process on them (with a safety margin)."""
    d = (rows.astype(np.float64) - rows.max(axis=1, keepdims=True)) * scale * beta
    return np.exp(d).sum(axis=1) > 400


def check_softmax(lib, model_bytes: bytes, op: OpView, rows: np.ndarray, what: str) -> None:
    beta = float(op.op.builtinOptions.beta)
    in_scale, in_zp = op.quant(op.input)
    rows = rows[~reference_aborts(rows, in_scale, beta)]
    assert len(rows) >= 4, f"{what}: too few rows left to test"
    depth = rows.shape[1]
    x_op, y_ref = reference(model_bytes, rows, op, shape=(1, *rows.shape))
    params = nonlinear.softmax_params(x_op.shape, in_scale, in_zp, *op.quant(op.output), beta)
    assert params["depth"] == depth
    y = run_c(lib, "ek_softmax_s8", SoftmaxParams, params, x_op, x_op.size)
    assert_same(y, y_ref, what)


def softmax_model(depth: int, data: str, seed: int = 0) -> tuple[bytes, OpView]:
    """Input -> Softmax: the model input is the softmax input, so any row can be fed."""
    b = convert(("softmax", depth, data, seed),
                lambda k: k.Sequential([k.Input((None, depth)), k.layers.Softmax()]),
                (4, depth), RANGES[data], seed)
    return b, OpView(b, "SOFTMAX")


@pytest.mark.parametrize("data", sorted(RANGES))
def test_softmax_ranges(lib, data):
    b, op = softmax_model(10, data)
    check_softmax(lib, b, op, softmax_rows(10, 24, seed=1), f"SOFTMAX depth 10, {data} range")


@pytest.mark.parametrize("depth", [2, 12, 64, 1000])
def test_softmax_depths(lib, depth):
    b, op = softmax_model(depth, "moderate")
    check_softmax(lib, b, op, softmax_rows(depth, 12, seed=depth), f"SOFTMAX depth {depth}")


def test_softmax_scale_and_beta_sweep(lib):
    """Input scales from 2^-26 upwards (the smallest TFLite accepts) and beta != 1."""
    b, op = softmax_model(12, "moderate")
    rng = np.random.default_rng(3)
    rows = softmax_rows(12, 8, seed=5)
    scales = [1.6e-8, 3e-8, 1e-6, 1e-4, 0.01, 0.1, 1.0, 4.0, 40.0, 1e4]
    scales += [float(10 ** rng.uniform(-7, 3)) for _ in range(30)]
    for i, scale in enumerate(scales):
        beta = [1.0, 0.5, 2.0, 0.1][i % 4]
        if np.float32(scale) * 2.0 ** 26 * np.float32(beta) <= 1.0:
            continue
        zp = int(rng.integers(-128, 128))
        patched = op.patched({op.input: (scale, zp)}, beta=beta)
        check_softmax(lib, patched, OpView(patched, "SOFTMAX"), rows,
                      f"SOFTMAX input scale {scale!r} beta {beta}")


@pytest.mark.parametrize("depth", [10, 64])
def test_softmax_after_dense(lib, depth):
    """Input -> Dense -> Softmax: the softmax input comes from a real requantized layer."""
    b = convert(("dense_softmax", depth), lambda k: k.Sequential(
        [k.Input((16,)), k.layers.Dense(depth), k.layers.Softmax()]), (16,), RANGES["moderate"], 2)
    op = OpView(b, "SOFTMAX")
    rng = np.random.default_rng(depth)
    for trial in range(8):
        x = model_input(b, rng.uniform(-4, 4, size=16) * (1 + trial))
        x_op, y_ref = reference(b, x, op)
        params = nonlinear.softmax_params(x_op.shape, *op.quant(op.input), *op.quant(op.output),
                                          float(op.op.builtinOptions.beta))
        y = run_c(lib, "ek_softmax_s8", SoftmaxParams, params, x_op, x_op.size)
        assert_same(y, y_ref, f"Dense -> SOFTMAX depth {depth}, input #{trial}")


def test_softmax_large_uniform_rows_stay_defined(lib):
    """Where TFLite aborts (sum of exponentials >= 512) the kernel still returns the rounded
    softmax: 256/600 and 256/1000 both round to 0, i.e. -128."""
    for depth in (600, 1000):
        params = nonlinear.softmax_params([1, depth], 1e-5, 0, 1 / 256, -128)
        y = run_c(lib, "ek_softmax_s8", SoftmaxParams, params, np.full(depth, 3, np.int8), depth)
        assert (y == -128).all()


def test_softmax_rejects_bad_quantization():
    with pytest.raises(ValueError, match="zero point -128"):
        nonlinear.softmax_params([1, 4], 0.1, 0, 1 / 256, 0)
    with pytest.raises(ValueError, match="1/256"):
        nonlinear.softmax_params([1, 4], 0.1, 0, 1 / 128, -128)
    with pytest.raises(ValueError, match="2\\^-26"):
        nonlinear.softmax_params([1, 4], 1e-9, 0, 1 / 256, -128)


# --------------------------------------------------------------------------
# MEAN
# --------------------------------------------------------------------------

SPATIAL = [(1, 1), (5, 5), (25, 5), (8, 8), (13, 7)]


def check_mean(lib, model_bytes: bytes, op: OpView, x: np.ndarray, what: str) -> None:
    x_op, y_ref = reference(model_bytes, x, op)
    params = nonlinear.mean_params(x_op.shape, op.const_i32(int(op.op.inputs[1])),
                                   bool(op.op.builtinOptions.keepDims),
                                   *op.quant(op.input), *op.quant(op.output))
    y = run_c(lib, "ek_mean_s8", MeanParams, params, x_op, y_ref.size)
    assert_same(y, y_ref, what)
    if params["ndims"] == 2 and params["reduce_mask"] == 1:     # GAP: the column kernel too
        assert_same(run_c(lib, "ek_mean_s8_rows", MeanParams, params, x_op, y_ref.size), y_ref, f"{what} (rows)")


def mean_inputs(shape: tuple, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return ([np.full(shape, v, np.int8) for v in (-128, 127, 0)]
            + [rng.integers(-128, 128, size=shape).astype(np.int8) for _ in range(3)]
            + [rng.integers(120, 128, size=shape).astype(np.int8),
               rng.integers(-128, -120, size=shape).astype(np.int8)])


@pytest.mark.parametrize("keep", [False, True], ids=["flat", "keepdims"])
@pytest.mark.parametrize("hw", SPATIAL, ids=lambda hw: f"{hw[0]}x{hw[1]}")
def test_gap_after_conv(lib, hw, keep):
    """Input -> Conv2D -> GlobalAveragePooling2D, calibrated on a range chosen per shape."""
    h, w = hw
    data = sorted(RANGES)[SPATIAL.index(hw)]
    b = convert(("conv_gap", h, w, keep, data), lambda k: k.Sequential(
        [k.Input((h, w, 3)), k.layers.Conv2D(6, 3, padding="same"),
         k.layers.GlobalAveragePooling2D(keepdims=keep)]), (h, w, 3), RANGES[data], h * w)
    if (h, w) == (1, 1) and keep:
        # The converter drops a keep_dims mean over a 1x1 image (an identity): nothing to test
        # but that it really is gone.
        from edgekit.frontend.tflite import load_tflite
        assert "MEAN" not in [o.kind for o in load_tflite(b).ops]
        return
    op = OpView(b, "MEAN")
    rng = np.random.default_rng(h * 100 + w)
    lo, hi = RANGES[data]
    for trial in range(4):
        x = model_input(b, rng.uniform(lo, hi, size=(h, w, 3)))
        check_mean(lib, b, op, x, f"Conv -> GAP {h}x{w} keepdims={keep}, {data} input #{trial}")


@pytest.mark.parametrize("data", sorted(RANGES))
def test_gap_direct(lib, data):
    """Input -> GlobalAveragePooling2D with extreme and random inputs, both keep_dims."""
    for keep in (False, True):
        b = convert(("gap", keep, data), lambda k: k.Sequential(
            [k.Input((13, 7, 5)), k.layers.GlobalAveragePooling2D(keepdims=keep)]),
            (13, 7, 5), RANGES[data], 11)
        op = OpView(b, "MEAN")
        for i, x in enumerate(mean_inputs((13, 7, 5), seed=len(data))):
            check_mean(lib, b, op, x, f"GAP 13x7x5 keepdims={keep}, {data} range, input #{i}")


def test_gap_quantization_sweep(lib):
    """Random input/output scales and zero points, including equal input and output
    quantization and multipliers above one."""
    b = convert(("gap", False, "moderate"), lambda k: k.Sequential(
        [k.Input((13, 7, 5)), k.layers.GlobalAveragePooling2D()]), (13, 7, 5), RANGES["moderate"], 11)
    op = OpView(b, "MEAN")
    rng = np.random.default_rng(9)
    inputs = mean_inputs((13, 7, 5), seed=4)
    for trial in range(40):
        s_in = float(10 ** rng.uniform(-3, 1))
        s_out = s_in if trial % 5 == 0 else s_in * float(10 ** rng.uniform(-2.5, 2.5))
        zp_in = int(rng.integers(-128, 128))
        zp_out = zp_in if trial % 5 == 0 else int(rng.integers(-128, 128))
        patched = op.patched({op.input: (s_in, zp_in), op.output: (s_out, zp_out)})
        check_mean(lib, patched, OpView(patched, "MEAN"), inputs[trial % len(inputs)],
                   f"GAP in ({s_in!r}, {zp_in}) out ({s_out!r}, {zp_out})")


@pytest.mark.parametrize("axes,keep", [([3], False), ([1], True), ([1, 3], False),
                                       ([1, 2, 3], True), ([-1, -3], True)])
def test_mean_other_axes(lib, axes, keep):
    """tf.reduce_mean over other axis sets, including non-adjacent ones."""
    b = convert(("reduce_mean", tuple(axes), keep), lambda k: k.Sequential(
        [k.Input((6, 5, 4)), k.layers.Lambda(lambda t: _tf().reduce_mean(t, axis=axes, keepdims=keep))]),
        (6, 5, 4), RANGES["moderate"], 5)
    op = OpView(b, "MEAN")
    for i, x in enumerate(mean_inputs((6, 5, 4), seed=len(axes))):
        check_mean(lib, b, op, x, f"reduce_mean axes {axes} keepdims={keep}, input #{i}")


def test_mean_params_canonical_gap():
    p = nonlinear.mean_params([1, 8, 8, 16], [1, 2], False, 0.05, -3, 0.02, 5)
    assert (p["ndims"], p["dims"][:2], p["reduce_mask"], p["count"]) == (2, [64, 16], 1, 64)
    p = nonlinear.mean_params([1, 6, 5, 4], [1, 3], False, 0.05, 0, 0.05, 0)
    assert (p["ndims"], p["dims"][:3], p["reduce_mask"], p["count"]) == (3, [6, 5, 4], 0b101, 24)


def test_mean_rejects_bad_axes():
    with pytest.raises(ValueError, match="axis 4"):
        nonlinear.mean_params([1, 2, 2, 3], [4], False, 0.1, 0, 0.1, 0)
    with pytest.raises(ValueError, match="no elements"):
        nonlinear.mean_params([1, 0, 2, 3], [1, 2], False, 0.1, 0, 0.1, 0)


# --------------------------------------------------------------------------
# Sanitizers: the same kernels under -fsanitize=address,undefined
# --------------------------------------------------------------------------

DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "ek_softmax.h"
#include "ek_lut.h"
#include "ek_mean.h"

/* stdin: records of int32 {op, input bytes, output bytes}, the params struct, the input;
 * stdout: the output bytes of each record. */
int main(void)
{
    int32_t hdr[3];
    while (fread(hdr, sizeof hdr, 1, stdin) == 1) {
        union { ek_softmax_params s; ek_lut_params l; ek_mean_params m; } p;
        const size_t sizes[4] = {sizeof p.s, sizeof p.l, sizeof p.l, sizeof p.m};
        int8_t *in = malloc((size_t)hdr[1]), *out = malloc((size_t)hdr[2]);
        if (hdr[0] < 0 || hdr[0] > 3 || !in || !out || fread(&p, sizes[hdr[0]], 1, stdin) != 1 ||
            fread(in, 1, (size_t)hdr[1], stdin) != (size_t)hdr[1]) {
            return 2;
        }
        switch (hdr[0]) {
        case 0: ek_softmax_s8(&p.s, in, out); break;
        case 1: case 2: ek_lut_s8(&p.l, in, out); break;
        default: ek_mean_s8(&p.m, in, out); break;
        }
        fwrite(out, 1, (size_t)hdr[2], stdout);
        free(in);
        free(out);
    }
    return 0;
}
"""


def sanitizer_cases() -> list[tuple[str, type, dict, np.ndarray, int]]:
    """(function, struct, params, input, output size) at the edges of every parameter range."""
    cases = []
    rows = softmax_rows(12, 6, seed=8)
    for scale in (1.6e-8, 0.05, 3.0, 1e4):  # left shift 0 (diff_min ~ -2^31) .. 31 (diff_min 0)
        p = nonlinear.softmax_params(rows.shape, scale, 0, 1 / 256, -128)
        cases.append(("ek_softmax_s8", SoftmaxParams, p, rows, rows.size))
    for depth in (1000, 5000):  # sums of exponentials past 512 and past 4096
        x = np.full((2, depth), 9, np.int8)
        x[1, ::7] = -100
        p = nonlinear.softmax_params(x.shape, 1e-6, 0, 1 / 256, -128)
        cases.append(("ek_softmax_s8", SoftmaxParams, p, x, x.size))
    for fn, params_fn in (("ek_lut_s8", nonlinear.logistic_params), ("ek_lut_s8", nonlinear.tanh_params)):
        for scale, zp in ((1e-4, -128), (0.05, 3), (30.0, 127)):
            p = params_fn(256, scale, zp, 1 / 256, -128)
            cases.append((fn, LutParams, p, ALL_INT8, 256))
    x = mean_inputs((1, 13, 7, 5), seed=2)
    for s_in, s_out in ((1.0, 1e-9), (1.0, 1e-6), (0.05, 0.05), (1e-9, 1.0)):  # shifts +30 .. -31
        p = nonlinear.mean_params([1, 13, 7, 5], [1, 2], True, s_in, 5, s_out, -7)
        for xi in (x[0], x[1], x[4]):
            cases.append(("ek_mean_s8", MeanParams, p, xi, 5))
    for axes, n_out in (([1, 3], 5), ([0, 1, 2, 3], 1), ([2], 24)):
        p = nonlinear.mean_params([1, 6, 5, 4], axes, False, 0.1, -3, 0.07, 9)
        cases.append(("ek_mean_s8", MeanParams, p, x[3].reshape(-1)[:120], n_out))
    return cases


def test_kernels_clean_under_sanitizers(lib, tmp_path):
    """Compiled with -fsanitize=address,undefined (any report aborts), the kernels run every
    edge case above and produce the same bytes as the library the other tests validate."""
    (tmp_path / "driver.c").write_text(DRIVER)
    exe = tmp_path / "driver"
    cmd = ["gcc", "-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror",
           "-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-I", str(KERNELS),
           "-o", str(exe), str(tmp_path / "driver.c")] + [str(KERNELS / s) for s in SOURCES]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"compiling with sanitizers failed:\n{res.stderr}"
    ops = {"ek_softmax_s8": 0, "ek_lut_s8": 1, "ek_mean_s8": 3}
    cases = sanitizer_cases()
    blob, expected = b"", []
    for fn, cls, params, x, out_size in cases:
        x = np.ascontiguousarray(x, dtype=np.int8)
        blob += np.array([ops[fn], x.size, out_size], "<i4").tobytes()
        blob += bytes(to_struct(cls, params)) + x.tobytes()
        expected.append(run_c(lib, fn, cls, params, x, out_size))
    res = subprocess.run([str(exe)], input=blob, capture_output=True)
    assert res.returncode == 0 and not res.stderr, res.stderr.decode(errors="replace")
    got = np.frombuffer(res.stdout, dtype=np.int8)
    assert_same(got, np.concatenate(expected), f"{len(cases)} sanitizer cases")
    # where TFLite would abort, the kernel still returns the rounded softmax (all below 1/512)
    big = [e for (fn, _, p, _, _), e in zip(cases, expected) if fn == "ek_softmax_s8" and p["depth"] >= 1000]
    assert all((e == -128).all() for e in big)
