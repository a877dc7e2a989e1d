"""Compressed variants of the three MLPerf Tiny models (tests/model_variants.py): each of the twelve
builds, runs in its reference interpreter, and has the property its kind claims.

int8 variants run in LiteRT's reference kernels (BUILTIN_REF); int4 ones in TFLite Micro's Python
interpreter (LiteRT's BUILTIN_REF has no DEPTHWISE_CONV_2D version 7, the int4 one). The first run
builds all twelve in one child process (about a minute and a half) and caches them; later runs read the cache.
"""
from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import model_variants as mv
from conftest import test_inputs

PAIRS = [(m, k) for m in mv.MODELS for k in mv.KINDS]
# The Keras layers behind each model's weight ops (CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED).
LAYERS = {"kws": ["CONV_2D"] + ["DEPTHWISE_CONV_2D", "CONV_2D"] * 4 + ["FULLY_CONNECTED"],
          "resnet": ["CONV_2D"] * 9 + ["FULLY_CONNECTED"],
          "ad": ["FULLY_CONNECTED"] * 10}


@functools.cache
def _built() -> dict:
    return mv.variant_paths(PAIRS)


def _variant(model: str, kind: str) -> bytes:
    return _built()[model, kind].read_bytes()


def _litert(tflite: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=tflite, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    ys = []
    for sample in x:
        it.set_tensor(inp["index"], sample[None])
        it.invoke()
        ys.append(it.get_tensor(out["index"])[0].copy())
    return np.stack(ys)


def _tflm(tflite: bytes, x: np.ndarray) -> np.ndarray:
    from tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(tflite)
    ys = []
    for sample in x:
        it.set_input(sample[None], 0)
        it.invoke()
        ys.append(np.array(it.get_output(0))[0])
    return np.stack(ys)


def _io(tflite: bytes) -> tuple:
    """(input shape, input type, output shape, output type), read from the flatbuffer (LiteRT cannot
    even open a model with an int4 depthwise convolution)."""
    from ai_edge_litert import schema_py_generated as schema

    graph = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0).subgraphs[0]
    (i,), (o,) = graph.inputs, graph.outputs
    t_in, t_out = graph.tensors[i], graph.tensors[o]
    return tuple(int(d) for d in t_in.shape), int(t_in.type), tuple(int(d) for d in t_out.shape), int(t_out.type)


