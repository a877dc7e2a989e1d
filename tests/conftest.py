"""Shared fixtures. Tests that need ../shared/models skip with a reason on a user's fresh clone;
under CI (CI=true or EDGEKIT_REQUIRE_SHARED=1) they fail instead, so they can never silently skip."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_MODELS = REPO.parent / "shared" / "models" / "mlperf-tiny"
REQUIRE_ALL = os.environ.get("CI") == "true" or os.environ.get("EDGEKIT_REQUIRE_SHARED") == "1"


def _need(condition: bool, reason: str) -> None:
    if condition:
        return
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (mandatory under CI)")
    pytest.skip(reason)


@pytest.fixture
def shared_models() -> Path:
    _need(SHARED_MODELS.is_dir(), f"the MLPerf Tiny models are not at {SHARED_MODELS} "
                                  "(only the project's CI and developer machines have ../shared)")
    return SHARED_MODELS


@pytest.fixture
def arm_toolchain() -> None:
    _need(shutil.which("arm-none-eabi-gcc") is not None,
          "arm-none-eabi-gcc is not installed (sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)")


@pytest.fixture
def qemu(arm_toolchain) -> None:
    _need(shutil.which("qemu-system-arm") is not None,
          "qemu-system-arm is not installed (sudo apt-get install qemu-system-arm)")


def assert_bit_exact(got: np.ndarray, ref: np.ndarray, what: str = "") -> None:
    """Tolerance 0; on failure list every mismatching index (up to 50)."""
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != reference {ref.shape}"
    diff = np.argwhere(got != ref)
    if len(diff):
        lines = [f"  index {tuple(int(v) for v in d)}: got {int(got[tuple(d)])}, reference {int(ref[tuple(d)])}"
                 for d in diff[:50]]
        more = f"\n  ... and {len(diff) - 50} more" if len(diff) > 50 else ""
        pytest.fail(f"{what}: {len(diff)} of {got.size} output bytes differ from the reference:\n"
                    + "\n".join(lines) + more)


def test_inputs(shape: tuple[int, ...], n: int = 6, seed: int = 0) -> np.ndarray:
    """Fixed-seed random int8 inputs plus the two extreme constant inputs."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(n, *shape), dtype=np.int8)
    x[0] = -128
    x[1] = 127
    return x


test_inputs.__test__ = False   # a helper, not a test
