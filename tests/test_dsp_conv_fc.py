"""The DSP GEMM kernels against the portable reference kernels, exact equality, on the host.

ek_conv2d_s8_1x1_dsp, ek_conv2d_s8_dsp and ek_fc_s8_dsp (firmware/kernels) are compiled with the
portable kernels into one shared library (ek_dsp.h's C twins stand in for the DSP instructions)
and called through ctypes on seeded random shapes, paddings, strides, dilations, odd channel and
pixel counts and extreme quantization. The _dsp kernels get their operands prepared by the same
Python helpers the lowerings use (edgekit.ops.conv.fold_input_offset / interleave_pairs), so the
export-time layout is checked too. The whole-model cases, on the host and on the emulated
Cortex-M4, are in test_ops.py and test_ops_device.py.
"""
from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from edgekit import quant  # noqa: E402
from edgekit.ops.conv import CONV_DSP_MAX_PATCH, fold_input_offset, interleave_pairs  # noqa: E402

KERNELS = REPO / "firmware" / "kernels"
SOURCES = ["ek_conv2d_s8.c", "ek_conv2d_s8_1x1_dsp.c", "ek_conv2d_s8_dsp.c", "ek_fc_s8.c", "ek_fc_s8_dsp.c"]
ODD = [1, 3, 5, 7, 17]

I32P = ctypes.POINTER(ctypes.c_int32)
I8P = ctypes.POINTER(ctypes.c_int8)

CONV_INTS = ("in_h", "in_w", "in_c", "out_h", "out_w", "out_c", "k_h", "k_w", "stride_h", "stride_w",
             "dil_h", "dil_w", "pad_top", "pad_left", "input_offset", "output_offset", "act_min", "act_max")
FC_INTS = ("rows", "in_n", "out_n", "input_offset", "weight_offset", "output_offset", "act_min", "act_max")


class ConvParams(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int32) for n in CONV_INTS] + [("mult", I32P), ("shift", I32P)]


class FcParams(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int32) for n in FC_INTS] + [("mult", I32P), ("shift", I32P),
                                                           ("per_tensor", ctypes.c_int32)]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    out = tmp_path_factory.mktemp("ek_dsp_gemm") / "libek_dsp_gemm.so"
    cmd = ["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared", "-o", str(out)] + \
          [str(KERNELS / s) for s in SOURCES]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"compiling the kernels failed:\n{res.stderr}"
    so = ctypes.CDLL(str(out))
    for name in ("ek_conv2d_s8", "ek_conv2d_s8_1x1_dsp", "ek_conv2d_s8_dsp"):
        getattr(so, name).argtypes = [ctypes.POINTER(ConvParams), I8P, I8P, I32P, I8P]
    for name in ("ek_fc_s8", "ek_fc_s8_dsp"):
        getattr(so, name).argtypes = [ctypes.POINTER(FcParams), I8P, I8P, I32P, I8P]
    return so


def _ptr(a: np.ndarray | None, ptype):
    return None if a is None else a.ctypes.data_as(ptype)


def _call(lib, fn: str, cls, ints: dict, mult, shift, x, w, bias, out_size: int, **extra) -> np.ndarray:
    params = cls(**ints, mult=_ptr(mult, I32P), shift=_ptr(shift, I32P), **extra)
    y = np.full(out_size, 99, dtype=np.int8)
    getattr(lib, fn)(ctypes.byref(params), _ptr(x, I8P), _ptr(w, I8P), _ptr(bias, I32P), _ptr(y, I8P))
    return y


