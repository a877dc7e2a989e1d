"""The MLPerf Tiny / EEMBC runner protocol (`make PROTOCOL=mlperf-tiny`, firmware/mlperf_main.c)
end to end in QEMU, driven by edgekit.run.mlperf_link.MlperfTinyLink and checked against the same model's
edgekit-protocol firmware.

The reply formats follow the MLPerf Tiny reference firmware (mlcommons/tiny benchmark/api/
internally_implemented.cpp, submitter_implemented.h) and are parsed here with the open runner's
regular expressions (benchmark/runner/device_under_test.py, script.py).
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_bit_exact
from edgekit.build import firmware_elf
from edgekit.run.emulate import Emulator
from edgekit.export import export
from edgekit.run.link import BoardReset, DeviceError, ErrorCode
from edgekit.run.mlperf_link import MlperfTinyLink
from edgekit.targets import get_target
from opmodels import op_model
from test_device_link import OUT_SIZE, build, fake_model, samples

pytestmark = pytest.mark.emulator

# The open MLPerf Tiny runner's parsers (benchmark/runner/device_under_test.py and script.py).
RUNNER_NAME = re.compile(r"^m-(name)-dut-\[([^]]+)]$")
RUNNER_PROFILE = re.compile(r"^m-(model|profile)-\[([^]]+)]$")
RUNNER_RESULTS = re.compile(r"^m-results-\[([^]]+)\]$")
RUNNER_LAP = re.compile(r"^m-lap-us-([0-9]+)$")


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mlperf")
    src = root / "mini_dscnn.tflite"
    src.write_bytes(op_model("mini_dscnn"))
    export(src, root / "out", get_target("cortex-m4"))
    return root / "out"


def read_until_ready(port, timeout: float = 10.0) -> str:
    """Raw text from the port up to and including the first "m-ready" line."""
    deadline = time.monotonic() + timeout
    text = b""
    while not text.endswith(b"m-ready\r\n"):
        assert time.monotonic() < deadline, f"no m-ready within {timeout} s: {text!r}"
        text += port.read(1)
    return text.decode("ascii")


def framed_reference(elf: Path, x: bytes, runs: int):
    """(DeviceInfo, per-run ticks, output bytes) over edgekit's own protocol."""
    with Emulator(elf, icount=True) as emu:
        link = emu.link
        link.wait_banner()
        info = link.info()
        link.set_input(x)
        link.run(runs, warmup=2)
        return info, link.timings(), link.get_output()


def test_mlperf_session_end_to_end_matches_the_framed_protocol(mini, qemu):
    x = np.random.default_rng(1).integers(-128, 128, 250, dtype=np.int8).tobytes()
    info, ticks, output = framed_reference(firmware_elf(mini), x, runs=5)
    elf = firmware_elf(mini, protocol="mlperf-tiny")
    assert elf == mini / "build" / "mlperf-tiny" / "firmware.elf"

    with Emulator(elf, icount=True) as emu:
        # Boot lines exactly as the reference firmware prints them.
        lines = read_until_ready(emu.serial).split("\r\n")
        assert lines[0] == "m-timestamp-mode-performance" and RUNNER_LAP.match(lines[1])
        assert lines[2:] == ["m-init-done", "m-ready", ""]
        link = MlperfTinyLink(emu.serial, chunk_size=32)

        assert RUNNER_NAME.match(link.command("name")[0]).group(2) == "mini_dscnn" == link.name()
        profile = link.command("profile")
        assert [RUNNER_PROFILE.match(line).groups() for line in profile[:2]] == [
            ("profile", "ULPMark for tinyML Firmware V0.0.1"), ("model", "mini_dscnn")]  # fmt: skip
        mlperf_info = link.info()
        for field in ("model_name", "weights_hash", "input_size", "output_size", "input_shape", "output_shape",
                      "input_scale", "input_zero_point", "output_scale", "output_zero_point", "arena_size",
                      "timer_source", "timer_hz", "cpu_hz", "num_layers", "cpuid"):  # fmt: skip
            assert getattr(mlperf_info, field) == getattr(info, field), field

        assert link.command("db load 250") == ["m-[Expecting 250 bytes]"]
        link.set_input(x)  # db load 250%, then 8 x db <64 hex digits>%, the last answered m-load-done
        assert link.command("db print")[0] == "m-buffer-" + "-".join(f"{b:02x}" for b in x[:8])

        answer = link.command("infer 5 2")
        assert answer[:3] == ["m-warmup-start-2", "m-warmup-done", "m-infer-start-5"]
        assert RUNNER_LAP.match(answer[3]) and RUNNER_LAP.match(answer[4]) and answer[5] == "m-infer-done"
        assert RUNNER_RESULTS.match(answer[-1])
        result = link.infer(5, 2)
        # Timing: the 5 runs' total equals the sum of the framed protocol's per-run ticks but for
        # the timer readings around each run (RUN: two per run, `infer`: one; observed +10 ticks
        # in 2,511,030); microseconds are ticks / 25.
        assert abs(result.ticks - sum(ticks)) <= 5 * (info.timer_overhead + 2), (result.ticks, ticks)
        assert abs(result.elapsed_us - result.ticks / 25) <= 1
        # Results: the same int8 outputs as the framed protocol, through the dequantized text.
        assert link.get_output() == output
        assert link.results() == list(result.results)
        step = info.output_scale
        assert [round(v / step) + info.output_zero_point for v in result.results] == list(np.frombuffer(output, np.int8))
        link.exit()
        assert emu.wait_exit(timeout=10) == 0


