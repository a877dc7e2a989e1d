"""Emission: render a Program into C source with the Jinja templates in templates/.

Templates only loop and substitute; everything here is computed in Python first. Names from the
model file are untrusted: they reach C only through c_comment() and c_string_name(), which keep a
small safe character set, so no model can inject code into the generated sources.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import jinja2
import numpy as np

from edgekit.ir import short_name
from edgekit.resources import resource_dir  # noqa: F401  (re-exported: export, tests)
from edgekit.lower.base import ArrayArg, ArrayRef, KernelCall, ScratchArg, TensorArg, TensorListArg
from edgekit.lower.program import Program


def environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(resource_dir("templates"))),
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True, autoescape=False)


_UNSAFE_COMMENT = re.compile(r"[^A-Za-z0-9_./:+\- ]")


def c_comment(text: str, limit: int = 80) -> str:
    """Text safe inside a /* */ comment: only [A-Za-z0-9_./:+- ], no '*/', bounded length."""
    safe = _UNSAFE_COMMENT.sub("_", text)[:limit]
    return safe.replace("*/", "*_")


def c_string_name(text: str, limit: int = 48) -> str:
    """A model name safe inside a C string literal and a file name: [A-Za-z0-9_-] only."""
    safe = re.sub(r"[^A-Za-z0-9_\-]", "_", text)[:limit].strip("_")
    return safe or "model"


def c_array_body(values: np.ndarray, ctype: str) -> str:
    per_line = 16 if ctype == "int8_t" else 8
    flat = [str(int(v)) for v in np.asarray(values).reshape(-1)]
    lines = ["    " + ", ".join(flat[i:i + per_line]) + "," for i in range(0, len(flat), per_line)]
    return "\n".join(lines)


def c_float(value: float) -> str:
    return repr(float(np.float32(value)))


@dataclass
class _Layer:
    index: int
    comment: str
    kernel: str
    params_type: str
    params_name: str
    fields: list[dict]
    arrays: list[dict]
    args: list[str]
    locals: list[str]
    output: str             # the output tensor (pointer, tensor index, bytes) for the EK_TRACE hook
    output_tensor: int
    output_bytes: int
    boot: list[dict]        # arrays decoded by ek_model_init(): cname and the ek_wcode fields


def weights_hash(program: Program) -> str:
    h = hashlib.sha256()
    for step in program.steps:
        for a in step.call.arrays:
            h.update(a.name.encode())
            h.update(np.ascontiguousarray(a.values).tobytes())
    return h.hexdigest()[:16]


def _pointer(program: Program, index: int) -> str:
    place = program.places[index]
    if place.kind == "arena" or place.offset > 0:
        return f"{place.kind} + {place.offset}"
    return place.kind   # 'input', or 'output' for the first output


def _field_value(value, prefix: str) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, ArrayRef):
        return f"{prefix}_{value.name}"
    if isinstance(value, (list, tuple)):
        return "{" + ", ".join(str(int(v)) for v in value) + "}"
    return str(int(value))


def _layer(program: Program, i: int) -> _Layer:
    step = program.steps[i]
    call: KernelCall = step.call
    prefix = f"ek_l{i}"
    arrays, boot = [], []
    for a in call.arrays:
        cname = f"{prefix}_{a.name}"
        if a.boot_code is None:
            arrays.append(dict(ctype=a.ctype, cname=cname, length=int(a.values.size),
                               body=c_array_body(a.values, a.ctype), ram=False))
            continue
        # Decoded at boot (edgekit.lower.program.decode_at_boot): the Huffman code in flash, the array
        # in RAM, and ek_model_init() decoding one into the other.
        for sub in a.boot_code.arrays:
            arrays.append(dict(ctype=sub.ctype, cname=f"{cname}_{sub.name}", length=int(sub.values.size),
                               body=c_array_body(sub.values, sub.ctype), ram=False))
        arrays.append(dict(ctype=a.ctype, cname=cname, length=int(a.values.size), body="", ram=True))
        boot.append(dict(cname=cname, fields=[dict(name=k, value=_field_value(v, cname))
                                              for k, v in a.boot_code.fields.items()]))
    args, locals_ = [], []
    for arg in call.args:
        if isinstance(arg, TensorArg):
            args.append(_pointer(program, arg.index))
        elif isinstance(arg, TensorListArg):
            name = f"{prefix}_inputs"
            ptrs = ", ".join(_pointer(program, t) for t in arg.indices)
            locals_.append(f"const int8_t *const {name}[{len(arg.indices)}] = {{{ptrs}}};")
            args.append(name)
        elif isinstance(arg, ArrayArg):
            args.append(f"{prefix}_{arg.name}" if arg.name else "NULL")
        elif isinstance(arg, ScratchArg):
            # The step's scratch buffer (planner id -1 - i), or NULL when it asked for none.
            place = program.places.get(-1 - i)
            args.append(f"arena + {place.offset}" if place is not None else "NULL")
    g = program.graph
    in_shapes = " + ".join("x".join(map(str, g.t(t).shape[1:] or g.t(t).shape))
                           for t in step.op.inputs[:1] if t >= 0)
    out_shape = "x".join(map(str, g.t(step.op.outputs[0]).shape[1:]))
    # Only the op kind and name come from the file; the shapes and the arrow are edgekit's own.
    comment = (f"{c_comment(step.op.kind, 40)} {c_comment(short_name(step.op.name, 50), 60)} "
               f"{in_shapes} -> {out_shape}")
    fields = [dict(name=k, value=_field_value(v, prefix)) for k, v in call.params.items()]
    out_t = call.args[call.output_arg].index
    return _Layer(index=i, comment=comment, kernel=call.kernel, params_type=call.params_type,
                  params_name=f"{prefix}_params", fields=fields, arrays=arrays, args=args, locals=locals_,
                  boot=boot,
                  output=_pointer(program, out_t), output_tensor=out_t, output_bytes=g.t(out_t).nbytes)


# The decoder ek_model_init() runs for arrays decoded at boot (edgekit.lower.program.decode_at_boot).
BOOT_DECODE = ("ek_wdecode.h", "ek_huff_decode_s8.c")


def _boots(program: Program) -> bool:
    return any(a.boot_code is not None for s in program.steps for a in s.call.arrays)


def output_name(tensor) -> str:
    """An output's name for reports and comments: short, in a safe character set."""
    return c_comment(short_name(tensor.name, 48), 60)