def _int4_as_int8(tflite: bytes, low_nibble_first: bool = True) -> bytes:
    """The same model with every INT4 tensor stored as INT8 (unpacked in the given nibble order)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    done = set()
    for t in model.subgraphs[0].tensors:
        if t.type != schema.TensorType.INT4:
            continue
        assert t.buffer not in done, "an INT4 buffer shared by two tensors"
        done.add(t.buffer)
        raw = bytes(np.asarray(model.buffers[t.buffer].data, dtype=np.uint8))
        if not low_nibble_first:
            raw = bytes((b >> 4) | ((b & 0x0F) << 4) for b in raw)
        values = mv.unpack_int4(raw, int(np.prod(t.shape)))
        t.type = schema.TensorType.INT8
        model.buffers[t.buffer].data = values.view(np.uint8)
    builder = flatbuffers.Builder(len(tflite) * 2)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# --------------------------------------------------------------------------
# Every variant
# --------------------------------------------------------------------------

@pytest.mark.shared
@pytest.mark.parametrize("model,kind", PAIRS)
def test_variant_runs_in_its_reference_interpreter(model, kind, shared_models):
    tflite = _variant(model, kind)
    reference = (shared_models / mv.MODELS[model][1]).read_bytes()
    in_shape, in_type, out_shape, out_type = _io(tflite)
    # The reference model's input and output: same shapes, int8.
    assert (in_shape, out_shape) == (_io(reference)[0], _io(reference)[2])
    assert in_type == out_type == 9   # INT8
    x = test_inputs(in_shape[1:], n=4, seed=7)
    y = (_tflm if kind == "int4" else _litert)(tflite, x)
    assert y.dtype == np.int8 and y.shape == (4, *out_shape[1:])
    if kind == "int4":   # two weights per byte
        assert len(tflite) < len(reference)
    assert [w["op"] for w in mv.weight_tensors(tflite)] == LAYERS[model]


@pytest.mark.shared
@pytest.mark.parametrize("model", list(mv.MODELS))
def test_pruned_variant_is_80_percent_zeros(model, shared_models):
    weights = mv.weight_tensors(_variant(model, "pruned"))
    pruned = [w for w in weights if w["op"] in ("CONV_2D", "FULLY_CONNECTED")]
    assert len(pruned) == sum(op != "DEPTHWISE_CONV_2D" for op in LAYERS[model])
    for w in pruned:
        assert w["type"] == 9   # INT8
        zeros = float(np.mean(w["values"] == 0))
        assert zeros >= 0.75, f"{w['op']} {list(w['shape'])}: {zeros:.1%} zeros"
    # tfmot leaves DepthwiseConv2D alone.
    for w in weights:
        if w["op"] == "DEPTHWISE_CONV_2D":
            assert np.mean(w["values"] == 0) < 0.5


@pytest.mark.shared
@pytest.mark.parametrize("model", list(mv.MODELS))
def test_clustered_variant_has_at_most_16_values_per_channel(model, shared_models):
    weights = mv.weight_tensors(_variant(model, "clustered"))
    clustered = [w for w in weights if w["op"] in ("CONV_2D", "FULLY_CONNECTED")]
    assert len(clustered) == sum(op != "DEPTHWISE_CONV_2D" for op in LAYERS[model])
    for w in clustered:
        assert w["type"] == 9   # INT8
        assert mv.distinct_per_channel(w) <= mv.CLUSTERS, f"{w['op']} {list(w['shape'])}"
    # Not a vacuous bound: the reference model has more distinct values per channel.
    reference = mv.weight_tensors((shared_models / mv.MODELS[model][1]).read_bytes())
    assert max(mv.distinct_per_channel(w) for w in reference) > 2 * mv.CLUSTERS


@pytest.mark.shared
@pytest.mark.parametrize("model", list(mv.MODELS))
def test_pruned_clustered_variant_is_sparse_and_has_at_most_16_values_per_channel(model, shared_models):
    """Deep Compression's pruning then sparsity-preserving clustering: both properties at once, in every
    CONV_2D and FULLY_CONNECTED (the zero tfmot holds as one of the 16 centroids counts as a value)."""
    weights = mv.weight_tensors(_variant(model, "pruned-clustered"))
    compressed = [w for w in weights if w["op"] in ("CONV_2D", "FULLY_CONNECTED")]
    assert len(compressed) == sum(op != "DEPTHWISE_CONV_2D" for op in LAYERS[model])
    for w in compressed:
        where = f"{w['op']} {list(w['shape'])}"
        assert w["type"] == 9, where   # INT8
        zeros = float(np.mean(w["values"] == 0))
        assert zeros >= 0.75, f"{where}: {zeros:.1%} zeros"
        assert mv.distinct_per_channel(w) <= mv.CLUSTERS, where
    # tfmot neither prunes nor clusters DepthwiseConv2D.
    for w in weights:
        if w["op"] == "DEPTHWISE_CONV_2D":
            assert np.mean(w["values"] == 0) < 0.5
    # Not a vacuous bound: pruning alone leaves more distinct values per channel.
    pruned = mv.weight_tensors(_variant(model, "pruned"))
    assert max(mv.distinct_per_channel(w) for w in pruned if w["op"] != "DEPTHWISE_CONV_2D") > mv.CLUSTERS
    assert mv.check_variant(_variant(model, "pruned-clustered"), "pruned-clustered") == []


def test_check_variant_wants_both_properties_for_pruned_clustered():
    """A weight tensor that is only sparse, or only clustered, fails the pruned-clustered check."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    def one_fc(values: np.ndarray) -> bytes:
        m = schema.ModelT()
        m.version = 3
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.FULLY_CONNECTED
        m.operatorCodes = [code]
        empty, data = schema.BufferT(), schema.BufferT()
        data.data = values.astype(np.int8).view(np.uint8).ravel()
        m.buffers = [empty, data]
        tensors = []
        for name, shape, buffer in (("x", [1, values.shape[1]], 0), ("w", list(values.shape), 1),
                                    ("y", [1, values.shape[0]], 0)):
            t = schema.TensorT()
            t.name, t.shape, t.type, t.buffer = name, shape, schema.TensorType.INT8, buffer
            tensors.append(t)
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1], [2]
        graph = schema.SubGraphT()
        graph.tensors, graph.inputs, graph.outputs, graph.operators = tensors, [0], [2], [op]
        m.subgraphs = [graph]
        builder = flatbuffers.Builder(1024)
        builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())

    rng = np.random.default_rng(3)
    dense = rng.integers(-127, 128, size=(8, 256))
    few = rng.integers(-7, 9, size=(8, 256))            # 16 values: -7..8, zero among them
    sparse_mask = rng.random((8, 256)) < 0.8
    both = one_fc(np.where(sparse_mask, 0, few))
    assert mv.check_variant(both, "pruned-clustered") == []
    only_sparse = mv.check_variant(one_fc(np.where(sparse_mask, 0, dense)), "pruned-clustered")
    assert len(only_sparse) == 1 and "distinct values" in only_sparse[0]
    only_clustered = mv.check_variant(one_fc(np.where(few == 0, 1, few)), "pruned-clustered")
    assert len(only_clustered) == 1 and "zeros" in only_clustered[0]


