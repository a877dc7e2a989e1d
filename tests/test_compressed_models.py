"""Compressed weight formats on whole models: pruned, clustered and 4-bit QAT variants of the three
MLPerf Tiny models (tests/model_variants.py: edgekit.train's pruning and clustering, tfmot's INT4).

Each variant is exported with the format its compression suits (sparse, lut4, int4; lut4 for
the pruned-and-clustered one), with Huffman, and with `--weights auto --optimize size`; the host build (ASan/UBSan) and the emulated
Cortex-M4 must equal the reference interpreter byte for byte: LiteRT's reference kernels for
the int8 variants, TFLite Micro for the INT4 ones (edgekit.run.reference picks it). The formats must
also deliver what they are for: fewer weight bytes than int8, and Huffman (of codebook
indices) fewer than lut4 on the clustered variants.
"""
from __future__ import annotations

import json

import pytest

from conftest import assert_bit_exact, test_inputs
from edgekit.api import load
from edgekit.run.emulate import run_firmware
from edgekit.export import export
from edgekit.run.reference import reference_outputs
from edgekit.targets import get_target

MODELS = ("kws", "resnet", "ad")
NATURAL = {"pruned": "sparse", "clustered": "lut4", "pruned-clustered": "lut4", "int4": "int4"}
# (variant, format) -> the largest weights/int8 byte ratio over the layers that took the format.
MAX_RATIO = {("pruned", "sparse"): 0.6, ("clustered", "lut4"): 0.8, ("int4", "int4"): 0.55,
             ("clustered", "huffman"): 0.8, ("pruned-clustered", "lut4"): 0.8,
             ("pruned-clustered", "huffman"): 0.4}
# Huffman on top of lut4 (codebook indices coded by frequency): its weight bytes over lut4's, at most.
HUFFMAN_OVER_LUT4 = {"clustered": 0.99, "pruned-clustered": 0.6}

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def variants():
    """model/kind -> .tflite path, built once (cached across runs in ~/.cache/edgekit-tests)."""
    from conftest import SHARED_MODELS, _need
    _need(SHARED_MODELS.is_dir(), f"the MLPerf Tiny models are not at {SHARED_MODELS} "
                                  "(only the project's CI and developer machines have ../shared)")
    from model_variants import variant_paths
    return variant_paths([(m, k) for m in MODELS for k in NATURAL])


def _export(path, fmt: str, target: str, out):
    weights, optimize = ("auto", "size") if fmt == "auto" else (fmt, "speed")
    boot = fmt == "huffman-boot"
    export(path, out, get_target(target), weights="huffman" if boot else weights, optimize=optimize,
           huffman_decode="boot" if boot else "layer")
    return json.loads((out / "report.json").read_text())


def _check_sizes(report: dict, variant: str, fmt: str) -> None:
    layers = [l["weights"] for l in report["layers"] if "weights" in l]
    took = [w for w in layers if w["format"] == fmt]
    fmt = "huffman" if fmt == "huffman-boot" else fmt
    took = [w for w in layers if w["format"] == fmt]
    if fmt != "auto":
        assert took, f"no layer took {fmt}: {[w['note'] for w in layers]}"
    limit = MAX_RATIO.get((variant, fmt))
    if limit is not None:
        ratio = sum(w["weight_format_bytes"] for w in took) / sum(w["int8_weight_bytes"] for w in took)
        assert ratio <= limit, f"{variant} {fmt}: weights at {ratio:.2f}x of int8 (expected <= {limit})"
    total = sum(w["weight_format_bytes"] for w in layers)
    assert total <= sum(w["int8_weight_bytes"] for w in layers)


@pytest.mark.parametrize("fmt", ["natural", "huffman", "auto"])
@pytest.mark.parametrize("variant", sorted(NATURAL))
@pytest.mark.parametrize("model", MODELS)
def test_compressed_variant_bit_exact_on_host(model, variant, fmt, variants, tmp_path):
    fmt = NATURAL[variant] if fmt == "natural" else fmt
    path = variants[model, variant]
    report = _export(path, fmt, "host", tmp_path / "out")
    _check_sizes(report, variant, fmt)
    compiled = load(tmp_path / "out", sanitize=True)
    x = test_inputs(compiled.input_shape[1:], n=4, seed=2026)
    assert_bit_exact(compiled.predict(x), reference_outputs(path, x), f"{model} {variant} {fmt}")


@pytest.mark.emulator
@pytest.mark.parametrize("fmt", ["natural", "auto", "huffman-boot"])
@pytest.mark.parametrize("variant", sorted(NATURAL))
@pytest.mark.parametrize("model", MODELS)
def test_compressed_variant_bit_exact_on_cortex_m4(model, variant, fmt, variants, qemu, tmp_path):
    fmt = NATURAL[variant] if fmt == "natural" else fmt
    path = variants[model, variant]
    report = _export(path, fmt, "cortex-m4", tmp_path / "out")
    if (model, variant, fmt) == ("kws", "int4", "int4"):   # 3x3 depthwise, shifts outside the folded form
        dw = [l for l in report["layers"] if l["op"] == "DEPTHWISE_CONV_2D"]
        assert dw and all(l["kernel"] == "ek_dwconv_s8_w4_3x3_dsp" for l in dw)
    if model == "kws" and variant in ("pruned", "pruned-clustered"):
        # pruned 3x3 depthwise filters (some all zero, with the converter's extreme constants) stay
        # on the folded _dsp kernel: settle_dead_channels
        dw = [l for l in report["layers"] if l["op"] == "DEPTHWISE_CONV_2D"]
        fast = ("ek_dwconv_s8_3x3_fold_dsp", "ek_dwconv_s8_w4_3x3_dsp")
        assert dw and all(l["kernel"] in fast for l in dw), [l["kernel"] for l in dw]
    compiled = load(tmp_path / "out")
    x = test_inputs(compiled.input_shape[1:], n=3, seed=7)
    y, machine = run_firmware(compiled, x)
    assert machine == "mps2-an386"
    assert_bit_exact(y, reference_outputs(path, x), f"{model} {variant} {fmt} on cortex-m4")


@pytest.mark.parametrize("variant", sorted(HUFFMAN_OVER_LUT4))
@pytest.mark.parametrize("model", MODELS)
def test_huffman_on_top_of_lut4_is_smaller(model, variant, variants):
    """On clustered layers Huffman codes the per-channel codebook indices, so it is smaller than
    lut4 (whose indices take 4 bits each): a little on the clustered variants (the 16 clusters
    are used about evenly), about half on the pruned-and-clustered ones (80 % of the indices
    name the zero centroid)."""
    import numpy as np

    from edgekit.frontend.tflite import load_tflite
    from edgekit.formats import encode
    from edgekit.passes.weights import weight_rows
    graph = load_tflite(str(variants[model, variant]))
    lut4 = huffman = 0
    for op in graph.ops:
        if op.kind not in ("CONV_2D", "FULLY_CONNECTED"):
            continue
        rows = weight_rows(graph, op)
        enc = encode("lut4", rows)
        assert not isinstance(enc, str), f"{op.location}: {enc}"
        coded = encode("huffman", rows, layout="dsp")
        assert np.array_equal(coded.decode(), rows)
        lut4 += enc.nbytes
        huffman += coded.nbytes
    assert huffman <= HUFFMAN_OVER_LUT4[variant] * lut4, f"Huffman {huffman:,} bytes, lut4 {lut4:,}"
