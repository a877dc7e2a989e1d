"""Building an export directory with make, and finding the tools it needs."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from edgekit.errors import EdgekitError, ToolMissingError

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


def obj_cache_dir() -> Path | None:
    """Where compiled kernel objects are cached (edgekit/build/objcache.py): $EDGEKIT_OBJ_CACHE, or
    $XDG_CACHE_HOME/edgekit/objs (~/.cache/edgekit/objs); None if EDGEKIT_OBJ_CACHE is empty,
    0 or off."""
    env = os.environ.get("EDGEKIT_OBJ_CACHE")
    if env is not None:
        return None if env.strip().lower() in ("", "0", "off", "no", "false") else Path(env).expanduser().absolute()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edgekit" / "objs"


def _cached_compilers(variables: dict[str, str]) -> dict[str, str]:
    """make variables that put the generated Makefile's compilers (HOSTCC, ARM_CC) behind the
    object cache; nothing when the cache is off or the caller sets them itself. A plain
    `make -C out` compiles as before."""
    cache = obj_cache_dir()
    if cache is None or not sys.executable:
        return {}
    script = Path(__file__).with_name("objcache.py")
    wrapper = " ".join(shlex.quote(str(a)).replace("$", "$$")
                       for a in (sys.executable, "-I", "-S", script, "--cache", cache, "--"))
    out = {}
    if "HOSTCC" not in variables:
        out["HOSTCC"] = f"{wrapper} {os.environ.get('HOSTCC') or 'cc'}"
    if "ARM_CC" not in variables:
        out["ARM_CC"] = f"{wrapper} $(ARM_PREFIX)gcc"     # make expands ARM_PREFIX (default or set)
    return out


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
    variables = dict(variables or {})
    variables.update(_cached_compilers(variables))
    cmd += [f"{name}={value}" for name, value in variables.items()]
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
