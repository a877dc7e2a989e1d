"""Shared fixtures. Tests that need ../shared/models, the ARM toolchain, QEMU or Debian's
Fashion-MNIST skip with a reason on a user's fresh clone; under CI (CI=true or
EDGEKIT_REQUIRE_SHARED=1) they fail instead, so they can never silently skip.

The fast tier (`make test-fast`, `pytest -m "not slow"`): pytest_collection_modifyitems marks
`slow` every test that runs QEMU (marker `emulator`, fixture `qemu`), needs the MLPerf Tiny models
(marker `shared`, fixture `shared_models`), or is listed in SLOW_MODULES / SLOW_TESTS (each with
its reason: TensorFlow converting or training at test time, whole-model or whole-dataset runs);
a test can also be marked `@pytest.mark.slow` by hand (test_ops.py keeps FAST_CASES that take
every kernel). Everything else is fast, and in a fast
run a test over FAST_BUDGET_S seconds is named in the summary, to be marked or made faster.

Compiled kernel objects (edgekit/build/objcache.py) are cached for the session in a temporary
directory, or in $EDGEKIT_OBJ_CACHE if set ("off" disables the cache; `make test-fast` sets it
to ~/.cache/edgekit/objs, to keep them between runs); cached_cc() puts a test's own compile
command through the same cache."""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

# As edgekit.train sets it (see there): set before any test module imports TensorFlow.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

REPO = Path(__file__).resolve().parent.parent
SHARED_MODELS = REPO.parent / "shared" / "models" / "mlperf-tiny"
REQUIRE_ALL = os.environ.get("CI") == "true" or os.environ.get("EDGEKIT_REQUIRE_SHARED") == "1"

# Modules left out of the fast tier, and why. Everything QEMU or ../shared is out by its marker
# or fixture wherever it is.
SLOW_MODULES = {
    "test_bad_inputs.py": "builds and converts Keras models with TensorFlow, runs the CLI in subprocesses",
    "test_keras_import.py": "TensorFlow converts Keras 2/3 models",
    "test_float_boundary.py": "TensorFlow converts a float-I/O model",
    "test_multi_output.py": "TensorFlow converts Keras models",
    "test_eval.py": "TensorFlow converts the bundled model; the whole Fashion-MNIST test set",
    "test_packaging.py": "builds and installs a wheel",
    "test_bench.py": "firmware in QEMU",
    "test_mlperf_models.py": "the MLPerf Tiny models",
    "test_compressed_models.py": "compressed variants of the MLPerf Tiny models (trained by edgekit.train and tfmot)",
    "test_exits.py": "trains Keras models with exit heads, converts and runs them",
    "test_budget.py": "trains exit heads, converts and calibrates the model, runs every budget level",
    "test_train.py": "trains Keras models with TensorFlow (seconds each, but many)",
    "test_train_models.py": "compresses, exports and runs models end to end",
    "test_mobilenet_style.py": "a whole MobileNetV1-style model (TensorFlow converts it on a cold cache)",
}
# Single tests left out of the fast tier (in files other engineers own, or beside fast ones).
SLOW_TESTS = {
    "test_weight_formats.py::test_format_bit_exact_on_host":
        "every format on every weighted op case, a whole export and ASan build each (the format kernels "
        "are fuzzed one by one in test_wformats.py and run on a model in test_intref.py)",
    "test_dsp_conv_fc.py::test_conv_fold_under_address_sanitizer":
        "every convolution test again in a child process under ASan (the fast tier runs them under "
        "UBSan, and the _dsp convolutions under ASan in test_ops.py's whole models)",
}
SLOW_FIXTURES = {"qemu", "shared_models"}
SLOW_MARKERS = {"emulator", "shared"}
FAST_BUDGET_S = 10.0


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: not in the fast tier (make test-fast); set by "
                                       "pytest_collection_modifyitems in tests/conftest.py")


def pytest_collection_modifyitems(config, items):
    for item in items:
        reason = SLOW_MODULES.get(item.path.name) or SLOW_TESTS.get(f"{item.path.name}::{item.originalname}")
        if reason is None and not ({m.name for m in item.iter_markers()} & SLOW_MARKERS) \
                and not (set(getattr(item, "fixturenames", ())) & SLOW_FIXTURES):
            continue
        item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """In a run without the slow tests, name the tests that took too long for the fast tier."""
    if "not slow" not in (config.getoption("markexpr", "") or ""):
        return
    over = []
    for report in terminalreporter.getreports("passed") + terminalreporter.getreports("failed"):
        if report.when == "call" and report.duration > FAST_BUDGET_S:
            over.append((report.duration, report.nodeid))
    if over:
        terminalreporter.write_sep("-", f"tests over {FAST_BUDGET_S:g} s in the fast tier (mark them slow or speed them up)")
        for duration, nodeid in sorted(over, reverse=True):
            terminalreporter.write_line(f"{duration:6.1f}s {nodeid}")


@pytest.fixture(scope="session", autouse=True)
def obj_cache():
    """Compiled kernel objects shared by every build of the session (edgekit/build/objcache.py)."""
    if "EDGEKIT_OBJ_CACHE" in os.environ:
        yield os.environ["EDGEKIT_OBJ_CACHE"]
        return
    with tempfile.TemporaryDirectory(prefix="edgekit-objs-") as cache:
        os.environ["EDGEKIT_OBJ_CACHE"] = cache
        try:
            yield cache
        finally:
            os.environ.pop("EDGEKIT_OBJ_CACHE", None)


def cached_cc(cmd: list[str]) -> list[str]:
    """A test's own `gcc FLAGS SOURCES -o OUT` through edgekit/build/objcache.py: the sources compiled in
    parallel, the objects of firmware/kernels/*.c taken from (and put in) the session's cache.
    Unchanged when the cache is off."""
    cache = os.environ.get("EDGEKIT_OBJ_CACHE", "")
    if cache.strip().lower() in ("", "0", "off", "no", "false"):
        return list(cmd)
    return [sys.executable, "-I", "-S", str(REPO / "edgekit" / "build" / "objcache.py"), "--cache", cache, "--", *cmd]


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
