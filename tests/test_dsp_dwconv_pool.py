"""Kernel-level fuzz of the depthwise DSP variant against the portable reference, on the host.

ek_dwconv_s8_3x3_dsp (firmware/kernels, through ek_dsp.h's exact C twins) and ek_dwconv_s8 are
compiled into one shared library with AddressSanitizer + UBSan and -Wall -Wextra -Werror; random
shapes (channel counts 1..64, images 1x1 to 25x5, strides 1 and 2, SAME and VALID), extreme input
offsets, multipliers and shifts, with and without bias, must give identical bytes. The filter is
packed by the lowering's own edgekit.lower.packing.pack_dw3x3_filter.
"""
from __future__ import annotations

import ctypes
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import cached_cc
from cstructs import c_struct
from edgekit.lower import quant
from edgekit.lower.packing import DW_FOLD_SHIFTS as FOLD_SHIFTS, pack_dw3x3_filter, pack_dw3x3_fold

KERNELS = Path(__file__).resolve().parents[1] / "firmware" / "kernels"
I32P = ctypes.POINTER(ctypes.c_int32)


DwParams = c_struct("ek_dwconv.h", "ek_dwconv_params")     # as the header declares it (tests/cstructs.py)


def _libasan() -> str:
    return subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    out = tmp_path_factory.mktemp("dsp") / "libdw.so"
    srcs = [KERNELS / "ek_dwconv_s8.c", KERNELS / "ek_dwconv_s8_3x3_dsp.c", KERNELS / "ek_dwconv_s8_3x3_fold_dsp.c"]
    subprocess.run(cached_cc(["gcc", "-std=c99", "-O1", "-g", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
                    "-fsanitize=undefined", "-fno-sanitize-recover=all", f"-I{KERNELS}", "-o", str(out),
                    *map(str, srcs)]), check=True)
    return ctypes.CDLL(str(out))


def _case(rng, h, w, c, stride, padding):
    out_h = quant.conv_output_size(h, 3, stride, 1, padding)
    out_w = quant.conv_output_size(w, 3, stride, 1, padding)
    if out_h < 1 or out_w < 1:
        return None
    pad = [quant.same_padding(i, 3, stride, 1, o) if padding == "SAME" else 0
           for i, o in ((h, out_h), (w, out_w))]
    extreme = rng.random() < 0.3
    x = rng.integers(-128, 128, size=(h, w, c), dtype=np.int8)
    if extreme:
        x = rng.choice(np.array([-128, 127], dtype=np.int8), size=(h, w, c))
    filt = rng.integers(-127, 128, size=(1, 3, 3, c), dtype=np.int8)
    if extreme:
        filt = rng.choice(np.array([-127, 127], dtype=np.int8), size=(1, 3, 3, c))
    bias = rng.integers(-2 ** 20, 2 ** 20, size=c, dtype=np.int32) if rng.random() < 0.8 else None
    mult = rng.integers(2 ** 30, 2 ** 31, size=c, dtype=np.int64).astype(np.int32)
    shift = rng.integers(-12, 2, size=c, dtype=np.int32)           # shift > 0 takes the long path
    if rng.random() < 0.3:
        mult[:] = 2 ** 31 - 1
    in_off = int(rng.choice([-127, 128, 0, int(rng.integers(-127, 129))]))
    out_off = int(rng.integers(-128, 128))
    act_min, act_max = (-128, 127) if rng.random() < 0.5 else (int(rng.integers(-128, 0)), int(rng.integers(0, 128)))
    params = dict(in_h=h, in_w=w, in_c=c, out_h=out_h, out_w=out_w, out_c=c, ch_mult=1, k_h=3, k_w=3,
                  stride_h=stride, stride_w=stride, dil_h=1, dil_w=1, pad_top=pad[0], pad_left=pad[1],
                  input_offset=in_off, output_offset=out_off, act_min=act_min, act_max=act_max)
    return params, x, filt, bias, mult, shift


