"""The three MLPerf Tiny reference models, whole: exported, built and run bit-exact on the host
(with sanitizers) and on the emulated Cortex-M4, against TFLite's reference interpreter."""
from __future__ import annotations

import pytest

from conftest import assert_bit_exact, test_inputs
from edgekit.api import load
from edgekit.build import firmware_size
from edgekit.run.emulate import run_firmware
from edgekit.export import export
from edgekit.run.reference import reference_outputs
from edgekit.targets import get_target

MODELS = ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "ad01_int8.tflite"]


@pytest.mark.shared
@pytest.mark.parametrize("name", MODELS)
def test_mlperf_model_bit_exact_on_host(name, shared_models, tmp_path):
    export(shared_models / name, tmp_path / "out", get_target("host"))
    model = load(tmp_path / "out", sanitize=True)
    x = test_inputs(model.input_shape[1:], n=12, seed=2026)
    assert_bit_exact(model.predict(x), reference_outputs(shared_models / name, x), name)


@pytest.mark.shared
@pytest.mark.emulator
@pytest.mark.parametrize("name", MODELS)
def test_mlperf_model_bit_exact_on_cortex_m4(name, shared_models, qemu, tmp_path):
    result = export(shared_models / name, tmp_path / "out", get_target("cortex-m4"))
    model = load(tmp_path / "out")
    x = test_inputs(model.input_shape[1:], n=8, seed=2026)
    y, machine = run_firmware(model, x)
    assert machine == "mps2-an386"
    assert_bit_exact(y, reference_outputs(shared_models / name, x), name)
    size = firmware_size(tmp_path / "out" / "build" / "firmware.elf")
    # The whole firmware holds the model's constants, and its RAM holds the planned arena.
    assert size["flash_bytes"] > result.report["totals"]["weight_bytes"]
    assert size["ram_bytes"] >= result.report["totals"]["arena_bytes"]


@pytest.mark.shared
def test_mlperf_keras_h5_models_export(shared_models, tmp_path):
    """The Keras 2 .h5 files load (tf_keras) and quantize; the result runs bit-exact on the host."""
    import numpy as np
    calib = np.random.default_rng(0).uniform(0, 1, size=(8, 640)).astype(np.float32)
    np.save(tmp_path / "calib.npy", calib)
    export(shared_models / "ad01.h5", tmp_path / "out", get_target("host"), calib=tmp_path / "calib.npy")
    model = load(tmp_path / "out")
    x = test_inputs(model.input_shape[1:], n=4, seed=5)
    assert_bit_exact(model.predict(x), reference_outputs(tmp_path / "out" / "model.tflite", x), "ad01.h5")


@pytest.mark.shared
@pytest.mark.emulator
@pytest.mark.parametrize("name", MODELS)
def test_mlperf_model_bench_is_bit_exact_and_repeatable(name, shared_models, qemu, tmp_path):
    """`edgekit bench --emulate`: every run's output matches the reference, and two sessions in
    a row report the same instructions per inference (QEMU -icount is deterministic)."""
    from edgekit.measure.bench import BenchConfig, bench
    export(shared_models / name, tmp_path / "out", get_target("cortex-m4"))
    first, second = (bench(tmp_path / "out", BenchConfig(runs=2, warmup=1, count=2), emulate=True,
                           progress=False) for _ in range(2))
    for r in (first, second):
        assert r.matched == 2 and r.complete and r.unit == "instructions"
    assert first.times == second.times
    assert first.latency()["median"] > first.to_json()["arena_bytes"]     # a real, non-trivial count
