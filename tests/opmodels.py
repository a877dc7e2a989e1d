"""Tiny Keras models converted to full-integer int8 TFLite, one op (or a few) each.

The per-op bit-exactness tests run edgekit's kernels against TFLite's reference
interpreter on these models.  ``OP_CASES`` maps a case id to its parameters;
``op_model(case_id)`` returns the .tflite bytes, converted once and cached on
disk (``$EDGEKIT_TEST_CACHE`` or ``~/.cache/edgekit-tests``) under a hash of
the parameters and the TensorFlow and Keras versions.

Everything is seeded: every weight is drawn from ``np.random.default_rng`` and
set with ``layer.set_weights``, and so is the representative data.  Each case
lists in ``"ops"`` the operators the converter produced for it, in execution
order (op_model checks it, and the options the case asks for); ``describe()`` dumps a model's
operators with their options and the quantization of their tensors.

Run ``python tests/opmodels.py`` to convert every case and print its ops.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import warnings
from importlib import metadata
from pathlib import Path

import numpy as np

# Bump when a builder changes in a way the parameters do not show.
FACTORY_VERSION = 1

REPRESENTATIVE_SAMPLES = 24


# --------------------------------------------------------------------------
# Case table
# --------------------------------------------------------------------------
# Every case: kind (the builder), input (shape without batch), data (the
# representative range [lo, hi]), seed, ops (what the converter produced), and
# the builder's own parameters.  "main" names the layer whose options
# intended_options() checks, and "scales"/"channel_scales" multiply the kernel
# of the named layer (all of it, or per output channel).


def _case(kind, input, ops, data=(-1.0, 1.0), seed=0, **params):
    return dict(kind=kind, input=list(input), data=list(data), seed=seed, ops=list(ops), **params)


def _conv(input, filters, kernel, strides=1, padding="same", dilation=1, act=None, bias=True, **kw):
    return _case("conv2d", input, kw.pop("ops", ["CONV_2D"]), filters=filters, kernel=list(_pair(kernel)),
                 strides=list(_pair(strides)), padding=padding, dilation=list(_pair(dilation)),
                 act=act, bias=bias, **kw)


def _dw(input, kernel=3, strides=1, padding="same", multiplier=1, dilation=1, act=None, bias=True, **kw):
    return _case("dwconv2d", input, kw.pop("ops", ["DEPTHWISE_CONV_2D"]), kernel=list(_pair(kernel)),
                 strides=list(_pair(strides)), padding=padding, multiplier=multiplier,
                 dilation=list(_pair(dilation)), act=act, bias=bias, **kw)


def _fc(input, units, act=None, bias=True, **kw):
    ops = ["RESHAPE", "FULLY_CONNECTED"] if len(input) > 1 and kw.get("flatten", True) else ["FULLY_CONNECTED"]
    return _case("dense", input, kw.pop("ops", ops), units=units, act=act, bias=bias, **kw)


def _pool(op, input, pool, strides, padding, **kw):
    name = {"avg": "AVERAGE_POOL_2D", "max": "MAX_POOL_2D"}[op]
    return _case("pool", input, kw.pop("ops", [name]), pool_op=op, pool=list(_pair(pool)),
                 strides=list(_pair(strides)), padding=padding, **kw)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


OP_CASES: dict[str, dict] = {
    # ---- CONV_2D -----------------------------------------------------------
    "conv_1x1_c8_f16": _conv((6, 6, 8), 16, 1),
    "conv_1x1_s2_valid_c3_f5": _conv((7, 9, 3), 5, 1, strides=2, padding="valid"),
    "conv_3x3_same_c3_f5": _conv((7, 9, 3), 5, 3),
    "conv_3x3_valid_c3_f5": _conv((7, 9, 3), 5, 3, padding="valid"),
    "conv_3x3_same_c1_f1": _conv((7, 9, 1), 1, 3),
    "conv_3x3_s2_same_c1_f5": _conv((7, 9, 1), 5, 3, strides=2),
    "conv_3x3_s2_valid_c8_f16": _conv((13, 5, 8), 16, 3, strides=2, padding="valid"),
    "conv_3x3_s2x1_same_c8_f5": _conv((13, 5, 8), 5, 3, strides=(2, 1)),
    "conv_3x3_s2x1_valid_c3_f1": _conv((13, 5, 3), 1, 3, strides=(2, 1), padding="valid"),
    "conv_5x3_same_c3_f16": _conv((7, 9, 3), 16, (5, 3)),
    "conv_5x3_s2_valid_c8_f1": _conv((13, 5, 8), 1, (5, 3), strides=2, padding="valid"),
    "conv_5x3_s2x1_same_c1_f5": _conv((13, 5, 1), 5, (5, 3), strides=(2, 1)),
    "conv_10x4_s2_same_c1_f16": _conv((25, 10, 1), 16, (10, 4), strides=2),
    "conv_10x4_valid_c1_f5": _conv((13, 5, 1), 5, (10, 4), padding="valid"),
    "conv_10x4_s2x1_same_c3_f1": _conv((13, 9, 3), 1, (10, 4), strides=(2, 1)),
    "conv_3x3_d2_same_c3_f5": _conv((7, 9, 3), 5, 3, dilation=2),
    "conv_3x3_d2_valid_c8_f16": _conv((9, 9, 8), 16, 3, dilation=2, padding="valid"),
    "conv_5x3_d2_same_c1_f5": _conv((13, 5, 1), 5, (5, 3), dilation=2),
    "conv_3x3_same_c3_f5_relu": _conv((7, 9, 3), 5, 3, act="relu"),
    "conv_3x3_s2_valid_c8_f16_relu": _conv((13, 5, 8), 16, 3, strides=2, padding="valid", act="relu"),
    "conv_3x3_same_c3_f5_relu6": _conv((7, 9, 3), 5, 3, act="relu6"),
    "conv_3x3_same_c3_f5_nobias": _conv((7, 9, 3), 5, 3, bias=False),
    "conv_5x3_s2_valid_c8_f16_nobias_relu6": _conv((13, 5, 8), 16, (5, 3), strides=2, padding="valid",
                                                  bias=False, act="relu6"),
    # ---- DEPTHWISE_CONV_2D ---------------------------------------------------
    "dw_3x3_same_c4_m1": _dw((7, 9, 4)),
    "dw_3x3_same_c6_m1": _dw((7, 9, 6)),
    "dw_3x3_s2_same_c7_m1": _dw((7, 9, 7), strides=2),
    "dw_3x3_s2_valid_c1_m1": _dw((13, 5, 1), strides=2, padding="valid"),
    "dw_3x3_same_c4_m2": _dw((7, 9, 4), multiplier=2),
    "dw_3x3_s2_same_c1_m3": _dw((7, 9, 1), strides=2, multiplier=3),
    "dw_3x3_valid_c7_m3": _dw((13, 5, 7), padding="valid", multiplier=3),
    "dw_3x3_d2_same_c4_m1": _dw((7, 9, 4), dilation=2),
    "dw_3x3_d2_valid_c7_m2": _dw((9, 9, 7), dilation=2, padding="valid", multiplier=2),
    "dw_3x3_same_c4_m1_relu": _dw((7, 9, 4), act="relu"),
    "dw_3x3_s2_same_c7_m2_relu6": _dw((7, 9, 7), strides=2, multiplier=2, act="relu6"),
    "dw_3x3_same_c4_m1_nobias": _dw((7, 9, 4), bias=False),
    # ---- FULLY_CONNECTED -----------------------------------------------------
    "fc_1d_u1": _fc((16,), 1),
    "fc_1d_u7": _fc((16,), 7),
    "fc_1d_u64": _fc((40,), 64),
    "fc_1d_u7_nobias": _fc((16,), 7, bias=False),
    "fc_1d_u7_relu": _fc((16,), 7, act="relu"),
    "fc_1d_u64_relu6": _fc((16,), 64, act="relu6"),
    "fc_flat4d_u7": _fc((4, 3, 2), 7),
    "fc_flat4d_u1_nobias_relu": _fc((5, 3, 4), 1, bias=False, act="relu"),
    "fc_2d_last_axis_u7": _fc((3, 8), 7, flatten=False),
    # ---- AVERAGE_POOL_2D / MAX_POOL_2D --------------------------------------
    "avgpool_2x2_s2_valid": _pool("avg", (8, 6, 3), 2, 2, "valid"),
    "avgpool_2x2_s2_same_odd": _pool("avg", (7, 9, 3), 2, 2, "same"),
    "avgpool_3x3_s1_same": _pool("avg", (7, 9, 4), 3, 1, "same"),
    "avgpool_3x3_s2_same_odd": _pool("avg", (13, 5, 2), 3, 2, "same"),
    "avgpool_3x3_s2_valid_odd": _pool("avg", (13, 5, 2), 3, 2, "valid"),
    "avgpool_2x2_s1_valid": _pool("avg", (7, 9, 1), 2, 1, "valid"),
    "maxpool_2x2_s2_valid": _pool("max", (8, 6, 3), 2, 2, "valid"),
    "maxpool_2x2_s2_same_odd": _pool("max", (7, 9, 3), 2, 2, "same"),
    "maxpool_3x3_s1_same": _pool("max", (7, 9, 4), 3, 1, "same"),
    "maxpool_3x3_s2_same_odd": _pool("max", (13, 5, 2), 3, 2, "same"),
    "maxpool_3x3_s2_valid_odd": _pool("max", (13, 5, 2), 3, 2, "valid"),
    # ---- MEAN ----------------------------------------------------------------
    "gap_2d": _case("gap", (7, 9, 8), ["MEAN"], keepdims=False),
    "gap_2d_keepdims": _case("gap", (7, 9, 8), ["MEAN"], keepdims=True),
    "gap_2d_after_conv": _case("gap", (5, 5, 3), ["CONV_2D", "MEAN"], keepdims=False, conv=8),
    # ---- ADD -----------------------------------------------------------------
    "add_conv_conv": _case("add", (7, 9, 3), ["CONV_2D", "CONV_2D", "ADD"], topology="conv_conv",
                           scales={"conv_b": 8.0}),
    "add_conv_input": _case("add", (7, 9, 4), ["CONV_2D", "ADD"], topology="conv_input"),
    "add_conv_conv_relu": _case("add", (7, 9, 3), ["CONV_2D", "CONV_2D", "ADD"], topology="conv_conv",
                                act="relu", scales={"conv_b": 0.1}),
    "add_conv_conv_relu6": _case("add", (7, 9, 3), ["CONV_2D", "CONV_2D", "ADD"], topology="conv_conv",
                                 act="relu6", scales={"conv_b": 3.0}),
    "add_resnet_block": _case("add", (6, 6, 8), ["CONV_2D", "CONV_2D", "ADD"], topology="resnet"),
    "add_scales_1000x": _case("add", (7, 9, 3), ["CONV_2D", "CONV_2D", "ADD"], topology="conv_conv",
                              scales={"conv_b": 1000.0}),
    # ---- RESHAPE / Flatten / SQUEEZE ---------------------------------------
    "flatten_3d": _case("flatten", (3, 4, 5), ["RESHAPE"]),
    "conv_then_reshape": _case("reshape", (4, 6, 2), ["CONV_2D", "RESHAPE"], target=[24, 3], conv=3),
    # tf.squeeze (keras.ops.squeeze) of a static shape becomes RESHAPE: the converter never emits SQUEEZE here.
    "squeeze_axis1": _case("squeeze", (1, 5, 3), ["RESHAPE"]),
    # ---- SOFTMAX -------------------------------------------------------------
    "softmax_fc_logits_small": _case("softmax", (16,), ["FULLY_CONNECTED", "SOFTMAX"], units=10,
                                     scales={"fc": 0.05}),
    "softmax_fc_logits_large": _case("softmax", (16,), ["FULLY_CONNECTED", "SOFTMAX"], units=10,
                                     scales={"fc": 30.0}),
    "softmax_input_wide": _case("softmax", (12,), ["SOFTMAX"], data=(-20.0, 20.0), units=0),
    # ---- LOGISTIC / TANH -----------------------------------------------------
    "sigmoid_input": _case("activation", (6, 7), ["LOGISTIC"], data=(-8.0, 8.0), fn="sigmoid"),
    "sigmoid_after_fc": _case("activation", (16,), ["FULLY_CONNECTED", "LOGISTIC"], fn="sigmoid",
                              units=9, scales={"fc": 4.0}),
    "tanh_input": _case("activation", (6, 7), ["TANH"], data=(-4.0, 4.0), fn="tanh"),
    "tanh_after_conv": _case("activation", (5, 7, 3), ["CONV_2D", "TANH"], fn="tanh", conv=4),
    # ---- PAD -----------------------------------------------------------------
    "pad_asymmetric": _case("pad", (5, 7, 3), ["PAD"], padding=[[1, 2], [0, 3]]),
    "pad_symmetric_positive_data": _case("pad", (5, 7, 3), ["PAD"], data=(0.5, 2.0), padding=[[1, 1], [1, 1]]),
    # ZeroPadding2D((0,1),(0,1)) + 3x3/2 VALID conv equals SAME padding: the converter folds the PAD away.
    "pad_folded_into_conv_s2": _case("pad", (8, 8, 3), ["CONV_2D"], padding=[[0, 1], [0, 1]], conv=4),
    # ---- CONCATENATION ------------------------------------------------------
    "concat_conv_conv": _case("concat", (7, 9, 3), ["CONV_2D", "CONV_2D", "CONCATENATION"],
                              topology="conv_conv", scales={"conv_b": 5.0}),
    "concat_input_conv": _case("concat", (7, 9, 3), ["CONV_2D", "CONCATENATION"], topology="input_conv",
                               scales={"conv_b": 20.0}),
    # Concat inputs must share the output's scale; where an input's scale is fixed by its producer
    # (LOGISTIC 1/256 zp -128, TANH 1/128 zp 0) the converter inserts an int8->int8 QUANTIZE (requantize).
    "concat_sigmoid_input": _case("concat", (7, 9, 3), ["LOGISTIC", "QUANTIZE", "CONCATENATION"],
                                  topology="sigmoid_input", data=(-6.0, 6.0)),
    "concat_tanh_sigmoid": _case("concat", (7, 9, 3), ["LOGISTIC", "QUANTIZE", "TANH", "QUANTIZE", "CONCATENATION"],
                                 topology="tanh_sigmoid", data=(-4.0, 4.0)),
    # ---- standalone RELU / RELU6 --------------------------------------------
    "relu_input": _case("activation", (6, 7, 3), ["RELU"], fn="relu"),
    "relu6_input": _case("activation", (6, 7, 3), ["RELU6"], data=(-8.0, 8.0), fn="relu6"),
    # ReLU after a concat stays a standalone RELU; after a pool (or conv, FC, add) it is fused.
    "relu_after_concat": _case("concat", (7, 9, 3), ["CONV_2D", "CONV_2D", "CONCATENATION", "RELU"],
                               topology="conv_conv", act="relu", scales={"conv_b": 5.0}),
    "relu6_after_concat": _case("concat", (7, 9, 3), ["CONV_2D", "CONCATENATION", "RELU6"], topology="input_conv",
                                act="relu6", data=(-8.0, 8.0)),
    "relu6_after_maxpool": _case("pool", (8, 6, 3), ["MAX_POOL_2D"], data=(-9.0, 9.0), pool_op="max",
                                 pool=[2, 2], strides=[2, 2], padding="valid", act="relu6"),
    # ---- extreme quantization -----------------------------------------------
    "conv_tiny_range": _conv((7, 9, 3), 5, 3, data=(0.0, 1e-3)),
    "conv_huge_range": _conv((7, 9, 3), 5, 3, data=(-1e3, 1e3)),
    "conv_all_positive_input": _conv((7, 9, 3), 5, 3, data=(0.0, 1.0)),
    "conv_all_negative_input": _conv((7, 9, 3), 5, 3, data=(-1.0, 0.0)),
    "conv_channel_magnitudes": _conv((7, 9, 3), 5, 3, channel_scales={"main": [1e-4, 1.0, 10.0, 3e-4, 0.3]}),
    "conv_zero_channel": _conv((7, 9, 3), 5, 3, act="relu", channel_scales={"main": [1.0, 0.0, 1.0, 1.0, 1.0]}),
    "dw_channel_magnitudes_zero": _dw((7, 9, 4), channel_scales={"main": [1e-4, 10.0, 0.0, 1.0]}),
    "fc_all_positive_input": _fc((16,), 7, data=(0.0, 1.0)),
    "fc_all_negative_input": _fc((16,), 7, data=(-1.0, 0.0)),
    "fc_unit_magnitudes_zero": _fc((16,), 7, channel_scales={"main": [1e-4, 1.0, 10.0, 0.0, 1.0, 1.0, 0.5]}),
    "avgpool_all_negative_input": _pool("avg", (7, 9, 3), 3, 2, "same", data=(-1.0, 0.0)),
    "maxpool_tiny_range": _pool("max", (7, 9, 3), 3, 2, "same", data=(0.0, 1e-3)),
    # ---- small multi-op models ----------------------------------------------
    # The Flatten before the Dense disappears: FULLY_CONNECTED takes the [1, 1, 1, 16] pool output as is.
    "mini_dscnn": _case("dscnn", (25, 10, 1), [
        "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D",
        "AVERAGE_POOL_2D", "FULLY_CONNECTED", "SOFTMAX"]),
    "mini_resnet": _case("resnet", (8, 8, 3), [
        "CONV_2D", "CONV_2D", "CONV_2D", "ADD", "CONV_2D", "CONV_2D", "CONV_2D", "ADD",
        "MEAN", "FULLY_CONNECTED", "SOFTMAX"]),
    # Its ZeroPadding2D + DepthwiseConv2D(strides=2, "valid") becomes one DEPTHWISE_CONV_2D SAME.
    "mini_mobilenet": _case("mobilenet", (16, 16, 3), [
        "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D",
        "MEAN", "FULLY_CONNECTED", "SOFTMAX"]),
}


# --------------------------------------------------------------------------
# Building, converting, caching
# --------------------------------------------------------------------------

def cache_dir() -> Path:
    return Path(os.environ.get("EDGEKIT_TEST_CACHE") or Path.home() / ".cache" / "edgekit-tests")


def cache_key(case_id: str) -> str:
    params = {k: v for k, v in OP_CASES[case_id].items() if k != "ops"}
    blob = json.dumps({
        "params": params,
        "factory": FACTORY_VERSION,
        "tensorflow": metadata.version("tensorflow"),
        "keras": metadata.version("keras"),
    }, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


_CHECKED: set[str] = set()   # cases whose model was checked against their promise in this process


def op_model(case_id: str) -> bytes:
    """The case's int8 .tflite bytes, converted on first use and cached on disk; checked (once
    per process) to hold the ops and options the case promises (check_case), so that every test
    on the case tests what the case says."""
    if case_id not in OP_CASES:
        raise KeyError(f"No op-model case named {case_id!r}.")
    path = cache_dir() / f"{case_id}-{cache_key(case_id)}.tflite"
    if path.exists():
        tflite = path.read_bytes()
    else:
        tflite = convert_case(case_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(tflite)
        os.replace(tmp, path)  # atomic: parallel test workers never see half a file
    if case_id not in _CHECKED:
        problems = check_case(case_id, tflite)
        if problems:
            raise RuntimeError(f"the op case {case_id!r} does not hold what it promises ({path}):\n  "
                               + "\n  ".join(problems))
        _CHECKED.add(case_id)
    return tflite


def check_case(case_id: str, tflite: bytes) -> list[str]:
    """What is wrong with a case's model (empty when right): its ops must be the case's "ops",
    the op it is about must carry the options the case's parameters ask for (intended_options),
    and it must take and give int8 with the case's input shape."""
    model = describe(tflite)
    problems = []
    ops = [op["op"] for op in model["ops"]]
    if ops != OP_CASES[case_id]["ops"]:
        problems.append(f"ops {ops}, promised {OP_CASES[case_id]['ops']}")
    intended = intended_options(case_id)
    if intended is not None:
        name, options = intended
        found = [op["options"] for op in model["ops"] if op["op"] == name]
        if not any(all(o.get(k) == v for k, v in options.items()) for o in found):
            problems.append(f"no {name} with {options}; the converter produced {found}")
    (inp,), (out,) = model["inputs"], model["outputs"]
    if inp["type"] != "INT8" or out["type"] != "INT8":
        problems.append(f"input {inp['type']}, output {out['type']}: not int8")
    if inp["shape"] != [1, *OP_CASES[case_id]["input"]]:
        problems.append(f"input shape {inp['shape']}, promised [1, {OP_CASES[case_id]['input']}]")
    return problems


