"""The per-op cases of test_ops.py, built with arm-none-eabi-gcc for the Cortex-M4 and the
Cortex-M7 (both with the DSP kernel variants) and run in QEMU (mps2-an386, mps2-an500) over the
serial link: every output byte equals TFLite's reference."""
from __future__ import annotations

import pytest

from conftest import assert_bit_exact, test_inputs
from edgekit.api import load
from edgekit.run.emulate import run_firmware
from edgekit.export import export
from edgekit.run.reference import reference_outputs
from edgekit.targets import get_target
from opmodels import OP_CASES, op_model

pytestmark = pytest.mark.emulator


@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m7"])
@pytest.mark.parametrize("case", sorted(OP_CASES))
def test_op_bit_exact_on_device(case, target, tmp_path, qemu):
    tflite = op_model(case)
    src = tmp_path / f"{case}.tflite"
    src.write_bytes(tflite)
    export(src, tmp_path / "out", get_target(target))
    model = load(tmp_path / "out")
    x = test_inputs(model.input_shape[1:], n=4, seed=11)
    y, machine = run_firmware(model, x)
    assert machine == get_target(target).qemu_machine
    assert_bit_exact(y, reference_outputs(tflite, x), case)
