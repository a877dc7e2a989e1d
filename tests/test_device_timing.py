"""On-device timing of a real exported model (opmodels' mini_dscnn, 8 layers) in QEMU.

The firmware times each run with the board timer (firmware/boards/mps2/timer.c: CMSDK TIMER0 under
QEMU, which has no DWT).  Under `-icount shift=3,sleep=off` one 25 MHz tick is 5 guest
instructions and the counts are deterministic: two QEMU sessions give the same ticks for the same
firmware and input.  With `make PROFILE=1` the per-layer ticks partition the run.

Measured here (arm-none-eabi-gcc 12.2 -O2, QEMU 7.2, mps2-an386), fixed random input:
  mini_dscnn: the same ticks in every run and session (502,193 ticks = 2,510,965 instructions with
  the portable kernels; ~95,000 ticks with the DSP kernels);
  the profile's 8 layers sum to the run's ticks minus 8 (the call's entry and exit, a timer reading);
  the profile hooks add 27 ticks (135 instructions, ~17 per layer) to the run: 0.005 %.
"""
from __future__ import annotations

import doctest
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgekit.run import emulate
from edgekit.build import firmware_elf, run_make
from edgekit.run.emulate import Emulator, tick_units
from edgekit.export import export
from edgekit.targets import get_target
from opmodels import op_model

pytestmark = pytest.mark.emulator

PROFILE_SUM_TOLERANCE = 16  # ticks: the run minus its layers' sum (observed 8: the call's entry/exit)
PROFILE_COST_PER_LAYER = 8  # ticks: a timer reading and a store per layer (observed 3-4)


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    """mini_dscnn exported for the Cortex-M4 (built on demand by the tests)."""
    root = tmp_path_factory.mktemp("timing")
    src = root / "mini_dscnn.tflite"
    src.write_bytes(op_model("mini_dscnn"))
    export(src, root / "out", get_target("cortex-m4"))
    return root / "out"


@pytest.fixture(scope="module")
def sample(mini) -> bytes:
    return np.random.default_rng(0).integers(-128, 128, 250, dtype=np.int8).tobytes()


def measure(elf: Path, x: bytes, runs: int = 5, warmup: int = 2, icount: bool = True):
    """One QEMU session: (info, per-run ticks, per-layer ticks or None, output bytes)."""
    with Emulator(elf, icount=icount) as emu:
        link = emu.link
        link.wait_banner()
        info = link.info()
        link.set_input(x)
        assert link.run(runs, warmup) == runs
        ticks = link.timings()
        layers = link.profile() if info.has_profile else None
        output = link.get_output()
        link.exit()
        assert emu.wait_exit(10) == 0
    return info, ticks, layers, output


def test_timings_are_deterministic_under_icount(mini, sample, qemu):
    elf = firmware_elf(mini)
    info, first, _, out1 = measure(elf, sample)
    _, second, _, out2 = measure(elf, sample)
    assert (info.timer_source, info.timer_hz, info.num_layers) == ("cmsdk-timer", 25_000_000, 8)
    assert len(first) == 5 and min(first) > 0
    assert first == second, "two icount sessions must count the same ticks"
    assert max(first) - min(first) <= 1  # runs of one session: the same instructions, +-1 tick of phase
    assert out1 == out2
    value, unit = tick_units(first[0], info.timer_source, info.timer_hz, instructions_per_tick=5)
    assert unit == "instructions" and value > 100_000   # a real inference, not a timer artefact


def test_profile_partitions_the_run_and_costs_little(mini, sample, qemu):
    _, plain, _, plain_out = measure(firmware_elf(mini), sample)
    info, ticks, layers, out = measure(firmware_elf(mini, profile=True), sample)
    assert info.has_profile and len(layers) == info.num_layers == 8 and min(layers) > 0
    # The hooks read the timer once per layer boundary: the layers' ticks add up to the run's,
    # except the call's entry and exit and one timer reading: observed 8 ticks (502,212 of 502,220).
    assert 0 <= ticks[-1] - sum(layers) <= PROFILE_SUM_TOLERANCE, (ticks[-1], layers)
    # What profiling costs: one timer reading and a store per layer (27 ticks for 8 layers).
    overhead = ticks[-1] - plain[-1]
    assert 0 < overhead <= PROFILE_COST_PER_LAYER * info.num_layers, (plain[-1], ticks[-1])
    assert out == plain_out  # profiling changes no output byte


def test_systick_source_extends_past_its_24_bit_wrap(mini, sample, qemu, tmp_path):
    # A copy of the export built to time with SysTick (24 bits: wraps every 2^24 ticks = 0.67 s
    # of virtual time); enough runs to cross a wrap at least once.
    out = tmp_path / "systick"
    shutil.copytree(mini, out, ignore=shutil.ignore_patterns("build"))
    run_make(out, None, variables={"EXTRA_CFLAGS": "-DBOARD_TIMER_PREFER=2"})
    _, reference, _, _ = measure(firmware_elf(mini), sample, runs=1, warmup=0)
    runs = (1 << 24) // reference[0] + 2
    info, ticks, _, _ = measure(out / "build" / "firmware.elf", sample, runs=runs, warmup=0)
    assert (info.timer_source, info.timer_hz) == ("systick", 25_000_000)
    assert sum(ticks) > 1 << 24
    # Each run is the TIMER0 count give or take the reading cost and one wrap interrupt.
    assert all(abs(t - reference[0]) <= 16 for t in ticks), (reference, sorted(set(ticks)))


def test_without_icount_the_timer_follows_the_wall_clock(mini, sample, qemu):
    with Emulator(firmware_elf(mini)) as emu:
        assert emu.instructions_per_tick is None
        link = emu.link
        link.wait_banner()
        link.set_input(sample)
        link.run(3)
        ticks = link.timings()
        info = link.info()
    assert min(ticks) > 0
    value, unit = tick_units(ticks[0], info.timer_source, info.timer_hz, emu.instructions_per_tick)
    assert unit == "ms" and 0 < value < 10_000


def test_tick_units_and_instructions_per_tick():
    assert doctest.testmod(emulate).failed == 0
    assert Emulator("fw.elf", icount=True).instructions_per_tick == 5
    assert Emulator("fw.elf", icount_shift=1).instructions_per_tick == 20
    assert Emulator("fw.elf").instructions_per_tick is None
    assert tick_units(100, "dwt", 480_000_000) == (100, "cycles")
    assert tick_units(100, "none", 0) == (100, "ticks")
    assert "-icount" in Emulator("fw.elf", icount=True).command(1234)
    assert "-no-reboot" in Emulator("fw.elf", reboot=False).command(1234)
