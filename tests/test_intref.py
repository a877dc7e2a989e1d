"""edgekit's integer reference (edgekit.run.intref) against TFLite's reference interpreter and against
the generated C, tolerance 0, every mismatching index printed.

- every op case of tests/opmodels.py and the three MLPerf Tiny models against LiteRT BUILTIN_REF;
- every intermediate tensor (run_traced) against the interpreter's preserved tensors;
- the host C build (CompiledModel.predict) on a set of cases that uses every portable kernel, and
  on the MLPerf Tiny models;
- the compressed-weight kernels (edgekit.formats) bit-exact with the int8 ones, in Python and in C;
- the integer helpers (ek_common.h, ek_fixedpoint.h) against their C on random and extreme values;
- a clear error for a kernel it does not implement; the numba cache and its fallback.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

from conftest import assert_bit_exact, test_inputs
from edgekit.run import intref
from edgekit import formats
from edgekit.lower import kernels as registry
from edgekit.api import load
from edgekit.errors import UnsupportedModelError
from edgekit.export import compile_program, export
from edgekit.frontend.tflite import load_tflite
from edgekit.run.intref import KERNELS, IntReference
from edgekit.passes import run_passes
from edgekit.lower.program import lower
from edgekit.run.reference import reference_outputs, reference_tensors
from edgekit.targets import get_target
from edgekit.run.verify import boundary_qparams
from opmodels import OP_CASES, op_model

REPO = Path(__file__).resolve().parent.parent
MLPERF = ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "ad01_int8.tflite"]
# Host C comparisons: these cases use every kernel of the portable lowering (checked below).
C_CASES = ["conv_3x3_s2_same_c1_f5", "conv_3x3_d2_valid_c8_f16", "dw_3x3_s2_same_c1_m3", "fc_flat4d_u7",
           "avgpool_3x3_s2_same_odd", "maxpool_3x3_s2_same_odd", "gap_2d_keepdims", "add_scales_1000x",
           "softmax_input_wide", "tanh_after_conv", "pad_asymmetric", "concat_tanh_sigmoid",
           "relu_after_concat", "flatten_3d", "mini_resnet", "mini_mobilenet", "mini_dscnn"]


def int8_program(tflite: bytes):
    """The portable lowering with every layer's weights int8 (no compressed format)."""
    return compile_program(tflite, target=None, weights="int8")


@pytest.mark.parametrize("case", sorted(OP_CASES))
def test_op_case_matches_tflite(case):
    tflite = op_model(case)
    ref = IntReference(int8_program(tflite))
    x = test_inputs(ref.input_shape[1:], n=16, seed=7)
    assert_bit_exact(ref.run(x), reference_outputs(tflite, x), case)


@pytest.mark.parametrize("case", ["mini_dscnn", "mini_resnet", "mini_mobilenet", "concat_tanh_sigmoid",
                                  "add_conv_input", "pad_asymmetric", "fc_2d_last_axis_u7"])
def test_every_layer_matches_tflite_tensors(case):
    """run_traced: each kernel call's output equals the interpreter's tensor of the same index."""
    tflite = op_model(case)
    ref = IntReference(int8_program(tflite))
    x = test_inputs(ref.input_shape[1:], n=3, seed=13)[2]
    expected = reference_tensors(tflite, x)
    traced = ref.run_traced(x)
    assert [t.step for t in traced] == list(range(ref.num_layers)) and traced
    for t in traced:
        assert t.values.dtype == np.int8 and t.values.shape == expected[t.tensor].shape, t.layer
        assert_bit_exact(t.values, expected[t.tensor], f"{case} step {t.step}: {t.layer}")
    np.testing.assert_array_equal(traced[-1].values.reshape(1, -1), ref.run(x).reshape(1, -1))