def assert_same(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    """Tolerance 0; on failure print every mismatching index."""
    bad = np.flatnonzero(got != ref)
    if bad.size:
        lines = "\n".join(f"  [{i}] got {int(got[i])}, reference {int(ref[i])}" for i in bad)
        pytest.fail(f"{what}: {bad.size} of {got.size} bytes differ from the portable kernel:\n{lines}")


def _quant(rng, n: int, single_rounding: bool, extreme: bool):
    mult = rng.integers(1 << 30, 1 << 31, n, dtype=np.int64).astype(np.int32)
    if extreme:
        mult[rng.random(n) < 0.3] = np.int32(2**31 - 1)
        mult[rng.random(n) < 0.3] = np.int32(1 << 30)
    lo, hi = (-31, 4) if not single_rounding else (-30, 6)
    shift = rng.integers(lo, hi, n).astype(np.int32) if extreme else rng.integers(-14, 1, n).astype(np.int32)
    if single_rounding:
        shift = np.minimum(shift, 30)
    a, b = sorted(rng.integers(-128, 128, 2))
    if not extreme and rng.random() < 0.5:
        a, b = -128, 127
    zp_in = int(rng.choice([-128, 127])) if extreme else int(rng.integers(-128, 128))
    zp_out = int(rng.choice([-128, 127])) if extreme else int(rng.integers(-128, 128))
    return mult, shift, dict(input_offset=-zp_in, output_offset=zp_out, act_min=int(a), act_max=int(b))


def _int8(rng, shape, extreme: bool) -> np.ndarray:
    if extreme:
        return rng.choice(np.array([-128, -127, 127], np.int8), size=shape)
    return rng.integers(-128, 128, shape, dtype=np.int8)


def _conv_case(rng, pointwise: bool, extreme: bool):
    in_c, out_c = (int(rng.choice(ODD)) if rng.random() < 0.5 else int(rng.integers(1, 70)) for _ in range(2))
    in_h, in_w = (int(rng.integers(1, 10)) for _ in range(2))
    if pointwise:
        k, stride, dil, padding = (1, 1), (1, 1), (1, 1), "VALID"
    else:
        k = tuple(int(rng.integers(1, 5)) for _ in range(2))
        stride = tuple(int(rng.integers(1, 4)) for _ in range(2))
        dil = tuple(int(rng.integers(1, 3)) for _ in range(2))
        padding = str(rng.choice(["SAME", "VALID"]))
    out_hw = [quant.conv_output_size((in_h, in_w)[a], k[a], stride[a], dil[a], padding) for a in range(2)]
    if min(out_hw) < 1 or k[0] * k[1] * in_c > CONV_DSP_MAX_PATCH:
        return None
    pads = [quant.same_padding((in_h, in_w)[a], k[a], stride[a], dil[a], out_hw[a]) if padding == "SAME" else 0
            for a in range(2)]
    mult, shift, q = _quant(rng, out_c, single_rounding=False, extreme=extreme)
    ints = dict(in_h=in_h, in_w=in_w, in_c=in_c, out_h=out_hw[0], out_w=out_hw[1], out_c=out_c,
                k_h=k[0], k_w=k[1], stride_h=stride[0], stride_w=stride[1], dil_h=dil[0], dil_w=dil[1],
                pad_top=pads[0], pad_left=pads[1], **q)
    x = _int8(rng, in_h * in_w * in_c, extreme)
    w = _int8(rng, (out_c, k[0] * k[1] * in_c), extreme)
    bias = None if rng.random() < 0.2 else rng.integers(-(1 << 20), 1 << 20, out_c).astype(np.int32)
    return ints, mult, shift, x, w, bias


@pytest.mark.parametrize("variant", ["ek_conv2d_s8_1x1_dsp", "ek_conv2d_s8_dsp"])
@pytest.mark.parametrize("extreme", [False, True], ids=["random", "extreme"])
def test_conv_dsp_equals_reference(lib, variant, extreme):
    rng = np.random.default_rng(1234 + extreme + 2 * (variant == "ek_conv2d_s8_dsp"))
    done = 0
    while done < 250:
        case = _conv_case(rng, pointwise=variant.endswith("1x1_dsp") or rng.random() < 0.1, extreme=extreme)
        if case is None:
            continue
        ints, mult, shift, x, w, bias = case
        out_size = ints["out_h"] * ints["out_w"] * ints["out_c"]
        ref = _call(lib, "ek_conv2d_s8", ConvParams, ints, mult, shift, x, w.reshape(-1), bias, out_size)
        folded = fold_input_offset(bias, w, ints["input_offset"])
        got = _call(lib, variant, ConvParams, ints, mult, shift, x, interleave_pairs(w), folded, out_size)
        assert_same(got, ref, f"{variant} case {done} {ints}")
        done += 1


@pytest.mark.parametrize("extreme", [False, True], ids=["random", "extreme"])
def test_fc_dsp_equals_reference(lib, extreme):
    rng = np.random.default_rng(99 + extreme)
    for case in range(600):
        rows = int(rng.choice([1, 1, 1, 2, 3, 4, 5]))
        in_n, out_n = (int(rng.choice(ODD)) if rng.random() < 0.5 else int(rng.integers(1, 300)) for _ in range(2))
        mult, shift, q = _quant(rng, out_n, single_rounding=True, extreme=extreme)
        per_tensor = rng.random() < 0.5   # one multiplier repeated: the kernel may prepare it once
        if per_tensor:
            mult[:], shift[:] = mult[0], shift[0]
        ints = dict(rows=rows, in_n=in_n, out_n=out_n, weight_offset=0, **q)
        x = _int8(rng, rows * in_n, extreme)
        w = _int8(rng, (out_n, in_n), extreme)
        bias = None if rng.random() < 0.2 else rng.integers(-(1 << 20), 1 << 20, out_n).astype(np.int32)
        ref = _call(lib, "ek_fc_s8", FcParams, ints, mult, shift, x, w.reshape(-1), bias, rows * out_n)
        folded = fold_input_offset(bias, w, ints["input_offset"])
        got = _call(lib, "ek_fc_s8_dsp", FcParams, ints, mult, shift, x, interleave_pairs(w), folded, rows * out_n,
                    per_tensor=int(per_tensor))
        assert_same(got, ref, f"ek_fc_s8_dsp case {case} {ints}")


def test_interleave_pairs_layout():
    rows = np.arange(2 * 6 + 6, dtype=np.int8).reshape(3, 6)   # 3 rows of 6: a pair and an odd row
    got = interleave_pairs(rows).tolist()
    assert got == [0, 1, 2, 3, 6, 7, 8, 9, 4, 5, 10, 11, 12, 13, 14, 15, 16, 17]