def test_mlperf_errors_follow_the_reference(mini, qemu):
    with Emulator(firmware_elf(mini, protocol="mlperf-tiny")) as emu:
        link = MlperfTinyLink(emu.serial)
        assert link.wait_banner() == "mini_dscnn"
        with pytest.raises(DeviceError, match=r"rejected 'infer 1 0%': Input db has 0 bytes, expected 250"):
            link.infer(1, 0)
        with pytest.raises(DeviceError, match=r"rejected 'infer 0%': Inference iterations must be >0"):
            link.command("infer 0")
        with pytest.raises(DeviceError, match=r"rejected 'infer 1 -1%': Inference warmup must be >=0"):
            link.command("infer 1 -1")
        with pytest.raises(DeviceError, match=r"Supplied buffer size 251 exceeds maximum of 250"):
            link.command("db load 251")
        with pytest.raises(DeviceError, match=r"Command 'db load' must be >0 bytes"):
            link.command("db load 0")
        link.command("db load 2")
        with pytest.raises(DeviceError, match=r"Invalid hex digit 'zz'"):
            link.command("db zz")
        with pytest.raises(DeviceError, match=r"Insufficient number of hex digits"):
            link.command("db abc")
        with pytest.raises(DeviceError, match=r"No results: run 'infer' first"):
            link.results()
        with pytest.raises(DeviceError, match=r"Unknown command: bogus"):
            link.command("bogus")
        with pytest.raises(DeviceError, match=r"Command longer than 256 characters"):
            link.command("db " + "00" * 200)
        assert link.command("") == []  # an empty command gets only m-ready
        assert "help         : Print this information" in link.command("help")
        assert RUNNER_LAP.match(link.command("timestamp")[0])
        with pytest.raises(DeviceError) as caught:
            link.timings()
        assert caught.value.code == ErrorCode.NOT_SUPPORTED


def test_mlperf_results_recover_int8_and_board_reset_is_noticed(qemu, tmp_path):
    # The fake model (output scale 0.125, zero point 3), resetting at its 3rd inference.
    elf = build("mps2-an386", tmp_path, ("FAKE_MODEL_RESET_AT=3",), main="mlperf_main.c")
    with Emulator(elf, icount=True) as emu:
        link = MlperfTinyLink(emu.serial)
        assert link.wait_banner() == "fake_model"
        x = samples(1, seed=9)
        link.set_input(x.tobytes())
        link.infer(2, 0)
        assert_bit_exact(np.frombuffer(link.get_output(), np.int8), fake_model(x)[0], "m-results")
        assert len(link.last_inference.results) == OUT_SIZE
        with pytest.raises(BoardReset, match=r"the board reset while the host waited for the answer to 'infer 1 0%'"):
            link.infer(1, 0)
        assert link.name() == "fake_model"  # the new session answers
        link.exit(success=False)
        assert emu.wait_exit(timeout=10) == 1