def output_layout(program: Program) -> list[dict]:
    """Every model output as the caller's output buffer holds it, in the model's output order:
    name, shape, quantization, and its bytes at `offset` (outputs back to back)."""
    layout = []
    ready = program.output_ready()
    for k, (t, offset) in enumerate(zip(program.outputs, program.output_offsets)):
        scale, zero_point = t.qparams()
        layout.append(dict(index=k, name=output_name(t), shape=[int(d) for d in t.shape], scale=scale,
                           zero_point=zero_point, offset=offset, size=t.nbytes, last_layer=ready[k]))
    return layout


def _output_defines(o: dict) -> list[tuple[str, str]]:
    """model.h's EK_MODEL_OUTPUT<k>_* (name, value) of one output_layout() entry."""
    prefix, dims = f"EK_MODEL_OUTPUT{o['index']}", o["shape"] or [1]
    return [(f"{prefix}_OFFSET", str(o["offset"])), (f"{prefix}_SIZE", str(o["size"])),
            (f"{prefix}_RANK", str(len(dims))), (f"{prefix}_DIMS", "{ " + ", ".join(map(str, dims)) + " }"),
            (f"{prefix}_SCALE", c_float(o["scale"]) + "f"), (f"{prefix}_ZERO_POINT", f"({o['zero_point']})"),
            (f"{prefix}_LAST_LAYER", f"({o['last_layer']})")]