def convert_case(case_id: str) -> bytes:
    """Build the case's Keras model and convert it (no cache)."""
    p = OP_CASES[case_id]
    tf, keras = _tf()
    keras.backend.clear_session()  # layer names (and so tensor names) do not depend on history
    rng = np.random.default_rng(p["seed"])
    model = _BUILDERS[p["kind"]](keras, p)
    _set_weights(model, rng, p)
    lo, hi = p["data"]
    shape = (1, *p["input"])
    samples = [rng.uniform(lo, hi, shape).astype(np.float32) for _ in range(REPRESENTATIVE_SAMPLES)]
    return _convert(tf, model, samples)


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import keras

    return tf, keras


def _convert(tf, model, samples, float_outputs: bool = False) -> bytes:
    """Full-integer int8 PTQ; int8 input and outputs (float32 outputs, behind DEQUANTIZE, with
    float_outputs). A sample is an array, or a list of arrays for a model with several inputs."""
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: (s if isinstance(s, list) else [s] for s in samples)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.float32 if float_outputs else tf.int8
    # Keras 3's export prints the traced signature to stdout; the quantizer warns.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return conv.convert()


def _set_weights(model, rng, p):
    """Draw every weight of every layer from ``rng``, in layer order."""
    scales = p.get("scales", {})
    channel_scales = p.get("channel_scales", {})
    for layer in model.layers:
        if not layer.weights:
            continue
        depthwise = type(layer).__name__ == "DepthwiseConv2D"  # kernel [kh, kw, channels, multiplier]
        values = []
        for w in layer.weights:
            name = w.name.split("/")[-1].split(":")[0]
            shape = tuple(w.shape)
            if name in ("kernel", "depthwise_kernel"):
                fan_in = int(np.prod(shape[:2] if depthwise else shape[:-1]))
                v = rng.uniform(-1.0, 1.0, shape) * (1.7 / np.sqrt(fan_in))
                v *= scales.get(layer.name, 1.0)
                if layer.name in channel_scales:  # per output channel: channel * multiplier + m for depthwise
                    per = np.asarray(channel_scales[layer.name], dtype=np.float64)
                    v = (v.reshape(*shape[:2], -1) * per).reshape(shape) if depthwise else v * per
            elif name == "bias":
                v = rng.uniform(-0.3, 0.3, shape) * scales.get(layer.name, 1.0)
                if layer.name in channel_scales:
                    v = v * (np.asarray(channel_scales[layer.name]) != 0)
            elif name in ("gamma", "moving_variance"):
                v = rng.uniform(0.5, 1.5, shape)
            elif name in ("beta", "moving_mean"):
                v = rng.uniform(-0.3, 0.3, shape)
            else:
                raise ValueError(f"No rule to draw weight {w.name!r} of layer {layer.name!r}.")
            values.append(v.astype(np.float32))
        layer.set_weights(values)


