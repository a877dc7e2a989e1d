"""Compressed weight formats (edgekit.formats, `export --weights`) on every convolution,
depthwise and fully connected op case of tests/opmodels.py.

Each case's int8 weights are rewritten in the .tflite so that the layer can take the format
(16 levels per channel, [-8, 7], 80 % zeros, a skewed distribution); the rewritten file is still
a plain int8 model, so TFLite's reference interpreter defines every output byte. The export
with the forced format must match it byte for byte (host build with ASan/UBSan), report the
format per layer, and fall back to int8 with a note where a layer cannot take it (depthwise
layers take int8 or int4 only). A subset runs on the emulated Cortex-M4.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import assert_bit_exact, test_inputs
from edgekit.api import load
from edgekit.run.emulate import run_firmware
from edgekit.export import export
from edgekit.run.reference import reference_outputs
from edgekit.targets import get_target
from edgekit.lower.kernels import kernel
from opmodels import OP_CASES, op_model

FORMATS = ("int4", "lut4", "lut8", "sparse", "huffman")
# The shapes of weights each test exports: one per format, and "huffman-books" (exported with
# --weights huffman): clustered then quantized per channel, so Huffman codes codebook indices.
SHAPES = FORMATS + ("huffman-books",)
VALUE_CODED = {"conv_5x3_s2_valid_c8_f1", "fc_flat4d_u1_nobias_relu", "fc_1d_u64_relu6"}
CASES = sorted(c for c in OP_CASES if c.startswith(("conv_", "dw_", "fc_")))
WEIGHTED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}
KERNEL_OPS = {"CONV_2D": "conv2d", "DEPTHWISE_CONV_2D": "dwconv", "FULLY_CONNECTED": "fc"}


def _levels_per_row(rows: np.ndarray, levels: int) -> np.ndarray:
    """Each row mapped to at most `levels` of its own values (nearest of evenly spaced quantiles)."""
    out = rows.copy()
    for r in range(rows.shape[0]):
        uniq = np.unique(rows[r])
        if uniq.size > levels:
            keep = uniq[np.linspace(0, uniq.size - 1, levels).round().astype(int)]
            idx = np.abs(rows[r][:, None].astype(np.int32) - keep[None, :].astype(np.int32)).argmin(axis=1)
            out[r] = keep[idx]
    return out


def shape_weights(rows: np.ndarray, fmt: str, rng: np.random.Generator) -> np.ndarray:
    """Int8 weights [out][K] that layer format `fmt` can hold losslessly, derived from `rows`."""
    if fmt == "int4":
        return np.clip(np.round(rows / 16.0), -8, 7).astype(np.int8)
    if fmt == "lut4":
        return _levels_per_row(rows, 16)
    if fmt == "lut8":
        return _levels_per_row(rows, 40)
    if fmt == "sparse":
        return np.where(rng.random(rows.shape) < 0.8, 0, rows).astype(np.int8)
    if fmt == "huffman":   # skewed: many zeros and small values, a few large ones
        return np.where(rng.random(rows.shape) < 0.6, 0, np.clip(rows // 8, -128, 127)).astype(np.int8)
    if fmt == "huffman-books":   # 16 shared levels of skewed frequencies, a scale per channel
        centroids = np.linspace(-1, 1, 16) ** 3
        idx = rng.choice(16, size=rows.shape, p=rng.dirichlet(np.full(16, 0.7)))
        scale = rng.uniform(30, 127, (rows.shape[0], 1))
        return np.clip(np.round(centroids[idx] * scale), -127, 127).astype(np.int8)
    raise ValueError(fmt)


def rewrite_weights(tflite: bytes, fmt: str, seed: int = 0) -> bytes:
    """The model with every conv/depthwise/FC weight tensor passed through shape_weights."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    rng = np.random.default_rng(seed)
    model = schema.ModelT.InitFromPackedBuf(tflite, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    sg = model.subgraphs[0]
    for op in sg.operators:
        code = model.operatorCodes[op.opcodeIndex]
        kind = names.get(max(code.builtinCode, code.deprecatedBuiltinCode))
        if kind not in WEIGHTED_OPS:
            continue
        t = sg.tensors[op.inputs[1]]
        buf = model.buffers[t.buffer]
        w = np.asarray(buf.data, dtype=np.uint8).view(np.int8).reshape(t.shape)
        rows = w.reshape(1, -1) if kind == "DEPTHWISE_CONV_2D" else w.reshape(w.shape[0], -1)
        buf.data = shape_weights(rows, fmt, rng).reshape(-1).view(np.uint8).copy()
    builder = flatbuffers.Builder(len(tflite) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def export_case(case: str, shape: str, target: str, tmp_path, huffman_decode: str = "layer"):
    """The case with weights of `shape` (a format, or "huffman-books"), exported with that format."""
    tflite = rewrite_weights(op_model(case), shape)
    src = tmp_path / f"{case}_{shape}.tflite"
    src.write_bytes(tflite)
    export(src, tmp_path / "out", get_target(target), weights=shape.split("-")[0], huffman_decode=huffman_decode)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    return tflite, report


def check_choices(report: dict, shape: str, case: str) -> None:
    weighted = [l for l in report["layers"] if l["op"] in WEIGHTED_OPS]
    assert weighted, case
    fmt = shape.split("-")[0]
    for layer in weighted:
        w = layer["weights"]
        if shape == "huffman-books" and layer["op"] != "DEPTHWISE_CONV_2D":
            # the indices code shorter than the values, but for one-channel layers and
            # fc_1d_u64_relu6 (64 rows of 16 weights: 1 KB of codebooks outweighs the shorter codes)
            value_coded = case.endswith(("_f1", "_u1")) or case in VALUE_CODED
            assert ("codes the indices of" in w["note"]) != value_coded, (case, w)
        if layer["op"] == "DEPTHWISE_CONV_2D" and fmt != "int4":
            assert w["format"] == "int8" and fmt in w["note"], (case, w)
            continue
        assert w["format"] == fmt, (case, w)
        # a kernel of this op that reads this format (the portable one, or a _dsp variant)
        k = kernel(layer["kernel"])
        assert (k.op, k.weights) == (KERNEL_OPS[layer["op"]], fmt), (case, layer["kernel"])


@pytest.mark.parametrize("fmt", SHAPES)
@pytest.mark.parametrize("case", CASES)
def test_format_bit_exact_on_host(case, fmt, tmp_path):
    tflite, report = export_case(case, fmt, "host", tmp_path)
    check_choices(report, fmt, case)
    model = load(tmp_path / "out", sanitize=True)
    x = test_inputs(model.input_shape[1:], n=6, seed=3)
    assert_bit_exact(model.predict(x), reference_outputs(tflite, x), f"{case} {fmt}")


DEVICE_CASES = ["conv_3x3_s2_valid_c8_f16", "conv_1x1_c8_f16", "conv_5x3_d2_same_c1_f5",
                "dw_3x3_s2_same_c7_m2_relu6", "fc_1d_u64_relu6", "fc_2d_last_axis_u7"]


@pytest.mark.emulator
@pytest.mark.parametrize("fmt", SHAPES)
@pytest.mark.parametrize("case", DEVICE_CASES)
def test_format_bit_exact_on_device(case, fmt, tmp_path, qemu):
    tflite, report = export_case(case, fmt, "cortex-m4", tmp_path)
    check_choices(report, fmt, case)
    model = load(tmp_path / "out")
    x = test_inputs(model.input_shape[1:], n=3, seed=5)
    y, _ = run_firmware(model, x)
    assert_bit_exact(y, reference_outputs(tflite, x), f"{case} {fmt} on cortex-m4")


def test_forced_format_falls_back_with_a_reason(tmp_path):
    """Weights with 200 distinct values cannot take lut4: int8 is used and the report says why."""
    tflite = op_model("fc_1d_u64")
    src = tmp_path / "fc.tflite"
    src.write_bytes(tflite)
    export(src, tmp_path / "out", get_target("host"), weights="lut4")
    layer = next(l for l in json.loads((tmp_path / "out" / "report.json").read_text())["layers"]
                 if l["op"] == "FULLY_CONNECTED")
    assert layer["weights"]["format"] == "int8"
    assert layer["weights"]["note"].startswith("lut4 not possible: ")
    assert layer["kernel"] == "ek_fc_s8"


@pytest.mark.parametrize("optimize", ["size", "speed", "balanced"])
def test_auto_picks_by_size_and_speed(optimize, tmp_path):
    """auto + size takes the smallest format; speed never takes one estimated slower than int8;
    the outputs stay bit-exact whichever it takes."""
    tflite = rewrite_weights(op_model("conv_3x3_s2_valid_c8_f16"), "lut4")
    src = tmp_path / "conv.tflite"
    src.write_bytes(tflite)
    export(src, tmp_path / "out", get_target("cortex-m4"), weights="auto", optimize=optimize)
    layer = next(l for l in json.loads((tmp_path / "out" / "report.json").read_text())["layers"]
                 if l["op"] == "CONV_2D")
    w = layer["weights"]
    if optimize == "size":
        assert w["weight_format_bytes"] < w["int8_weight_bytes"] and w["format"] != "int8", w
    if optimize == "speed":
        assert w["est_instructions"] <= w["est_int8_instructions"], w
    model = load(tmp_path / "out", sanitize=True)
    x = test_inputs(model.input_shape[1:], n=4, seed=9)
    assert_bit_exact(model.predict(x), reference_outputs(tflite, x), optimize)


def test_export_verify_checks_every_layer_of_a_compressed_export(tmp_path):
    """`edgekit export --weights huffman --verify`: the host build of the export is traced layer by
    layer against edgekit's integer reference (which decodes the formats itself) and TFLite."""
    from cli_helpers import run_edgekit
    src = tmp_path / "conv.tflite"
    src.write_bytes(rewrite_weights(op_model("conv_3x3_s2_valid_c8_f16"), "huffman"))
    proc = run_edgekit("export", src, "--target", "cortex-m4", "--weights", "huffman", "--verify",
                       "-o", tmp_path / "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "huffman" in proc.stdout
    assert "8/8 outputs match the TFLite reference" in proc.stdout
    assert "all 1 layers match edgekit's integer reference" in proc.stdout


# 3x3 depthwise layers of ek_dwconv_s8_3x3_fold_dsp (channel multiplier 1, C % 4 == 0): with int4
# weights on a DSP core they take ek_dwconv_s8_w4_3x3_dsp (the nibbles unpacked per call; the
# MLPerf KWS 4-bit variant, tests/test_compressed_models.py, runs its other form).
DW_FOLD_CASES = ["dw_3x3_same_c4_m1", "dw_3x3_same_c4_m1_relu", "dw_3x3_same_c4_m1_nobias"]


@pytest.mark.parametrize("case", DW_FOLD_CASES)
def test_int4_depthwise_takes_the_3x3_dsp_kernel(case, tmp_path):
    """The cortex-m4 export (its C run on the host through the DSP twins, ASan/UBSan): the kernel,
    int4 bytes in the report equal to the nibbles in flash, every output byte TFLite's."""
    tflite, report = export_case(case, "int4", "cortex-m4", tmp_path)
    layer = next(l for l in report["layers"] if l["op"] == "DEPTHWISE_CONV_2D")
    assert layer["kernel"] == "ek_dwconv_s8_w4_3x3_dsp" and layer["weights"]["format"] == "int4"
    assert layer["weights"]["weight_format_bytes"] * 2 == layer["weights"]["int8_weight_bytes"]
    model = load(tmp_path / "out", sanitize=True)
    x = test_inputs(model.input_shape[1:], n=6, seed=8)
    assert_bit_exact(model.predict(x), reference_outputs(tflite, x), f"{case} int4 3x3 fold")
    # a channel count that is not a multiple of 4 keeps the portable int4 kernel
    (tmp_path / "c7").mkdir()
    _, other = export_case("dw_3x3_s2_same_c7_m1", "int4", "cortex-m4", tmp_path / "c7")
    assert next(l for l in other["layers"] if l["op"] == "DEPTHWISE_CONV_2D")["kernel"] == "ek_dwconv_s8_w4"


@pytest.mark.emulator
def test_int4_depthwise_3x3_dsp_kernel_on_device(tmp_path, qemu):
    tflite, _ = export_case(DW_FOLD_CASES[0], "int4", "cortex-m4", tmp_path)
    model = load(tmp_path / "out")
    x = test_inputs(model.input_shape[1:], n=3, seed=9)
    y, _ = run_firmware(model, x)
    assert_bit_exact(y, reference_outputs(tflite, x), "int4 3x3 fold depthwise on cortex-m4")


BOOT_CASES = ["conv_3x3_s2_valid_c8_f16", "conv_1x1_c8_f16", "dw_3x3_s2_same_c7_m2_relu6",
              "dw_3x3_same_c4_m1", "fc_1d_u64_relu6", "fc_2d_last_axis_u7"]


@pytest.mark.parametrize("target", ["host", "cortex-m4"])
@pytest.mark.parametrize("case", BOOT_CASES)
def test_huffman_decoded_at_boot_on_host(case, target, tmp_path):
    """--huffman-decode boot: the layer keeps its int8 kernel (DSP for cortex-m4, run here through
    the C twins), its weight array Huffman-coded in flash and decoded into RAM by ek_model_init()."""
    tflite, report = export_case(case, "huffman", target, tmp_path, huffman_decode="boot")
    for layer in (l for l in report["layers"] if l["op"] in WEIGHTED_OPS):
        assert layer["weights"]["format"] == "huffman" and "decoded at boot" in layer["weights"]["note"]
        assert not layer["kernel"].endswith("_huff"), layer["kernel"]
    assert report["totals"]["boot_decoded_ram_bytes"] > 0
    c_source = (tmp_path / "out" / "model.c").read_text()
    assert "ek_huff_decode_s8(&" in c_source
    model = load(tmp_path / "out", sanitize=True)
    x = test_inputs(model.input_shape[1:], n=6, seed=4)
    assert_bit_exact(model.predict(x), reference_outputs(tflite, x), f"{case} huffman at boot")


@pytest.mark.emulator
@pytest.mark.parametrize("case", BOOT_CASES[::2])
def test_huffman_decoded_at_boot_on_device(case, tmp_path, qemu):
    tflite, _ = export_case(case, "huffman", "cortex-m4", tmp_path, huffman_decode="boot")
    model = load(tmp_path / "out")
    x = test_inputs(model.input_shape[1:], n=3, seed=6)
    y, _ = run_firmware(model, x)
    assert_bit_exact(y, reference_outputs(tflite, x), f"{case} huffman at boot on cortex-m4")