def test_c_cases_cover_every_portable_kernel():
    used = {s.call.kernel for case in C_CASES for s in int8_program(op_model(case)).steps}
    everywhere = {s.call.kernel for case in OP_CASES for s in int8_program(op_model(case)).steps}
    assert everywhere <= used, f"no host C case for {sorted(everywhere - used)}"
    int8_kernels = {k for k in KERNELS if registry.kernel(k).weights in ("", "int8")}
    assert used == int8_kernels, f"kernels in no op case: {sorted(int8_kernels - used)}"


@pytest.mark.parametrize("case", C_CASES)
def test_op_case_matches_host_c(case, tmp_path):
    src = tmp_path / f"{case}.tflite"
    src.write_bytes(op_model(case))
    export(src, tmp_path / "out", get_target("host"), weights="int8")
    model = load(tmp_path / "out")
    x = test_inputs(model.input_shape[1:], n=64, seed=11)
    assert_bit_exact(IntReference.from_export(tmp_path / "out").run(x), model.predict(x), case)


@pytest.mark.shared
@pytest.mark.parametrize("name", MLPERF)
def test_mlperf_model_matches_tflite_and_host_c(name, shared_models, tmp_path):
    export(shared_models / name, tmp_path / "out", get_target("host"))
    model = load(tmp_path / "out")
    ref = IntReference(int8_program((shared_models / name).read_bytes()))
    x = test_inputs(model.input_shape[1:], n=12, seed=2026)
    y = ref.run(x)
    assert_bit_exact(y, reference_outputs(shared_models / name, x, **boundary_qparams(model.report)), name)
    x = test_inputs(model.input_shape[1:], n=48, seed=5)
    assert_bit_exact(IntReference.from_export(tmp_path / "out").run(x), model.predict(x), f"{name} (host C)")


# ---- compressed weights -------------------------------------------------------------------

