"""Targets described by data: CPU flags, memory sizes, DSP extension, emulator board.

Flash and RAM sizes are those of a typical part of each class (the MLPerf Tiny reference board
for cortex-m4); `--flash` / `--ram` override them for a specific part.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from edgekit.errors import EdgekitError


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    arch_flags: tuple[str, ...]      # compiler flags selecting CPU, FPU and float ABI
    flash_bytes: int
    ram_bytes: int
    has_dsp: bool                    # Armv7E-M DSP extension (SIMD MACs)
    qemu_machine: str | None         # QEMU board that emulates this CPU, if any
    board: str | None                # firmware/boards/<board> support package
    stack_bytes: int = 4096

    @property
    def is_host(self) -> bool:
        return self.name == "host"

    @property
    def can_emulate(self) -> bool:
        return self.qemu_machine is not None


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("cortex-m4", "Cortex-M4F, e.g. STM32L4R5 (NUCLEO-L4R5ZI): 2 MB flash, 640 KB RAM; "
           "emulated by QEMU mps2-an386",
           ("-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"),
           2 * 1024 * 1024, 640 * 1024, True, "mps2-an386", "mps2"),
    Target("cortex-m7", "Cortex-M7F, e.g. STM32H743: 2 MB flash, 1 MB RAM; emulated by QEMU mps2-an500",
           ("-mcpu=cortex-m7", "-mthumb", "-mfpu=fpv5-d16", "-mfloat-abi=hard"),
           2 * 1024 * 1024, 1024 * 1024, True, "mps2-an500", "mps2"),
    Target("cortex-m3", "Cortex-M3 (no DSP, no FPU), e.g. STM32F207: 1 MB flash, 128 KB RAM; "
           "emulated by QEMU mps2-an385",
           ("-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft"),
           1024 * 1024, 128 * 1024, False, "mps2-an385", "mps2"),
    Target("cortex-m0plus", "Cortex-M0+ (no DSP, no FPU), e.g. STM32G0B1: 512 KB flash, 144 KB RAM; "
           "no emulator board (build only)",
           ("-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"),
           512 * 1024, 144 * 1024, False, None, "mps2"),
    Target("host", "this computer (gcc): for checking the generated C against the reference",
           (), 1 << 40, 1 << 40, False, None, None),
)}

DEFAULT_TARGET = "cortex-m4"


def get_target(name: str, flash: int | None = None, ram: int | None = None,
               portable: bool = False) -> Target:
    """A target by name; flash/ram override its sizes; portable=True keeps the portable C kernels
    even where the core has the DSP extension (for comparison and debugging)."""
    if name not in TARGETS:
        raise EdgekitError(f"unknown target '{name}'; choose one of: {', '.join(TARGETS)}")
    t = TARGETS[name]
    if portable:
        t = replace(t, has_dsp=False)
    if flash is not None:
        t = replace(t, flash_bytes=int(flash))
    if ram is not None:
        t = replace(t, ram_bytes=int(ram))
    return t


def parse_size(text: str) -> int:
    """'512K', '2M', '65536' -> bytes."""
    s = text.strip().upper().removesuffix("B")
    mult = 1
    if s.endswith("K"):
        mult, s = 1024, s[:-1]
    elif s.endswith("M"):
        mult, s = 1024 * 1024, s[:-1]
    try:
        value = int(s) * mult
    except ValueError:
        raise EdgekitError(f"'{text}' is not a size: write bytes like 65536, 64K or 2M") from None
    if value <= 0:
        raise EdgekitError(f"'{text}' is not a positive size")
    return value