def _run(lib, fn, params, x, filt_bytes, bias, mult, shift):
    p = DwParams(**params, mult=mult.ctypes.data_as(I32P), shift=shift.ctypes.data_as(I32P))
    out = np.zeros((params["out_h"], params["out_w"], params["out_c"]), dtype=np.int8)
    b = bias.ctypes.data_as(I32P) if bias is not None else None
    getattr(lib, fn)(ctypes.byref(p), x.ctypes.data_as(ctypes.c_void_p), filt_bytes.ctypes.data_as(ctypes.c_void_p),
                     b, out.ctypes.data_as(ctypes.c_void_p))
    return out


# VALID padding of a 3x3 window needs an image of at least 3x3: smaller ones have no output.
GEOMETRIES = [(hw, stride, padding) for hw in [(1, 1), (2, 3), (5, 5), (25, 5), (4, 7)] for stride in (1, 2)
              for padding in ("SAME", "VALID") if padding == "SAME" or min(hw) >= 3]


@pytest.mark.parametrize("c", [1, 3, 4, 5, 7, 8, 17, 64])
@pytest.mark.parametrize("hw,stride,padding", GEOMETRIES)
def test_dwconv_3x3_dsp_equals_reference(lib, c, hw, stride, padding):
    rng = np.random.default_rng([c, *hw, stride, padding == "SAME"])
    for _ in range(4):
        case = _case(rng, *hw, c, stride, padding)
        assert case is not None
        params, x, filt, bias, mult, shift = case
        ref = _run(lib, "ek_dwconv_s8", params, x, np.ascontiguousarray(filt.reshape(-1)), bias, mult, shift)
        got = _run(lib, "ek_dwconv_s8_3x3_dsp", params, x, pack_dw3x3_filter(filt), bias, mult, shift)
        bad = np.argwhere(got != ref)
        assert bad.size == 0, f"{len(bad)} mismatches, first at {bad[:10].tolist()}: {params}"


@pytest.mark.parametrize("c", [1, 2, 3, 4, 5, 7, 8, 17, 64])
@pytest.mark.parametrize("hw,stride,padding", GEOMETRIES)
def test_dwconv_3x3_fold_dsp_equals_reference(lib, c, hw, stride, padding):
    rng = np.random.default_rng([c, *hw, stride, padding == "SAME", 7])
    for i in range(6):
        params, x, filt, bias, mult, shift = _case(rng, *hw, c, stride, padding)
        shift = np.minimum(shift, FOLD_SHIFTS[1]).astype(np.int32)     # the variant's shifts only
        if i == 0:
            shift[:] = FOLD_SHIFTS[0]
        elif i == 1:
            shift = rng.integers(FOLD_SHIFTS[0], FOLD_SHIFTS[1] + 1, size=c, dtype=np.int32)
        if rng.random() < 0.2:
            mult[:] = 2 ** 30
        if rng.random() < 0.1:
            mult[0] = 0
        if bias is not None and rng.random() < 0.2:
            bias = rng.integers(-2 ** 30, 2 ** 30, size=c, dtype=np.int32)      # large accumulators
        ref = _run(lib, "ek_dwconv_s8", params, x, np.ascontiguousarray(filt.reshape(-1)), bias, mult, shift)
        filt_bytes, block = pack_dw3x3_fold(filt, bias, mult, shift, params["input_offset"],
                                           params["output_offset"])
        # mult/shift are not read: pass zeros to catch any use
        got = _run(lib, "ek_dwconv_s8_3x3_fold_dsp", params, x, filt_bytes, block,
                   np.zeros_like(mult), np.zeros_like(shift))
        bad = np.argwhere(got != ref)
        assert bad.size == 0, f"{len(bad)} mismatches, first at {bad[:10].tolist()}: {params}"


def test_pack_dw3x3_filter_layout():
    filt = np.arange(9 * 5, dtype=np.int8).reshape(1, 3, 3, 5)
    words = pack_dw3x3_filter(filt).view("<i2").reshape(2, 9, 4)        # [group][tap][c, c+2, c+1, c+3]
    assert words[0, 4].tolist() == [filt[0, 1, 1, 0], filt[0, 1, 1, 2], filt[0, 1, 1, 1], filt[0, 1, 1, 3]]
    assert words[1, 8].tolist() == [filt[0, 2, 2, 4], 0, 0, 0]