def clipped_tflite(case: str) -> bytes:
    """The case's .tflite with every conv / depthwise / FC weight clipped to [-8, 7] in the
    flatbuffer, so that every format (int4 and lut4 too) can take every layer and TFLite's
    reference interpreter runs the clipped model."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    tflite = op_model(case)
    model = schema.ModelT.InitFromPackedBuf(tflite, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    graph = model.subgraphs[0]
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if names.get(max(code.builtinCode, code.deprecatedBuiltinCode)) in ("CONV_2D", "DEPTHWISE_CONV_2D",
                                                                            "FULLY_CONNECTED"):
            buf = model.buffers[graph.tensors[op.inputs[1]].buffer]
            w = np.asarray(buf.data, dtype=np.uint8).view(np.int8)
            buf.data = np.clip(w, -8, 7).astype(np.int8).view(np.uint8)
    builder = flatbuffers.Builder(len(tflite) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def clipped_graph(case: str):
    return run_passes(load_tflite(clipped_tflite(case)))


@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_compressed_kernels_match_tflite(fmt):
    """A model whose every conv / depthwise / FC layer holds the format, through the integer
    reference's ek_*_s8_<format> binders (decode the stored encoding, unfold the bias, int8
    kernel), gives TFLite's bytes for the same weights; the program really uses the format's
    kernels. (Compared with TFLite, not with the int8 program's integer reference: both sides
    would then share everything but the encode/decode round trip.)"""
    from edgekit.passes.weights import choose_weight_formats
    graph = clipped_graph("mini_dscnn")
    choose_weight_formats(graph, fmt, "speed", None)
    program = lower(graph, None)
    kernels = {s.call.kernel for s in program.steps}
    assert {registry.format_kernel(op, fmt, False).name for op in ("conv2d", "fc")} <= kernels, kernels
    if fmt == "int4":
        assert "ek_dwconv_s8_w4" in kernels
    ref = IntReference(program)
    x = test_inputs(ref.input_shape[1:], n=8, seed=3)
    assert_bit_exact(ref.run(x), reference_outputs(clipped_tflite("mini_dscnn"), x), fmt)


@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_compressed_export_matches_host_c(fmt, tmp_path):
    """The C format kernels (where the weights take the format; int8 elsewhere) against the
    integer reference of the same export."""
    src = tmp_path / "m.tflite"
    src.write_bytes(op_model("mini_mobilenet"))
    export(src, tmp_path / "out", get_target("host"), weights=fmt)
    model = load(tmp_path / "out")
    x = test_inputs(model.input_shape[1:], n=16, seed=9)
    assert_bit_exact(IntReference.from_export(tmp_path / "out").run(x), model.predict(x), fmt)


# ---- errors, API --------------------------------------------------------------------------

def test_unknown_kernel_is_named():
    program = lower(run_passes(load_tflite(op_model("mini_dscnn"))), get_target("cortex-m4"))
    first = next(s.call.kernel for s in program.steps if s.call.kernel not in KERNELS)
    assert first.endswith("_dsp")
    with pytest.raises(UnsupportedModelError, match=f"kernel {first}, which edgekit's integer reference "
                                                    "does not implement"):
        IntReference(program)
    program = int8_program(op_model("fc_1d_u7"))
    program.steps[0].call.kernel = "ek_fc_s8_future"
    with pytest.raises(UnsupportedModelError, match=r"layer 0 \(FULLY_CONNECTED.*ek_fc_s8_future"):
        IntReference(program)


def test_batches_and_single_samples():
    ref = IntReference(int8_program(op_model("mini_dscnn")))
    x = test_inputs(ref.input_shape[1:], n=9, seed=1)
    y = ref.run(x)
    assert y.dtype == np.int8 and y.shape == (9, *ref.output_shape[1:])
    np.testing.assert_array_equal(np.concatenate([ref.run(x[:4]), ref.run(x[4:])]), y)
    np.testing.assert_array_equal(ref.run(x[5]), y[5:6])
    assert ref.run(x[:0]).shape == (0, *ref.output_shape[1:])
    with pytest.raises(Exception, match="int8"):
        ref.run(x.astype(np.float32))
    with pytest.raises(Exception, match="shape"):
        ref.run(x[:, :3])


def test_numba_kernels_are_cached_and_fall_back_without_a_cache_dir():
    """cache=True where numba finds a writable place (beside the module, else the user's cache
    directory); with no writable place at all (read-only install and home), compiled in memory."""
    assert type(intref._conv2d_s8._cache).__name__ == "FunctionCache"
    script = ("import numba.core.caching as c\n"
              "c.CacheImpl._locator_classes = []      # no writable cache location anywhere\n"
              "import numpy as np, sys\n"
              f"sys.path.insert(0, {str(REPO / 'tests')!r})\n"
              "from opmodels import op_model\n"
              "from edgekit.run.intref import IntReference, _conv2d_s8\n"
              "ref = IntReference.from_tflite(op_model('conv_3x3_same_c3_f5'))\n"
              "print(type(_conv2d_s8._cache).__name__, ref.run(np.zeros((2, 7, 9, 3), np.int8)).shape)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, NUMBA_CACHE_DIR=""), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["NullCache", "(2,", "7,", "9,", "5)"]


# ---- the integer helpers against their C ----------------------------------------------------

HELPERS_C = r"""
#include "ek_common.h"
#include "ek_fixedpoint.h"
void helpers(const int32_t *a, const int32_t *b, const int32_t *s, int32_t *out, int32_t n, int32_t which)
{
    for (int32_t i = 0; i < n; ++i) {
        int32_t bits = 0;
        switch (which) {
        case 0: out[i] = ek_requantize(a[i], b[i], s[i]); break;
        case 1: out[i] = ek_requantize_1r(a[i], b[i], s[i]); break;
        case 2: out[i] = ek_requantize_lt1(a[i], b[i], s[i] > 0 ? -s[i] : s[i]); break;
        case 3: out[i] = ek_srdhm(a[i], b[i]); break;
        case 4: out[i] = ek_fp_exp_on_negative_values(a[i] > 0 ? -a[i] : a[i], s[i] & 15); break;
        case 5: out[i] = ek_fp_reciprocal(a[i] > 0 ? a[i] : 1, 12, &bits); break;
        case 6: (void)ek_fp_reciprocal(a[i] > 0 ? a[i] : 1, 12, &bits); out[i] = bits; break;
        case 7: out[i] = ek_fp_mul_pot(a[i], s[i]); break;
        }
    }
}
"""


@numba.njit
def _py_helpers(a, b, s, out, which):
    for i in range(a.shape[0]):
        x, m, sh = np.int64(a[i]), np.int64(b[i]), np.int64(s[i])
        if which == 0:
            out[i] = intref._requantize(x, m, sh)
        elif which == 1:
            out[i] = intref._requantize_1r(x, m, sh)
        elif which == 2:
            out[i] = intref._requantize_lt1(x, m, -sh if sh > 0 else sh)
        elif which == 3:
            out[i] = intref._srdhm(x, m)
        elif which == 4:
            out[i] = intref._fp_exp_on_negative_values(-x if x > 0 else x, sh & 15, intref._EXP_NEG_POW2)
        elif which == 5 or which == 6:      # as _softmax_s8 inlines ek_fp_reciprocal
            v = x if x > 0 else 1
            headroom = intref._clz_u32(v)
            shifted = intref._wrap32(((v << headroom) & 0xFFFFFFFF) - 0x80000000)
            out[i] = intref._fp_one_over_one_plus_x(shifted) if which == 5 else 12 - headroom
        else:
            out[i] = intref._fp_mul_pot(x, sh)


def test_integer_helpers_match_their_c(tmp_path):
    import ctypes
    src = tmp_path / "helpers.c"
    src.write_text(HELPERS_C)
    lib = tmp_path / "helpers.so"
    subprocess.run(["cc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared",
                    f"-I{REPO / 'firmware' / 'kernels'}", str(src), "-o", str(lib)], check=True)
    so = ctypes.CDLL(str(lib))
    rng = np.random.default_rng(2024)
    n = 200_000
    edges = np.array([0, 1, -1, 2 ** 31 - 1, -2 ** 31, 2 ** 30, -2 ** 30, 12345, -12345], np.int64)
    a = np.concatenate([rng.integers(-2 ** 31, 2 ** 31, n), rng.integers(-70000, 70000, n),
                        np.repeat(edges, len(edges))]).astype(np.int32)
    b = np.concatenate([rng.integers(2 ** 30, 2 ** 31, n), rng.integers(-2 ** 31, 2 ** 31, n),
                        np.tile(edges, len(edges))]).astype(np.int32)
    s = np.concatenate([rng.integers(-31, 31, n), rng.integers(-31, 1, n),
                        np.zeros(len(edges) ** 2)]).astype(np.int32)
    ptr = ctypes.POINTER(ctypes.c_int32)
    names = ["ek_requantize", "ek_requantize_1r", "ek_requantize_lt1", "ek_srdhm",
             "ek_fp_exp_on_negative_values", "ek_fp_reciprocal", "ek_fp_reciprocal bits_over_unit",
             "ek_fp_mul_pot"]
    for which, name in enumerate(names):
        sel = slice(None)
        if which in (0, 1, 2):      # the domain: multipliers in [2^30, 2^31), requantize_1r's shifts <= 30
            sel = (b >= 2 ** 30)
        c_out = np.zeros(len(a), np.int32)
        aa, bb, ss = (np.ascontiguousarray(v[sel]) for v in (a, b, s))
        so.helpers(aa.ctypes.data_as(ptr), bb.ctypes.data_as(ptr), ss.ctypes.data_as(ptr),
                   c_out.ctypes.data_as(ptr), ctypes.c_int32(len(aa)), ctypes.c_int32(which))
        py_out = np.zeros(len(aa), np.int64)
        _py_helpers(aa, bb, ss, py_out, which)
        assert_bit_exact(py_out.astype(np.int32), c_out[:len(aa)], name)