def _budget_context(program: Program, layers: list[_Layer], budget: dict) -> dict:
    """model.c/model.h's early-exit parts: the exit schedule's runs of layers as functions, the
    calibrated level table (report.json "budget", edgekit.budget)."""
    from edgekit.budget import format_shares, threshold_words
    runs, stages = [], []
    offsets = program.output_offsets
    for k, st in enumerate(program.exits.stages):
        names = {}
        for part, (first, last) in (("backbone", st.backbone), ("head", st.head)):
            if first > last:
                names[part] = ""
                continue
            names[part] = f"ek_exit{k}_{part}"
            runs.append(dict(name=names[part], layers=layers[first:last + 1],
                             comment=f"exit {k}, {part}: layers {first} to {last}"))
        stages.append(dict(exit=k, output=st.output, offset=offsets[st.output], **names))

    levels = []
    for lv in budget["levels"]:
        hist = format_shares(lv["exits"], ", ")
        instr = (f", ~{lv['mean_instructions']:,.0f} instructions" if lv.get("mean_instructions") is not None else "")
        levels.append(dict(level=lv["level"], text=f"accuracy {100 * lv['accuracy']:.2f}%, mean MACs "
                           f"{lv['mean_macs']:,.0f}{instr}, exits taken {hist}"))
    table = ", ".join("{ " + ", ".join(threshold_words(lv["thresholds"], "EK_EXIT_NEVER", "EK_EXIT_ALWAYS")) + " }"
                      for lv in budget["levels"])
    rule_text = dict(margin="top-1 minus top-2 score", max="the top-1 score")[budget["rule"]]
    return dict(runs=runs, stages=stages, levels=levels, table=table, rule=budget["rule"], rule_text=rule_text,
                offsets=[offsets[st.output] for st in program.exits.stages], outputs=program.exits.outputs,
                classes=program.exits.classes, battery_mv=budget["battery_mv"],
                calibrated_on=c_comment(budget["calibrated_on"], 60))


def render_model(program: Program, target_name: str, model_name: str, version: str,
                 budget: dict | None = None) -> dict[str, str]:
    """Return {'model.h': text, 'model.c': text}; `budget`: report.json's "budget" (a model
    lowered with exits and calibrated, edgekit.budget)."""
    env = environment()
    inp, out = program.input, program.outputs[0]
    (in_scale, in_zp), (out_scale, out_zp) = inp.qparams(), out.qparams()
    layers = [_layer(program, i) for i in range(len(program.steps))]
    headers = sorted({s.call.header for s in program.steps} | ({BOOT_DECODE[0]} if _boots(program) else set()))
    uses_input = any("input" in a for layer in layers for a in layer.args + layer.locals)
    outputs = [dict(o, shape="x".join(map(str, o["shape"])), defines=_output_defines(o))
               for o in output_layout(program)]
    ctx = dict(
        model_name=c_string_name(model_name), version=version, target=target_name,
        weights_hash=weights_hash(program),
        input_shape="x".join(map(str, inp.shape)), input_size=inp.size, input_scale=c_float(in_scale),
        input_zero_point=in_zp,
        output_shape="x".join(map(str, out.shape)), output_size=program.output_size,
        output_scale=c_float(out_scale), output_zero_point=out_zp,
        input_rank=len(inp.shape or (1,)), input_dims=", ".join(map(str, inp.shape or (1,))),
        output_rank=len(out.shape or (1,)), output_dims=", ".join(map(str, out.shape or (1,))),
        outputs=outputs,
        arena_size=program.plan.arena_size, num_layers=len(layers), layers=layers, headers=headers,
        total_macs=sum(s.call.macs for s in program.steps),
        weight_bytes=sum(s.call.weight_bytes for s in program.steps), uses_input=uses_input,
        budget=_budget_context(program, layers, budget) if budget else None,
    )
    return {"model.h": env.get_template("model.h.j2").render(ctx),
            "model.c": env.get_template("model.c.j2").render(ctx)}


def kernel_sources(program: Program) -> list[str]:
    """The kernel files (headers and sources) the program needs, from firmware/kernels."""
    kdir = resource_dir("firmware") / "kernels"
    names = {"ek_common.h"} | (set(BOOT_DECODE) if _boots(program) else set())
    for s in program.steps:
        names.add(s.call.header)
        names.update(s.call.sources)
    # Headers that kernel files include (e.g. ek_fixedpoint.h) come along, transitively.
    todo = list(names)
    while todo:
        path = kdir / todo.pop()
        for inc in re.findall(r'#include "([A-Za-z0-9_]+\.h)"', path.read_text()):
            if inc not in names:
                names.add(inc)
                todo.append(inc)
    return sorted(names)
