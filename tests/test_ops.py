"""Every op alone over its parameter space (tests/opmodels.py): the generated C, built for the
host with AddressSanitizer + UBSan and -Wall -Wextra -Werror, must equal TFLite's reference
interpreter byte for byte. The same cases run on the emulated Cortex-M4 in test_ops_device.py.

Two exports per case: for the host target (portable kernels) and for cortex-m4 (the kernel
variants chosen for a DSP core), both built and run on the host: firmware/kernels/ek_dsp.h gives
the DSP instructions exact C twins there, so every _dsp algorithm is checked under the sanitizers
too, not only on the emulated board."""
from __future__ import annotations

import pytest

from conftest import assert_bit_exact, test_inputs
from edgekit.api import load
from edgekit.export import export
from edgekit.reference import reference_outputs
from edgekit.targets import get_target
from opmodels import OP_CASES, op_model


@pytest.mark.parametrize("target", ["host", "cortex-m4"])
@pytest.mark.parametrize("case", sorted(OP_CASES))
def test_op_bit_exact_on_host(case, target, tmp_path):
    tflite = op_model(case)
    src = tmp_path / f"{case}.tflite"
    src.write_bytes(tflite)
    export(src, tmp_path / "out", get_target(target))
    model = load(tmp_path / "out", sanitize=True)
    x = test_inputs(model.input_shape[1:], n=8, seed=7)
    assert_bit_exact(model.predict(x), reference_outputs(tflite, x), case)