def _act(keras, x, act, name="act"):
    """Keras spelling of a fused activation: 'relu' as a layer, 'relu6' as ReLU(max_value=6)."""
    if act is None:
        return x
    if act == "relu":
        return keras.layers.ReLU(name=name)(x)
    if act == "relu6":
        return keras.layers.ReLU(max_value=6.0, name=name)(x)
    raise ValueError(f"Unknown activation {act!r}.")


def _input(keras, p):
    return keras.Input(tuple(p["input"]), batch_size=1, name="x")


def _build_conv2d(keras, p):
    x = _input(keras, p)
    y = keras.layers.Conv2D(p["filters"], tuple(p["kernel"]), strides=tuple(p["strides"]), padding=p["padding"],
                            dilation_rate=tuple(p["dilation"]), use_bias=p["bias"],
                            activation="relu" if p["act"] == "relu" else None, name="main")(x)
    y = _act(keras, y, "relu6" if p["act"] == "relu6" else None)
    return keras.Model(x, y)


def _build_dwconv2d(keras, p):
    x = _input(keras, p)
    y = keras.layers.DepthwiseConv2D(tuple(p["kernel"]), strides=tuple(p["strides"]), padding=p["padding"],
                                     depth_multiplier=p["multiplier"], dilation_rate=tuple(p["dilation"]),
                                     use_bias=p["bias"], activation="relu" if p["act"] == "relu" else None,
                                     name="main")(x)
    y = _act(keras, y, "relu6" if p["act"] == "relu6" else None)
    return keras.Model(x, y)


