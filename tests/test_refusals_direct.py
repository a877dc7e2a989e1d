"""Two refusals tested directly on their own message, each beside a positive control that
proves the refusal is conditional (so the test fails if the condition were dropped or inverted).

1. require_int8 (edgekit.lower.base): an int8 activation tensor whose zero point lies outside
   [-128, 127] can only come from a corrupt file. A real int8 model with one intermediate
   tensor's zero point rewritten in the flatbuffer must be refused with one sentence by
   `edgekit export` and by the Python API, leaving no output directory.
2. LOGISTIC/TANH in a model with INT4 weights (edgekit.lower.activations): such a model is
   defined by TFLite Micro, whose LOGISTIC/TANH edgekit does not reproduce. Real route: an
   int8 op model whose conv/FC weights are rewritten to packed INT4 (TensorType 17) in the
   flatbuffer, so the importer itself sets graph.meta["reference"] = "tflm".
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema

from cli_helpers import assert_not_written, assert_user_error, call, patched, run_edgekit
from edgekit.errors import UnsupportedModelError
from edgekit.export import export
from edgekit.frontend.tflite import load_tflite
from edgekit.ir import short_name
from edgekit.targets import get_target
from opmodels import op_model

MULTI = "add_conv_conv"   # CONV_2D a, CONV_2D b, ADD: two intermediate int8 tensors
INT4 = schema.TensorType.INT4
WEIGHTED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}


# --------------------------------------------------------------------------
# 1. Zero point outside int8's range
# --------------------------------------------------------------------------

def _intermediate_tensor(tflite: bytes) -> tuple[int, str]:
    """(index, name) of the second CONV_2D's output: an activation that is neither model input
    nor output, so only the lowering's int8 check looks at its zero point."""
    graph = load_tflite(tflite)
    convs = [op for op in graph.ops if op.kind == "CONV_2D"]
    index = convs[1].outputs[0]
    assert index not in graph.inputs + graph.outputs
    return index, graph.t(index).name


def _with_zero_point(tflite: bytes, index: int, zp: int) -> bytes:
    def edit(m):
        m.subgraphs[0].tensors[index].quantization.zeroPoint = np.array([zp], dtype=np.int64)
    return patched(tflite, edit)


@pytest.mark.parametrize("zp", [300, -200])
def test_zero_point_outside_int8_is_refused(tmp_path, zp):
    good = op_model(MULTI)
    index, name = _intermediate_tensor(good)
    bad = _with_zero_point(good, index, zp)
    assert load_tflite(bad).t(index).zero_point.tolist() == [zp]   # the edit reached the file
    (tmp_path / "good.tflite").write_bytes(good)
    (tmp_path / "bad.tflite").write_bytes(bad)

    # Positive control: the unmodified model exports.
    p = run_edgekit("export", "good.tflite", "--target", "host", "-o", "good_out", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "good_out" / "report.json").is_file()

    # The CLI: exit 2, one line, naming the tensor, its zero point and the range; nothing written.
    p = run_edgekit("export", "bad.tflite", "--target", "host", "-o", "out", cwd=tmp_path)
    line = assert_user_error(p.returncode, p.stderr, "zero point", "[-128, 127]", "corrupt")
    assert f"tensor '{short_name(name)}' has zero point {zp}, outside int8's [-128, 127]" in line, line
    assert p.stdout == ""
    assert_not_written(tmp_path / "out")

    # The Python API: the same sentence as UnsupportedModelError, nothing written.
    with pytest.raises(UnsupportedModelError) as exc:
        export(tmp_path / "bad.tflite", tmp_path / "api_out", get_target("host"))
    assert str(exc.value) in line
    assert f"has zero point {zp}" in str(exc.value)
    assert_not_written(tmp_path / "api_out")


# --------------------------------------------------------------------------
# 2. LOGISTIC / TANH in a model with INT4 weights
# --------------------------------------------------------------------------

def _pack_int4(values: np.ndarray) -> np.ndarray:
    """TFLite INT4: two values per byte, element 2k in the low nibble, 2k+1 in the high nibble."""
    v = values.reshape(-1).astype(np.int8)
    if v.size % 2:
        v = np.append(v, np.int8(0))
    nib = (v.astype(np.uint8) & 0x0F)
    return (nib[0::2] | (nib[1::2] << 4)).astype(np.uint8)


def _small_weights(tflite: bytes, int4: bool) -> bytes:
    """Every conv/FC weight tensor scaled into [-7, 7]; stored as packed INT4 if `int4`, else
    as the same values in INT8. The two files differ only in the weight tensors' type."""
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}

    def edit(m):
        sg = m.subgraphs[0]
        for op in sg.operators:
            code = m.operatorCodes[op.opcodeIndex]
            if names.get(max(code.builtinCode, code.deprecatedBuiltinCode)) not in WEIGHTED_OPS:
                continue
            t = sg.tensors[op.inputs[1]]
            buf = m.buffers[t.buffer]
            w = np.asarray(buf.data, dtype=np.uint8).view(np.int8)
            small = np.clip(np.round(w / 16.0), -7, 7).astype(np.int8)
            if int4:
                t.type = INT4
                buf.data = _pack_int4(small)
            else:
                buf.data = small.view(np.uint8).copy()
    return patched(tflite, edit)


@pytest.mark.parametrize("case, op", [("sigmoid_after_fc", "LOGISTIC"), ("tanh_after_conv", "TANH")])
def test_logistic_tanh_refused_with_int4_weights(tmp_path, capsys, case, op):
    int4 = _small_weights(op_model(case), int4=True)
    int8 = _small_weights(op_model(case), int4=False)
    assert load_tflite(int4).meta["reference"] == "tflm"      # set by the importer, not by the test
    assert load_tflite(int8).meta["reference"] == "litert"
    (tmp_path / "int4.tflite").write_bytes(int4)
    (tmp_path / "int8.tflite").write_bytes(int8)

    # Positive control: the same model with the same weight values as INT8 exports.
    rc, _, err = call(capsys, "export", tmp_path / "int8.tflite", "--target", "host", "-o", tmp_path / "ok")
    assert rc == 0, err
    ops = [layer["op"] for layer in json.loads((tmp_path / "ok" / "report.json").read_text())["layers"]]
    assert op in ops, ops

    # The CLI: one line naming the op and what to do; nothing written.
    out = tmp_path / "out"
    rc, _, err = call(capsys, "export", tmp_path / "int4.tflite", "--target", "host", "-o", out)
    line = assert_user_error(rc, err, f"layer {op}", "INT4 weights", "LOGISTIC/TANH",
                             "quantize the weights to int8")
    assert_not_written(out)

    # The Python API: the same sentence as UnsupportedModelError.
    with pytest.raises(UnsupportedModelError) as exc:
        export(tmp_path / "int4.tflite", tmp_path / "api_out", get_target("host"))
    assert str(exc.value) in line
    assert_not_written(tmp_path / "api_out")


def test_int4_weights_without_logistic_export(tmp_path, capsys):
    """The refusal is about LOGISTIC/TANH, not INT4: an INT4 FC model alone exports."""
    int4 = _small_weights(op_model("fc_1d_u7"), int4=True)
    assert load_tflite(int4).meta["reference"] == "tflm"
    (tmp_path / "int4.tflite").write_bytes(int4)
    rc, _, err = call(capsys, "export", tmp_path / "int4.tflite", "--target", "host", "-o", tmp_path / "ok")
    assert rc == 0, err
    assert (tmp_path / "ok" / "report.json").is_file()
