"""Numbers C and Python share are written once.

- Kernel limits, buffer sizes and format constants: Python reads them from the kernel headers
  (edgekit.cdefs); every Python module constant that names an EK_ macro must be read that way,
  never restated as a literal.
- The serial protocol (edgekit/run/link.py against firmware/device_main.c and the boards' timer.h):
  the firmware is C on a board and the host side must not read C at run time, so each shared
  number is checked equal here, parsed from the C.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from edgekit import cdefs

from edgekit.run import link
from edgekit.resources import resource_dir

REPO = Path(__file__).resolve().parents[1]
FIRMWARE = resource_dir("firmware")


def c_defines(path: Path) -> dict[str, int]:
    text = path.read_text()
    out = {}
    for name, value in re.findall(r"^#define\s+(\w+)\s+\(?(-?(?:0x[0-9A-Fa-f]+|\d+))[uU]?\)?", text, re.M):
        out[name] = int(value, 0)
    return out


def c_enum_values(path: Path) -> dict[str, int]:
    out = {}
    for body in re.findall(r"enum\s*\{(.*?)\};", path.read_text(), re.S):
        body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
        for name, value in re.findall(r"(\w+)\s*=\s*(0x[0-9A-Fa-f]+|\d+)", body):
            out[name] = int(value, 0)
    return out


def test_kernel_constants_are_read_from_the_headers():
    values = cdefs.defines()
    assert values["EK_CONV2D_DSP_MAX_PATCH"] == 1024 and values["EK_FOLD_SHIFT_MIN"] == -23
    with pytest.raises(KeyError, match="EK_NO_SUCH"):
        cdefs.define("EK_NO_SUCH")


def _literal_constants(path: Path):
    """(name, line, comment text around it) of every module-level NAME = <int or tuple of ints>."""
    lines = path.read_text().splitlines()
    for node in ast.parse(path.read_text()).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        try:
            value = ast.literal_eval(node.value)
        except ValueError:
            continue            # computed (e.g. read with cdefs.define): fine
        ints = value if isinstance(value, tuple) else (value,)
        if ints and all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
            around = " ".join(lines[max(0, node.lineno - 3):node.end_lineno])
            yield node.targets[0].id, node.lineno, around


def test_no_python_constant_restates_a_kernel_define():
    """A module constant whose comment names a kernel #define must be read with cdefs.define."""
    kernel_macros = set(cdefs.defines())
    offenders = []
    for path in sorted((REPO / "edgekit").rglob("*.py")):
        for name, line, around in _literal_constants(path):
            named = set(re.findall(r"\bEK_[A-Z0-9_]+\b", around)) & kernel_macros
            if named:
                offenders.append(f"{path.relative_to(REPO)}:{line} {name} restates {sorted(named)}")
    assert not offenders, "\n".join(offenders)


def test_protocol_numbers_match_the_firmware():
    main = FIRMWARE / "device_main.c"
    defines, enums = c_defines(main), c_enum_values(main)
    assert link.PROTOCOL_VERSION == defines["EK_PROTOCOL_VERSION"]
    assert link.SYNC == bytes([defines["EK_SYNC0"], defines["EK_SYNC1"]])
    assert link.HEADER_SIZE == defines["EK_HEADER_SIZE"]
    assert link.MAX_PAYLOAD == defines["EK_MAX_PAYLOAD"]
    assert link.REPLY_FLAG == defines["EK_REPLY_FLAG"]
    assert link.TICKS_PER_FRAME == defines["EK_MAX_PAYLOAD"] // 4
    assert link.ERROR_TYPE == enums["EK_MSG_ERROR"]
    commands = {k[len("EK_CMD_"):]: v for k, v in enums.items() if k.startswith("EK_CMD_")}
    assert {c.name: c.value for c in link.Command} == commands
    errors = {k[len("EK_ERR_"):]: v for k, v in enums.items() if k.startswith("EK_ERR_")}
    assert {e.name: e.value for e in link.ErrorCode} == errors
    for board in sorted((FIRMWARE / "boards").iterdir()):
        timers = {k[len("TIMER_"):].lower(): v for k, v in c_defines(board / "timer.h").items()
                  if k.startswith("TIMER_") and k != "TIMER_H"}
        names = {"dwt": "dwt", "systick": "systick", "cmsdk": "cmsdk-timer", "none": "none"}
        assert {names[k]: v for k, v in timers.items()} == {v: k for k, v in link.TIMER_SOURCES.items()}, board