def _build_dense(keras, p):
    x = _input(keras, p)
    y = keras.layers.Flatten()(x) if len(p["input"]) > 1 and p.get("flatten", True) else x
    y = keras.layers.Dense(p["units"], use_bias=p["bias"], activation="relu" if p["act"] == "relu" else None,
                           name="main")(y)
    y = _act(keras, y, "relu6" if p["act"] == "relu6" else None)
    return keras.Model(x, y)


def _build_pool(keras, p):
    x = _input(keras, p)
    layer = {"avg": keras.layers.AveragePooling2D, "max": keras.layers.MaxPooling2D}[p["pool_op"]]
    y = layer(tuple(p["pool"]), strides=tuple(p["strides"]), padding=p["padding"], name="main")(x)
    y = _act(keras, y, p.get("act"))
    return keras.Model(x, y)


def _build_gap(keras, p):
    x = _input(keras, p)
    y = keras.layers.Conv2D(p["conv"], 3, padding="same", name="conv")(x) if p.get("conv") else x
    y = keras.layers.GlobalAveragePooling2D(keepdims=p["keepdims"], name="main")(y)
    return keras.Model(x, y)


def _build_add(keras, p):
    x = _input(keras, p)
    c = p["input"][-1]
    if p["topology"] == "conv_conv":
        a = keras.layers.Conv2D(4, 3, padding="same", name="conv_a")(x)
        b = keras.layers.Conv2D(4, 1, padding="same", name="conv_b")(x)
    elif p["topology"] == "conv_input":
        a, b = x, keras.layers.Conv2D(c, 3, padding="same", name="conv_b")(x)
    elif p["topology"] == "resnet":
        h = keras.layers.Conv2D(c, 3, padding="same", activation="relu", name="conv_a")(x)
        a, b = x, keras.layers.Conv2D(c, 3, padding="same", name="conv_b")(h)
    else:
        raise ValueError(f"Unknown add topology {p['topology']!r}.")
    y = keras.layers.Add(name="main")([a, b])
    y = _act(keras, y, p.get("act", "relu" if p["topology"] == "resnet" else None))
    return keras.Model(x, y)