@pytest.mark.shared
@pytest.mark.parametrize("model", list(mv.MODELS))
def test_int4_variant_has_packed_int4_weights(model, shared_models):
    from ai_edge_litert import schema_py_generated as schema

    tflite = _variant(model, "int4")
    weights = mv.weight_tensors(tflite)
    assert [w["op"] for w in weights] == LAYERS[model]
    raw = schema.ModelT.InitFromPackedBuf(bytearray(tflite), 0)
    graph = raw.subgraphs[0]
    int4 = [t for t in graph.tensors if t.type == schema.TensorType.INT4]
    assert len(int4) == len(weights)
    for t in int4:   # two values per byte
        assert len(raw.buffers[t.buffer].data) == (int(np.prod(t.shape)) + 1) // 2
    for w in weights:
        assert w["type"] == mv.INT4
        assert -8 <= w["values"].min() and w["values"].max() <= 7
        assert len(np.unique(w["values"])) > 3, "a degenerate int4 tensor"


@pytest.mark.shared
@pytest.mark.parametrize("model", list(mv.MODELS))
def test_int4_nibble_order_is_low_nibble_first(model, shared_models):
    """TFLM runs the int4 variant exactly like the same model with its weights unpacked to INT8
    low nibble first (element 2k in bits 0-3, 2k+1 in bits 4-7); the other order gives other outputs."""
    tflite = _variant(model, "int4")
    x = test_inputs(_io(tflite)[0][1:], n=6, seed=11)
    y = _tflm(tflite, x)
    assert np.array_equal(_tflm(_int4_as_int8(tflite), x), y)
    assert not np.array_equal(_tflm(_int4_as_int8(tflite, low_nibble_first=False), x), y)


# --------------------------------------------------------------------------
# The API (no models built)
# --------------------------------------------------------------------------

def test_variant_path_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown model 'mobilenet'"):
        mv.variant_path("mobilenet", "pruned")
    with pytest.raises(ValueError, match="unknown variant kind 'int2'"):
        mv.variant_path("kws", "int2")


def test_variant_path_explains_missing_shared_models(monkeypatch, tmp_path):
    monkeypatch.setattr(mv, "SHARED_MODELS", tmp_path / "shared" / "models" / "mlperf-tiny")
    with pytest.raises(FileNotFoundError, match="MLPerf Tiny models are not at .*shared/models/mlperf-tiny"):
        mv.variant_path("kws", "pruned")


@pytest.mark.shared
def test_cache_key_follows_script_model_and_arguments(shared_models, monkeypatch, tmp_path):
    keys = {(m, k): mv.cache_key(m, k) for m, k in PAIRS}
    assert len(set(keys.values())) == len(PAIRS)
    assert mv.cache_key("kws", "int4") == keys["kws", "int4"]
    # Another script source gives another key (so editing the script rebuilds).
    script = tmp_path / "model_variants.py"
    script.write_bytes(Path(mv.__file__).read_bytes() + b"\n# changed\n")
    monkeypatch.setattr(mv, "__file__", str(script))
    assert mv.cache_key("kws", "int4") != keys["kws", "int4"]


def test_script_usage_error():
    proc = subprocess.run([sys.executable, mv.__file__, "kws"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "usage:" in proc.stderr
