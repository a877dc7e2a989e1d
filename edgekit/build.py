"""Building an export directory with make, and finding the tools it needs."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from .errors import EdgekitError, ToolMissingError

_PACKAGES = {
    "arm-none-eabi-gcc": "gcc-arm-none-eabi libnewlib-arm-none-eabi",
    "arm-none-eabi-size": "binutils-arm-none-eabi",
    "qemu-system-arm": "qemu-system-arm",
    "make": "make",
    "cc": "gcc",
}


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pkg = _PACKAGES.get(name, name)
        raise ToolMissingError(f"{name} is not installed: install it with `sudo apt-get install {pkg}`")
    return path


def run_make(out_dir: Path, goal: str | None = None, sanitize: bool = False, quiet: bool = True,
             variables: dict[str, str] | None = None) -> None:
    require_tool("make")
    out_dir = Path(out_dir)
    if not (out_dir / "Makefile").exists():
        raise EdgekitError(f"{out_dir} has no Makefile: is it an `edgekit export` directory?")
    if goal == "host":
        require_tool("cc")
    elif not (out_dir / "link.ld").exists() and goal is None:
        require_tool("cc")
    else:
        require_tool("arm-none-eabi-gcc")
    cmd = ["make", "-C", str(out_dir), "--no-print-directory"]
    if sanitize:
        cmd.append("SANITIZE=1")
    cmd += [f"{name}={value}" for name, value in (variables or {}).items()]
    if goal:
        cmd.append(goal)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        overflow = re.search(r"region [`'](\w+)' overflowed by (\d+) bytes", proc.stderr)
        if overflow:
            raise EdgekitError(f"the firmware does not fit: {overflow.group(1)} overflowed by "
                               f"{overflow.group(2)} bytes; use a smaller model or a bigger part "
                               "(--flash / --ram)")
        raise EdgekitError(f"building {out_dir} failed (make {goal or 'all'}):\n{tail}")
    if not quiet:
        print(proc.stdout, end="")


def host_binary(out_dir: Path, sanitize: bool = False) -> Path:
    run_make(out_dir, "host", sanitize=sanitize)
    return Path(out_dir) / "build" / ("host-sanitize" if sanitize else "host") / "model_host"


def firmware_elf(out_dir: Path, profile: bool = False, protocol: str = "edgekit") -> Path:
    """Build the firmware (make [PROFILE=1] [PROTOCOL=mlperf-tiny]) and return its ELF.

    Each option combination has its own directory (templates/Makefile.j2): build/,
    build/profile/, build/mlperf-tiny/, build/mlperf-tiny-profile/.
    """
    if protocol not in ("edgekit", "mlperf-tiny"):
        raise EdgekitError(f"protocol must be 'edgekit' or 'mlperf-tiny', not {protocol!r}")
    run_make(out_dir, None, variables={"PROFILE": "1" if profile else "0", "PROTOCOL": protocol})
    sub = {("edgekit", False): "", ("edgekit", True): "profile",
           ("mlperf-tiny", False): "mlperf-tiny", ("mlperf-tiny", True): "mlperf-tiny-profile"}[protocol, profile]
    return Path(out_dir) / "build" / sub / "firmware.elf" if sub else Path(out_dir) / "build" / "firmware.elf"


def firmware_size(elf: Path) -> dict[str, int]:
    """text/data/bss of an ELF; flash = text + data, static RAM = data + bss."""
    require_tool("arm-none-eabi-size")
    proc = subprocess.run(["arm-none-eabi-size", "-B", str(elf)], capture_output=True, text=True, check=True)
    text, data, bss = (int(v) for v in proc.stdout.splitlines()[1].split()[:3])
    return dict(text=text, data=data, bss=bss, flash_bytes=text + data, ram_bytes=data + bss)