def _build_reshape(keras, p):
    x = _input(keras, p)
    y = keras.layers.Conv2D(p["conv"], 1, name="conv")(x) if p.get("conv") else x
    return keras.Model(x, keras.layers.Reshape(tuple(p["target"]), name="main")(y))


def _build_flatten(keras, p):
    x = _input(keras, p)
    return keras.Model(x, keras.layers.Flatten(name="main")(x))


def _build_squeeze(keras, p):
    x = _input(keras, p)
    return keras.Model(x, keras.ops.squeeze(x, axis=1))


def _build_softmax(keras, p):
    x = _input(keras, p)
    y = keras.layers.Dense(p["units"], name="fc")(x) if p["units"] else x
    return keras.Model(x, keras.layers.Softmax(name="main")(y))


def _build_activation(keras, p):
    x = _input(keras, p)
    y = x
    if p.get("units"):
        y = keras.layers.Dense(p["units"], name="fc")(y)
    if p.get("conv"):
        y = keras.layers.Conv2D(p["conv"], 3, padding="same", name="conv")(y)
    if p["fn"] in ("relu", "relu6"):
        y = _act(keras, y, p["fn"], name="main")
    else:
        y = keras.layers.Activation(p["fn"], name="main")(y)
    return keras.Model(x, y)