PoolParams = c_struct("ek_pool.h", "ek_pool_params")


@pytest.fixture(scope="module")
def pool_lib(tmp_path_factory):
    out = tmp_path_factory.mktemp("dsp_pool") / "libpool.so"
    srcs = [KERNELS / "ek_avgpool_s8.c", KERNELS / "ek_avgpool_s8_dsp.c"]
    subprocess.run(cached_cc(["gcc", "-std=c99", "-O1", "-g", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror",
                    "-fsanitize=undefined", "-fno-sanitize-recover=all", f"-I{KERNELS}", "-o", str(out),
                    *map(str, srcs)]), check=True)
    return ctypes.CDLL(str(out))


def _pool(lib, fn, params, x):
    out = np.zeros((params["out_h"], params["out_w"], params["c"]), dtype=np.int8)
    getattr(lib, fn)(ctypes.byref(PoolParams(**params)), x.ctypes.data_as(ctypes.c_void_p),
                     out.ctypes.data_as(ctypes.c_void_p))
    return out


# (h, w, k_h, k_w, stride, padding): KWS's 25x5 global pool, small windows, windows of more
# than 255 taps (several flushes of the 16-bit sums) and one row of 255 taps.
POOLS = [(25, 5, 25, 5, 1, "VALID"), (5, 5, 3, 3, 1, "SAME"), (7, 6, 2, 2, 2, "VALID"), (6, 7, 3, 2, 2, "SAME"),
         (1, 1, 1, 1, 1, "VALID"), (40, 20, 40, 20, 1, "VALID"), (3, 255, 3, 255, 1, "VALID"),
         (9, 9, 5, 5, 3, "SAME")]


@pytest.mark.parametrize("c", [1, 3, 4, 5, 8, 13, 64])
@pytest.mark.parametrize("h,w,k_h,k_w,stride,padding", POOLS)
def test_avgpool_dsp_equals_reference(pool_lib, c, h, w, k_h, k_w, stride, padding):
    rng = np.random.default_rng([c, h, w, k_h, k_w, stride])
    out_h = quant.conv_output_size(h, k_h, stride, 1, padding)
    out_w = quant.conv_output_size(w, k_w, stride, 1, padding)
    pad = [quant.same_padding(i, k, stride, 1, o) if padding == "SAME" else 0
           for i, k, o in ((h, k_h, out_h), (w, k_w, out_w))]
    for i in range(4):
        x = rng.integers(-128, 128, size=(h, w, c), dtype=np.int8)
        if i == 1:
            x[:] = -128                                        # extreme sums, both signs
        elif i == 2:
            x[:] = 127
        act = (-128, 127) if i < 3 else (int(rng.integers(-128, 0)), int(rng.integers(0, 128)))
        params = dict(in_h=h, in_w=w, c=c, out_h=out_h, out_w=out_w, k_h=k_h, k_w=k_w, stride_h=stride,
                      stride_w=stride, pad_top=pad[0], pad_left=pad[1], act_min=act[0], act_max=act[1])
        ref = _pool(pool_lib, "ek_avgpool_s8", params, x)
        got = _pool(pool_lib, "ek_avgpool_s8_dsp", params, x)
        bad = np.argwhere(got != ref)
        assert bad.size == 0, f"{len(bad)} mismatches, first at {bad[:10].tolist()}: {params}"


