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
from edgekit.export import compile_program, export
from edgekit.run.reference import reference_outputs
from edgekit.targets import get_target
from opmodels import OP_CASES, op_model

TARGETS = ["host", "cortex-m4"]
# The fast tier (make test-fast) builds these cases only: between them they take every kernel
# that any op case takes, on both targets (test_fast_cases_take_every_kernel). The full suite
# builds every case.
FAST_CASES = ["mini_mobilenet", "mini_dscnn", "mini_resnet", "concat_sigmoid_input", "add_conv_conv",
              "avgpool_2x2_s1_valid", "flatten_3d", "maxpool_2x2_s2_same_odd", "pad_asymmetric",
              "dw_channel_magnitudes_zero", "softmax_input_wide", "conv_3x3_s2_same_c1_f5"]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("case", [c if c in FAST_CASES else pytest.param(c, marks=pytest.mark.slow)
                                  for c in sorted(OP_CASES)])
def test_op_bit_exact_on_host(case, target, tmp_path):
    tflite = op_model(case)
    src = tmp_path / f"{case}.tflite"
    src.write_bytes(tflite)
    export(src, tmp_path / "out", get_target(target))
    model = load(tmp_path / "out", sanitize=True)
    x = test_inputs(model.input_shape[1:], n=8, seed=7)
    assert_bit_exact(model.predict(x), reference_outputs(tflite, x), case)


def test_fast_cases_take_every_kernel():
    for target in TARGETS:
        def kernels(cases):
            return {s.call.kernel for c in cases for s in compile_program(op_model(c), target=get_target(target)).steps}
        missing = kernels(OP_CASES) - kernels(FAST_CASES)
        assert not missing, f"{target}: no case of FAST_CASES takes {sorted(missing)}"