def _build_pad(keras, p):
    x = _input(keras, p)
    y = keras.layers.ZeroPadding2D(tuple(map(tuple, p["padding"])), name="main")(x)
    if p.get("conv"):
        y = keras.layers.Conv2D(p["conv"], 3, strides=2, padding="valid", name="conv")(y)
    return keras.Model(x, y)


def _build_concat(keras, p):
    x = _input(keras, p)
    if p["topology"] == "conv_conv":
        a = keras.layers.Conv2D(3, 3, padding="same", name="conv_a")(x)
        b = keras.layers.Conv2D(5, 1, padding="same", name="conv_b")(x)
    elif p["topology"] == "input_conv":
        a, b = x, keras.layers.Conv2D(5, 1, padding="same", name="conv_b")(x)
    elif p["topology"] == "sigmoid_input":
        a, b = x, keras.layers.Activation("sigmoid", name="sigmoid")(x)
    elif p["topology"] == "tanh_sigmoid":
        a = keras.layers.Activation("tanh", name="tanh")(x)
        b = keras.layers.Activation("sigmoid", name="sigmoid")(x)
    else:
        raise ValueError(f"Unknown concat topology {p['topology']!r}.")
    y = keras.layers.Concatenate(axis=-1, name="main")([a, b])
    y = _act(keras, y, p.get("act"))
    return keras.Model(x, y)