def test_pack_dw3x3_fold_layout():
    filt = np.arange(9 * 5, dtype=np.int8).reshape(1, 3, 3, 5)
    bias = np.array([10, 20, 30, 40, 50], dtype=np.int32)
    mult = np.array([2 ** 30 + i for i in range(5)], dtype=np.int32)
    shift = np.array([-2, -3, -7, -23, -9], dtype=np.int32)
    filt_bytes, block = pack_dw3x3_fold(filt, bias, mult, shift, input_offset=128, output_offset=-5)
    assert filt_bytes[:2 * 72].tolist() == pack_dw3x3_filter(filt).tolist()
    assert filt_bytes[2 * 72:].tolist() == [-128] * 8                   # the input zero point row
    g = block.reshape(2, 4, 4)                                          # [group][bias, M, P high, R-1][4]
    sums = filt.reshape(9, 5).astype(np.int64).sum(axis=0)
    assert g[0, 0].tolist() == (bias[:4] + 128 * sums[:4]).tolist()
    assert g[1, 0].tolist() == [bias[4] + 128 * sums[4], 0, 0, 0]
    assert g[0, 1].tolist() == mult[:4].tolist() and g[1, 1].tolist() == [mult[4], 0, 0, 0]
    assert g[0, 2].tolist() == [2 ** (r - 2) - 5 * 2 ** (r - 1) for r in (2, 3, 7, 23)]
    assert g[0, 3].tolist() == [1, 2, 6, 22] and g[1, 3].tolist() == [8, 1, 1, 1]
    with pytest.raises(ValueError):
        pack_dw3x3_fold(filt, bias, mult, np.array([-1, -3, -7, -9, -9], np.int32), 0, 0)
    with pytest.raises(ValueError):
        pack_dw3x3_fold(filt, bias, mult, np.array([-24, -3, -7, -9, -9], np.int32), 0, 0)


def _run_in_place(lib, fn, params, x, filt_bytes, bias, mult, shift, gap):
    """The kernel with its output starting `gap` bytes below its input in one buffer, as the
    memory planner places an in-place pair (edgekit.lower.base.InPlace)."""
    p = DwParams(**params, mult=mult.ctypes.data_as(I32P), shift=shift.ctypes.data_as(I32P))
    out_n = params["out_h"] * params["out_w"] * params["out_c"]
    buf = np.zeros(max(gap + x.size, out_n), dtype=np.int8)
    buf[gap:gap + x.size] = x.reshape(-1)
    base = buf.ctypes.data
    getattr(lib, fn)(ctypes.byref(p), ctypes.c_void_p(base + gap), filt_bytes.ctypes.data_as(ctypes.c_void_p),
                     bias.ctypes.data_as(I32P), ctypes.c_void_p(base))
    return buf[:out_n].reshape(params["out_h"], params["out_w"], params["out_c"]).copy()


@pytest.mark.parametrize("c", [1, 3, 4, 5, 8, 17, 64])
@pytest.mark.parametrize("hw,stride,padding", GEOMETRIES)
def test_dwconv_3x3_fold_dsp_in_place_at_the_declared_gap(lib, c, hw, stride, padding):
    """The gap edgekit/lower/dwconv.py declares for ek_dwconv_s8_3x3_fold_dsp is enough: run in
    place at exactly that gap, every output byte equals the out-of-place reference."""
    rng = np.random.default_rng([c, *hw, stride, padding == "SAME", 11])
    for _ in range(3):
        params, x, filt, bias, mult, shift = _case(rng, *hw, c, stride, padding)
        shift = rng.integers(FOLD_SHIFTS[0], FOLD_SHIFTS[1] + 1, size=c, dtype=np.int32)
        ref = _run(lib, "ek_dwconv_s8", params, x, np.ascontiguousarray(filt.reshape(-1)), bias, mult, shift)
        filt_bytes, block = pack_dw3x3_fold(filt, bias, mult, shift, params["input_offset"],
                                           params["output_offset"])
        gap = c * (params["pad_top"] * params["in_w"] + params["pad_left"] + 1)
        got = _run_in_place(lib, "ek_dwconv_s8_3x3_fold_dsp", params, x, filt_bytes, block,
                            np.zeros_like(mult), np.zeros_like(shift), gap)
        bad = np.argwhere(got != ref)
        assert bad.size == 0, f"in place at gap {gap}: {len(bad)} mismatches, first at {bad[:10].tolist()}: {params}"
