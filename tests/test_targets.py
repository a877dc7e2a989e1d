"""Every Cortex-M target builds; those with a QEMU board run bit-exact there too."""
from __future__ import annotations

import pytest

from conftest import assert_bit_exact, test_inputs
from edgekit.api import load
from edgekit.build import firmware_elf, firmware_size
from edgekit.run.emulate import run_firmware
from edgekit.export import export
from edgekit.run.reference import reference_outputs
from edgekit.targets import TARGETS, get_target, parse_size
from opmodels import op_model

EMULATED = [t.name for t in TARGETS.values() if t.can_emulate]


@pytest.mark.emulator
@pytest.mark.parametrize("target", EMULATED)
@pytest.mark.parametrize("case", ["mini_dscnn", "mini_resnet", "mini_mobilenet"])
def test_mini_models_bit_exact_on_every_emulated_target(target, case, tmp_path, qemu):
    tflite = op_model(case)
    (tmp_path / "m.tflite").write_bytes(tflite)
    export(tmp_path / "m.tflite", tmp_path / "out", get_target(target))
    model = load(tmp_path / "out")
    x = test_inputs(model.input_shape[1:], n=4, seed=21)
    y, machine = run_firmware(model, x)
    assert machine == get_target(target).qemu_machine
    assert_bit_exact(y, reference_outputs(tflite, x), f"{case} on {target}")


def test_target_table():
    assert set(TARGETS) >= {"cortex-m4", "cortex-m7", "cortex-m3", "cortex-m0plus", "host"}
    assert get_target("cortex-m4").has_dsp and get_target("cortex-m7").has_dsp
    assert not get_target("cortex-m3").has_dsp and not get_target("cortex-m0plus").has_dsp
    assert get_target("cortex-m4").qemu_machine == "mps2-an386"
    assert get_target("cortex-m7").qemu_machine == "mps2-an500"
    t = get_target("cortex-m4", flash=parse_size("512K"), ram=parse_size("64k"))
    assert (t.flash_bytes, t.ram_bytes) == (512 * 1024, 64 * 1024)
    assert parse_size("2M") == 2 * 1024 * 1024 and parse_size("1000") == 1000


def test_cortex_m0plus_builds_without_dsp_or_fpu(tmp_path, arm_toolchain):
    (tmp_path / "m.tflite").write_bytes(op_model("mini_dscnn"))
    export(tmp_path / "m.tflite", tmp_path / "out", get_target("cortex-m0plus"))
    elf = firmware_elf(tmp_path / "out")
    size = firmware_size(elf)
    assert 0 < size["flash_bytes"] < get_target("cortex-m0plus").flash_bytes
    assert "-mcpu=cortex-m0plus" in (tmp_path / "out" / "Makefile").read_text()