def _conv_bn_act(keras, y, filters, kernel, strides=1, act="relu", name=""):
    y = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}conv")(y)
    y = keras.layers.BatchNormalization(name=f"{name}bn")(y)
    return _act(keras, y, act, name=f"{name}act")


def _dw_bn_act(keras, y, strides=1, multiplier=1, padding="same", act="relu", name=""):
    y = keras.layers.DepthwiseConv2D(3, strides=strides, padding=padding, depth_multiplier=multiplier,
                                     use_bias=False, name=f"{name}dw")(y)
    y = keras.layers.BatchNormalization(name=f"{name}bn")(y)
    return _act(keras, y, act, name=f"{name}act")


def _build_dscnn(keras, p):
    """DS-CNN as in MLPerf Tiny keyword spotting, shrunk: 10x4/2 conv, 2 x (dw 3x3 + pw 1x1), avgpool, FC."""
    x = _input(keras, p)
    y = _conv_bn_act(keras, x, 16, (10, 4), strides=2, name="c0_")
    for i in (1, 2):
        y = _dw_bn_act(keras, y, name=f"dw{i}_")
        y = _conv_bn_act(keras, y, 16, 1, name=f"pw{i}_")
    y = keras.layers.AveragePooling2D(pool_size=tuple(y.shape[1:3]), name="pool")(y)
    y = keras.layers.Flatten(name="flatten")(y)
    y = keras.layers.Dense(4, name="fc")(y)
    return keras.Model(x, keras.layers.Softmax(name="softmax")(y))


def _build_resnet(keras, p):
    """Two ResNet-v1 basic blocks (the second downsamples with a 1x1/2 shortcut), GAP, FC."""
    x = _input(keras, p)
    y = _conv_bn_act(keras, x, 8, 3, name="stem_")
    for i, (filters, stride) in enumerate([(8, 1), (12, 2)]):
        h = _conv_bn_act(keras, y, filters, 3, strides=stride, name=f"b{i}a_")
        h = _conv_bn_act(keras, h, filters, 3, act=None, name=f"b{i}b_")
        if stride != 1 or filters != y.shape[-1]:
            y = keras.layers.Conv2D(filters, 1, strides=stride, name=f"b{i}short")(y)
        y = keras.layers.ReLU(name=f"b{i}relu")(keras.layers.Add(name=f"b{i}add")([y, h]))
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    y = keras.layers.Dense(5, name="fc")(y)
    return keras.Model(x, keras.layers.Softmax(name="softmax")(y))


def _build_mobilenet(keras, p):
    """MobileNet-v1 style: conv/2, dw (multiplier 2) + pw, explicit pad + dw/2 valid + pw, all ReLU6; GAP, FC."""
    x = _input(keras, p)
    y = _conv_bn_act(keras, x, 8, 3, strides=2, act="relu6", name="c0_")
    y = _dw_bn_act(keras, y, multiplier=2, act="relu6", name="dw1_")
    y = _conv_bn_act(keras, y, 16, 1, act="relu6", name="pw1_")
    y = keras.layers.ZeroPadding2D(((0, 1), (0, 1)), name="pad2")(y)
    y = _dw_bn_act(keras, y, strides=2, padding="valid", act="relu6", name="dw2_")
    y = _conv_bn_act(keras, y, 24, 1, act="relu6", name="pw2_")
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    y = keras.layers.Dense(3, name="fc")(y)
    return keras.Model(x, keras.layers.Softmax(name="softmax")(y))


_BUILDERS = {
    "conv2d": _build_conv2d,
    "dwconv2d": _build_dwconv2d,
    "dense": _build_dense,
    "pool": _build_pool,
    "gap": _build_gap,
    "add": _build_add,
    "reshape": _build_reshape,
    "flatten": _build_flatten,
    "squeeze": _build_squeeze,
    "softmax": _build_softmax,
    "activation": _build_activation,
    "pad": _build_pad,
    "concat": _build_concat,
    "dscnn": _build_dscnn,
    "resnet": _build_resnet,
    "mobilenet": _build_mobilenet,
}


