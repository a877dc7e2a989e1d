"""Numbers that C and Python share, read from the kernel headers: the one place they are written.

A Python module that needs a kernel limit, a buffer size or a format constant asks for its
`#define` by name (`define("EK_CONV2D_DSP_MAX_PATCH")`) instead of restating the number; a name
that is missing or not a plain integer is an error at import, so the two cannot drift apart.
"""
from __future__ import annotations

import re
from functools import cache

from edgekit.resources import resource_dir

_DEFINE = re.compile(r"^#define\s+(EK_[A-Z0-9_]+)\s+\(?\s*(-?(?:0x[0-9A-Fa-f]+|\d+))[uU]?\s*\)?\s*(?:/\*.*)?$", re.M)


@cache
def defines() -> dict[str, int]:
    """Every plain integer `#define EK_...` of firmware/kernels (headers and sources)."""
    out: dict[str, int] = {}
    kdir = resource_dir("firmware") / "kernels"
    for path in sorted(kdir.glob("*.[ch]")):
        for name, value in _DEFINE.findall(path.read_text()):
            out[name] = int(value, 0)
    return out


def define(name: str) -> int:
    """The value of `#define name` in the kernel headers."""
    try:
        return defines()[name]
    except KeyError:
        raise KeyError(f"{name} is not a plain integer #define in firmware/kernels") from None
