"""The kernel registry (edgekit.lower.kernels) is the one place kernel facts live:

- every entry is a function its header declares, with its params struct first, and every public
  kernel the headers declare is registered (its sources exist);
- the weight-format choice (edgekit.passes.weights) prices the kernel that lowering then emits, by
  construction: over random layers, targets and modes the predicted kernel is the emitted one and
  the estimate is that kernel's registry cost;
- the 6-channel 3x3 depthwise layer with int4-range weights that once took the portable int4
  kernel under `--optimize speed` (the price of the 3x3 DSP form had drifted from lowering's
  predicate) keeps int8, and a measured check on the emulated M4 over a set of layers: `auto`
  under `--optimize speed` is never slower than int8.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from edgekit.measure.bench import BenchConfig, bench
from edgekit.emit.codegen import resource_dir
from edgekit.export import compile_program, export
from edgekit.lower.base import KERNEL_CHOICES
from edgekit.lower.kernels import KERNELS, kernel
from edgekit.lower.program import lower
from edgekit.targets import get_target
from edgekit.passes.weights import choose_weight_formats, estimate, output_pixels, weight_rows
from opmodels import op_model
from test_intref_fuzz import random_chain
from test_weight_formats import rewrite_weights, shape_weights

KDIR = resource_dir("firmware") / "kernels"
# Public functions the headers declare that are not kernels a lowering emits: the folded GEMM body
# the conv _dsp kernels share, and the Huffman decoder ek_model_init() runs (edgekit.emit.codegen).
NOT_KERNELS = {"ek_conv2d_fold_gemm_dsp", "ek_huff_decode_s8"}
FORMATS = ("int8", "int4", "lut4", "lut8", "sparse", "huffman")


def declarations() -> dict[str, tuple[str, str]]:
    """name -> (header, first parameter's type) of every `void ek_...(` the kernel headers declare."""
    out = {}
    for h in sorted(KDIR.glob("*.h")):
        text = re.sub(r"/\*.*?\*/", "", h.read_text(), flags=re.S)
        for m in re.finditer(r"^void\s+(ek_\w+)\s*\(\s*const\s+(\w+)\s*\*", text, re.M):
            out[m.group(1)] = (h.name, m.group(2))
    return out


def test_registry_matches_the_headers():
    declared = declarations()
    for k in KERNELS.values():
        assert k.name in declared, f"{k.name} is not declared in any kernel header"
        assert declared[k.name] == (k.header, k.params_type), (k.name, declared[k.name])
        for src in k.sources:
            assert (KDIR / src).is_file(), (k.name, src)
        assert re.search(rf"^void\s+{k.name}\s*\(", (KDIR / k.sources[0]).read_text(), re.M), \
            f"{k.sources[0]} does not define {k.name}"
        assert k.dsp == k.name.endswith("_dsp") and (k.weights != "") == (k.cost is not None), k
    missing = set(declared) - set(KERNELS) - NOT_KERNELS
    assert not missing, f"kernels declared in the headers but not registered: {sorted(missing)}"
    assert NOT_KERNELS <= set(declared)


def _reshaped(graph, fmt: str, seed: int):
    """The graph with every weighted layer's weights passed through shape_weights(fmt)."""
    rng = np.random.default_rng(seed)
    for op in graph.ops:
        if op.kind in KERNEL_CHOICES:
            w = graph.t(op.inputs[1])
            rows = weight_rows(graph, op)
            w.data = shape_weights(rows, fmt, rng).reshape(w.data.shape)
    return graph


@pytest.mark.parametrize("seed", range(60))
def test_predicted_kernel_is_the_emitted_kernel(seed):
    """Random IR chains (conv, depthwise with multipliers and dilation, FC; random quantization),
    weights shaped for a random format, on every kind of target, in every weights mode: the kernel
    the format choice priced is the kernel lowering emitted, and the estimate is its cost."""
    rng = np.random.default_rng(seed)
    shape = ["int4", "lut4", "sparse", "huffman", "huffman-books", "int8"][seed % 6]
    for target_name in ("cortex-m4", "cortex-m3", "host"):
        target = get_target(target_name)
        for mode, optimize in (("auto", "speed"), ("auto", "size"), ("auto", "balanced"),
                               (FORMATS[int(rng.integers(len(FORMATS)))], "speed")):
            graph = random_chain(seed)
            if shape != "int8":
                _reshaped(graph, shape, seed)
            choices = choose_weight_formats(graph, mode, optimize, target)
            program = lower(graph, target)
            steps = {id(s.op): s for s in program.steps}
            for op in graph.ops:
                w = op.notes.weights
                if w is None:
                    continue
                k = kernel(steps[id(op)].call.kernel)
                predicted = KERNEL_CHOICES[op.kind](graph, op, target, w.format)
                assert predicted == k, (seed, target_name, mode, op.kind, w.format, predicted.name, k.name)
                assert (k.weights or "int8") == w.format, (k.name, w.format)
                if w.format != "int8":
                    continue
                rows = weight_rows(graph, op)
                assert w.est_instructions == estimate(k, None, rows, output_pixels(graph, op))[0]
            assert len(choices) == sum(op.kind in KERNEL_CHOICES for op in graph.ops)


def _six_channel_dw(tmp_path):
    src = tmp_path / "dw6.tflite"
    src.write_bytes(rewrite_weights(op_model("dw_3x3_same_c6_m1"), "int4"))
    return src


def test_six_channel_depthwise_keeps_int8_under_optimize_speed(tmp_path):
    """The reported case: int4 here would run the portable ek_dwconv_s8_w4 (6 channels: not the
    int4 3x3 DSP form), ~3x slower than the int8 3x3 fold kernel."""
    program = compile_program(_six_channel_dw(tmp_path).read_bytes(), target=get_target("cortex-m4"),
                              weights="auto", optimize="speed")
    (step,) = [s for s in program.steps if s.op.kind == "DEPTHWISE_CONV_2D"]
    assert step.op.notes.weights.format == "int8" and step.call.kernel == "ek_dwconv_s8_3x3_fold_dsp"
    # forced, int4 takes the portable kernel and is priced as such
    program = compile_program(_six_channel_dw(tmp_path).read_bytes(), target=get_target("cortex-m4"), weights="int4")
    (step,) = [s for s in program.steps if s.op.kind == "DEPTHWISE_CONV_2D"]
    w = step.op.notes.weights
    assert step.call.kernel == "ek_dwconv_s8_w4" and w.est_instructions > 2 * w.est_int8_instructions


# (op case, weights shape): layers where `auto` may leave int8 under --optimize speed, and ones
# where it must not.
MEASURED = [("dw_3x3_same_c6_m1", "int4"), ("dw_3x3_same_c4_m1", "int4"), ("conv_3x3_s2_valid_c8_f16", "sparse"),
            ("conv_1x1_c8_f16", "int4"), ("fc_1d_u64", "sparse"), ("fc_1d_u64", "huffman"),
            ("conv_3x3_s2_valid_c8_f16", "lut4"), ("dw_3x3_s2_same_c7_m1", "int4")]


@pytest.mark.emulator
@pytest.mark.parametrize("case,shape", MEASURED)
def test_auto_speed_is_never_slower_than_int8_when_measured(case, shape, tmp_path, qemu):
    src = tmp_path / f"{case}.tflite"
    src.write_bytes(rewrite_weights(op_model(case), shape))
    measured = {}
    for weights in ("int8", "auto"):
        out = tmp_path / weights
        result = export(src, out, get_target("cortex-m4"), weights=weights, optimize="speed")
        r = bench(out, BenchConfig(runs=1, warmup=0, count=1), emulate=True, progress=False)
        assert r.matched == len(r.per_input), (case, weights)
        measured[weights] = float(np.median(r.times))
        formats = [l["weights"]["format"] for l in result.report["layers"] if "weights" in l]
    assert measured["auto"] <= measured["int8"], (case, shape, formats, measured)
