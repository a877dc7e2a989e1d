"""ctypes copies of the kernels' C parameter structs, read from the headers at test time.

    FcParams = c_struct("ek_fc.h", "ek_fc_params")       # firmware/kernels/ek_fc.h
    p = FcParams(rows=1, in_n=16, ..., double_round=1)

A hand-written ctypes copy drifts from the header silently (a field added to the C struct is
then never set by the test, and the C reads past the Python object); parsed from the header,
it cannot. test_cstructs.py holds every struct of firmware/kernels/*.h to C's own sizeof and
offsetof, compiled on the host.

What the kernels' headers use is understood: `typedef struct [tag] { ... } name;` with fields of
the fixed-width integer types, float/double, pointers (to anything: pointers to the integer
types become POINTER(c_intN_t), others c_void_p), arrays whose size is a number or a macro
#defined in the header or one it includes, several declarators per line, and fields whose type
is another such struct. Anything else raises ValueError naming the field.
"""
from __future__ import annotations

import ctypes
import functools
import re
from pathlib import Path

KERNELS = Path(__file__).resolve().parents[1] / "firmware" / "kernels"

_SCALARS = {
    "int8_t": ctypes.c_int8, "uint8_t": ctypes.c_uint8, "int16_t": ctypes.c_int16,
    "uint16_t": ctypes.c_uint16, "int32_t": ctypes.c_int32, "uint32_t": ctypes.c_uint32,
    "int64_t": ctypes.c_int64, "uint64_t": ctypes.c_uint64, "float": ctypes.c_float,
    "double": ctypes.c_double, "char": ctypes.c_char, "int": ctypes.c_int, "size_t": ctypes.c_size_t,
}
_TYPEDEF = re.compile(r"typedef\s+struct\s*\w*\s*\{(?P<body>[^{}]*)\}\s*(?P<name>\w+)\s*;")
_DEFINE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+(\w+)[ \t]+(\S+)", re.M)
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"', re.M)
_DECLARATOR = re.compile(r"^(?P<stars>\**)\s*(?P<name>\w+)\s*(?P<dims>(?:\[[^\]]*\]\s*)*)$")


def _strip_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", " ", text, flags=re.S))


@functools.cache
def _header(path: Path) -> tuple[dict[str, tuple[str, Path]], dict[str, str]]:
    """(struct name -> (body, the header defining it), macro -> value) of a header and of every
    header it includes."""
    text = _strip_comments(path.read_text())
    structs, macros = {}, {}
    for inc in _INCLUDE.findall(text):
        if (path.parent / inc).is_file():
            s, m = _header((path.parent / inc).resolve())
            structs.update(s)
            macros.update(m)
    macros.update(dict(_DEFINE.findall(text)))
    structs.update({m["name"]: (m["body"], path) for m in _TYPEDEF.finditer(text)})
    return structs, macros


def struct_names(header: str | Path) -> list[str]:
    """The typedef'd structs a header itself defines, in order."""
    path = KERNELS / header if not Path(header).is_absolute() else Path(header)
    return [m["name"] for m in _TYPEDEF.finditer(_strip_comments(path.read_text()))]


def _size(expr: str, macros: dict[str, str], where: str) -> int:
    """An array size: an integer expression of numbers, + - * / ( ) and macros defined as such."""
    for _ in range(20):
        names = set(re.findall(r"[A-Za-z_]\w*", expr))
        if not names:
            break
        unknown = names - set(macros)
        if unknown:
            raise ValueError(f"{where}: array size {expr!r}: {sorted(unknown)} not #defined")
        expr = re.sub(r"[A-Za-z_]\w*", lambda m: f"({macros[m[0]]})", expr)
    expr = re.sub(r"(\d+)[uUlL]+", r"\1", expr)
    if not re.fullmatch(r"[\d\s+\-*/()]+", expr):
        raise ValueError(f"{where}: array size {expr!r} is not an integer expression")
    return int(eval(expr.replace("/", "//"), {"__builtins__": {}}))   # digits and operators only


def c_struct(header: str | Path, name: str) -> type[ctypes.Structure]:
    """The ctypes.Structure of `typedef struct {...} name;` in `header` (a path, or a file name
    in firmware/kernels)."""
    path = KERNELS / header if not Path(header).is_absolute() else Path(header)
    return _struct(path.resolve(), name)


@functools.cache
def _struct(path: Path, name: str) -> type[ctypes.Structure]:
    structs, macros = _header(path)
    if name not in structs:
        raise ValueError(f"{path.name} defines no `typedef struct {{...}} {name};`")
    body, home = structs[name]
    if home != path:                          # one class per struct, from the header defining it
        return _struct(home, name)
    fields = []
    for decl in body.split(";"):
        decl = " ".join(decl.split())
        if not decl:
            continue
        where = f"{path.name}: {name}: `{decl};`"
        m = re.match(r"^(?:const\s+|volatile\s+)*(?P<type>(?:unsigned\s+|signed\s+)?\w+)\s*(?:const\s+)?(?P<rest>.*)$",
                     decl)
        if not m:
            raise ValueError(f"{where}: not understood")
        base_name = m["type"]
        for item in m["rest"].split(","):
            d = _DECLARATOR.match(item.strip().replace("const ", ""))
            if not d:
                raise ValueError(f"{where}: declarator {item.strip()!r} not understood")
            if d["stars"]:
                base = _SCALARS.get(base_name)
                ctype = ctypes.POINTER(base) if base is not None and len(d["stars"]) == 1 else ctypes.c_void_p
            elif base_name in _SCALARS:
                ctype = _SCALARS[base_name]
            elif base_name in structs:
                ctype = _struct(structs[base_name][1], base_name)
            else:
                raise ValueError(f"{where}: unknown type {base_name!r}")
            for dim in reversed(re.findall(r"\[([^\]]*)\]", d["dims"])):
                ctype = ctype * _size(dim.strip(), macros, where)
            fields.append((d["name"], ctype))
    return type(name, (ctypes.Structure,), {"_fields_": fields, "__module__": __name__})
