"""tests/cstructs.py reads the kernels' parameter structs from their headers: every typedef'd
struct of firmware/kernels/*.h has, as ctypes sees it, the size, field offsets and field sizes
the host C compiler gives it; and no test keeps a hand-written copy of one."""
from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cstructs import KERNELS, c_struct, struct_names

HEADERS = sorted(p.name for p in KERNELS.glob("*.h"))
STRUCTS = [(h, s) for h in HEADERS for s in struct_names(h)]


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory) -> dict[str, int]:
    """'struct' -> sizeof, 'struct.field' -> offsetof, 'struct.field#size' -> sizeof the field,
    printed by a host C program that includes every kernel header."""
    if shutil.which("cc") is None:
        pytest.skip("no host C compiler (cc)")
    lines = [f'#include "{h}"' for h in HEADERS] + ["#include <stddef.h>", "#include <stdio.h>",
                                                     "int main(void)", "{"]
    for header, name in STRUCTS:
        lines.append(f'    printf("{name} %zu\\n", sizeof({name}));')
        for field, _ in c_struct(header, name)._fields_:
            lines.append(f'    printf("{name}.{field} %zu\\n", offsetof({name}, {field}));')
            lines.append(f'    printf("{name}.{field}#size %zu\\n", sizeof((({name} *)0)->{field}));')
    lines += ["    return 0;", "}"]
    tmp = tmp_path_factory.mktemp("cstructs")
    (tmp / "layout.c").write_text("\n".join(lines) + "\n")
    build = subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-Wno-unused-function",
                            f"-I{KERNELS}", str(tmp / "layout.c"), "-o", str(tmp / "layout")],
                           capture_output=True, text=True)
    assert build.returncode == 0, f"the layout program does not compile:\n{build.stderr[-3000:]}"
    out = subprocess.run([str(tmp / "layout")], capture_output=True, text=True, check=True).stdout
    return {k: int(v) for k, v in (line.split() for line in out.splitlines())}


def test_every_header_struct_is_found():
    names = [s for _, s in STRUCTS]
    assert {"ek_conv2d_params", "ek_fc_params", "ek_dwconv_params", "ek_pool_params", "ek_softmax_params",
            "ek_lut_params", "ek_mean_params", "ek_fc_wc_params"} <= set(names)
    assert len(names) == len(set(names))


@pytest.mark.parametrize("header, name", STRUCTS)
def test_layout_equals_c(c_layout, header, name):
    cls = c_struct(header, name)
    assert ctypes.sizeof(cls) == c_layout[name], f"sizeof({name})"
    for field, ctype in cls._fields_:
        assert getattr(cls, field).offset == c_layout[f"{name}.{field}"], f"offsetof({name}, {field})"
        assert ctypes.sizeof(ctype) == c_layout[f"{name}.{field}#size"], f"sizeof({name}.{field})"


def test_fc_params_has_double_round():
    """The field a hand-written copy once lacked (its fuzz test then only ever rounded once)."""
    fields = [f for f, _ in c_struct("ek_fc.h", "ek_fc_params")._fields_]
    assert fields[-2:] == ["per_tensor", "double_round"]


def test_nested_structs_are_the_same_class():
    wc = dict(c_struct("ek_wcode.h", "ek_fc_wc_params")._fields_)
    assert wc["fc"] is c_struct("ek_fc.h", "ek_fc_params")


def test_unknown_things_are_refused(tmp_path):
    h = tmp_path / "x.h"
    h.write_text("typedef struct { int32_t a; mystery_t b; } x_params;\n"
                 "typedef struct { int32_t v[N_UNDEFINED]; } y_params;\n")
    with pytest.raises(ValueError, match="unknown type 'mystery_t'"):
        c_struct(h, "x_params")
    with pytest.raises(ValueError, match="N_UNDEFINED"):
        c_struct(h, "y_params")
    with pytest.raises(ValueError, match="defines no"):
        c_struct(h, "z_params")


def test_no_test_writes_its_own_copy_of_a_kernel_struct():
    copies = [f"{p.name}: {m}" for p in Path(__file__).parent.glob("*.py")
              for m in re.findall(r"^class\s+(\w+)\s*\(\s*ctypes\.Structure\s*\)", p.read_text(), re.M)]
    assert not copies, f"hand-written ctypes structs (use cstructs.c_struct): {copies}"