# --------------------------------------------------------------------------
# Inspecting a converted model
# --------------------------------------------------------------------------

def describe(tflite: bytes) -> dict:
    """Subgraph 0 of a .tflite model, read with the flatbuffer schema.

    Returns ``{"inputs": [tensor], "outputs": [tensor], "ops": [op]}`` where each
    op (in execution order) is ``{"op", "version", "options", "inputs",
    "outputs"}`` and each tensor is ``{"index", "shape", "type", "scale",
    "zero_point", "const"}`` (None for an omitted optional input).
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)
    enums = {"padding": _enum_names(schema.Padding),
             "fusedActivationFunction": _enum_names(schema.ActivationFunctionType)}
    graph = model.subgraphs[0]

    def tensor(i):
        if i < 0:
            return None
        t = graph.tensors[i]
        q = t.quantization
        return {
            "index": int(i),
            "shape": [int(d) for d in t.shape] if t.shape is not None else [],
            "type": type_names[t.type],
            "scale": [float(s) for s in q.scale] if q is not None and q.scale is not None else [],
            "zero_point": [int(z) for z in q.zeroPoint] if q is not None and q.zeroPoint is not None else [],
            "const": bool(t.buffer) and model.buffers[t.buffer].data is not None,
        }

    ops = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        options = {}
        if op.builtinOptions is not None:
            for key, value in vars(op.builtinOptions).items():
                if key in enums:
                    value = enums[key][value]
                elif isinstance(value, np.ndarray):
                    value = value.tolist()
                options[key] = value
        ops.append({"op": op_names[max(code.builtinCode, code.deprecatedBuiltinCode)], "version": code.version,
                    "options": options, "inputs": [tensor(i) for i in op.inputs],
                    "outputs": [tensor(i) for i in op.outputs]})
    return {"inputs": [tensor(i) for i in graph.inputs], "outputs": [tensor(i) for i in graph.outputs], "ops": ops}


def op_names(tflite: bytes) -> list[str]:
    return [op["op"] for op in describe(tflite)["ops"]]


def intended_options(case_id: str) -> tuple[str, dict] | None:
    """The op a case is about and the options (a subset) the converter must have given it, derived from the case."""
    p = OP_CASES[case_id]
    fused = {None: "NONE", "relu": "RELU", "relu6": "RELU6"}
    kind = p["kind"]
    if kind in ("conv2d", "dwconv2d"):
        sh, sw = p["strides"]
        dh, dw = p["dilation"]
        options = {"padding": p["padding"].upper(), "strideH": sh, "strideW": sw,
                   "dilationHFactor": dh, "dilationWFactor": dw, "fusedActivationFunction": fused[p["act"]]}
        if kind == "dwconv2d":
            return "DEPTHWISE_CONV_2D", {**options, "depthMultiplier": p["multiplier"]}
        return "CONV_2D", options
    if kind == "dense":
        return "FULLY_CONNECTED", {"fusedActivationFunction": fused[p["act"]],
                                   "keepNumDims": not p.get("flatten", True)}
    if kind == "pool":
        (fh, fw), (sh, sw) = p["pool"], p["strides"]
        return {"avg": "AVERAGE_POOL_2D", "max": "MAX_POOL_2D"}[p["pool_op"]], {
            "padding": p["padding"].upper(), "strideH": sh, "strideW": sw, "filterHeight": fh, "filterWidth": fw,
            "fusedActivationFunction": fused[p.get("act")]}
    if kind == "gap":
        return "MEAN", {"keepDims": p["keepdims"]}
    if kind == "add":
        return "ADD", {"fusedActivationFunction": fused[p.get("act", "relu" if p["topology"] == "resnet" else None)]}
    if kind == "concat":  # a following ReLU is not fused into the concat
        return "CONCATENATION", {"axis": -1, "fusedActivationFunction": "NONE"}
    if kind == "softmax":
        return "SOFTMAX", {"beta": 1.0}
    if kind == "activation":
        return {"sigmoid": "LOGISTIC", "tanh": "TANH", "relu": "RELU", "relu6": "RELU6"}[p["fn"]], {}
    if kind == "pad" and not p.get("conv"):
        return "PAD", {}
    return None


def _enum_names(cls) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


if __name__ == "__main__":
    import sys
    import time

    t0 = time.time()
    for cid in (sys.argv[1:] or OP_CASES):
        t = time.time()
        b = op_model(cid)
        print(f"{cid:40s} {time.time() - t:5.2f}s {len(b):6d}B  {' '.join(op_names(b))}", flush=True)
    print(f"{len(OP_CASES)} cases, total {time.time() - t0:.1f}s")
