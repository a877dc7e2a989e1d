"""The export report: per-layer op, shapes, MACs, weight and activation bytes, and totals."""
from __future__ import annotations

from edgekit.emit.codegen import output_layout
from edgekit.ir import short_name
from edgekit.lower.program import Program
from edgekit.targets import Target

# Rough code-size figures for the flash estimate made before compiling (the linker script
# enforces the real limits and `arm-none-eabi-size` reports the real figure after `make`).
CODE_BASE_BYTES = 8 * 1024        # startup, UART, serial protocol, libgcc helpers
CODE_PER_KERNEL_BYTES = 1024
FIRMWARE_RAM_BYTES = 7 * 1024     # serial frame buffers, the per-run timings array, globals


def _shape(t) -> list[int]:
    return [int(d) for d in t.shape]


def build_report(program: Program, target: Target, model_name: str, source: str, version: str,
                 weights_hash: str = "") -> dict:
    g = program.graph
    layers = []
    for i, step in enumerate(program.steps):
        op, call = step.op, step.call
        layers.append(dict(
            index=i, op=op.kind, name=short_name(op.name), kernel=call.kernel,
            inputs=[_shape(g.t(t)) for t in op.inputs if t >= 0 and not g.t(t).is_const],
            output=_shape(g.t(op.outputs[0])), macs=int(call.macs), weight_bytes=int(call.weight_bytes),
            activation_bytes=int(g.t(op.outputs[0]).nbytes),
        ))
        if op.notes.weights is not None:      # edgekit.passes.weights's choice for conv/FC/depthwise layers
            layers[-1]["weights"] = op.notes.weights.as_report()
    kernels = sorted({s.call.kernel for s in program.steps})
    weight_bytes = sum(l["weight_bytes"] for l in layers)
    io_bytes = program.input.nbytes + program.output_size
    arena = program.plan.arena_size
    flash_est = weight_bytes + CODE_BASE_BYTES + CODE_PER_KERNEL_BYTES * len(kernels)
    boot_ram = sum(s.call.boot_ram_bytes for s in program.steps)    # --huffman-decode boot
    ram_est = arena + io_bytes + boot_ram + target.stack_bytes + FIRMWARE_RAM_BYTES
    in_scale, in_zp = program.input.qparams()
    outputs = _outputs(program)
    return dict(
        edgekit=version, model=model_name, source=source, target=target.name, weights_hash=weights_hash,
        input=dict(shape=_shape(program.input), dtype="int8", scale=in_scale, zero_point=in_zp,
                   float_in_model=bool(g.meta.get("float_input"))),
        output=_output_summary(outputs), outputs=outputs,
        segments=[dict(layers=[s.first, s.last], outputs=list(s.outputs), macs=s.macs) for s in program.segments],
        layers=layers, kernels=kernels,
        totals=dict(layers=len(layers), macs=sum(l["macs"] for l in layers), weight_bytes=weight_bytes,
                    arena_bytes=arena, io_bytes=io_bytes, boot_decoded_ram_bytes=boot_ram, flash_estimate_bytes=flash_est,
                    ram_estimate_bytes=ram_est, target_flash_bytes=target.flash_bytes,
                    target_ram_bytes=target.ram_bytes),
    )


def _outputs(program: Program) -> list[dict]:
    """report["outputs"]: every output in the model's output order, where the caller's output
    buffer holds it (offset, size), and whether the model file has it as float (DEQUANTIZE)."""
    floats = program.graph.meta.get("float_outputs") or [False] * len(program.outputs)
    return [dict(name=o["name"], shape=o["shape"], dtype="int8", scale=o["scale"], zero_point=o["zero_point"],
                 offset=o["offset"], size=o["size"], float_in_model=bool(f), last_layer=o["last_layer"])
            for o, f in zip(output_layout(program), floats)]


def _output_summary(outputs: list[dict]) -> dict:
    """report["output"], as model.h's EK_MODEL_OUTPUT_*: the output of a single-output model; with
    several, output 0's plus "total_size", the bytes of them all ("outputs" has each)."""
    first = {k: outputs[0][k] for k in ("shape", "dtype", "scale", "zero_point", "float_in_model")}
    if len(outputs) == 1:
        return first
    return dict(first, total_size=sum(o["size"] for o in outputs))


def format_io(report: dict) -> list[str]:
    """The input and every output, one line each."""
    i = report["input"]
    lines = [f"input: int8 {'x'.join(map(str, i['shape']))}, scale {i['scale']:.6g}, zero point {i['zero_point']}"]
    outputs = report["outputs"]
    for k, o in enumerate(outputs):
        role, where = "output", ""
        if len(outputs) > 1:
            role, where = f"output {k}", (f", bytes {o['offset']:,} to {o['offset'] + o['size'] - 1:,} of the output "
                                          f"buffer, complete after layer {o.get('last_layer', '?')}")
        lines.append(f"{role}: int8 {'x'.join(map(str, o['shape']))}, scale {o['scale']:.6g}, "
                     f"zero point {o['zero_point']}{where}  {o['name']}")
    return lines


def format_report(report: dict) -> str:
    rows = [f"{'#':>3}  {'op':<18} {'output':<14} {'MACs':>11} {'format':<8} {'weights':>9} "
            f"{'est. instr.':>12} {'act. bytes':>10}  layer"]
    notes = []
    for l in report["layers"]:
        w = l.get("weights")
        fmt, est = (w["format"], f"{w['est_instructions']:,}") if w else ("-", "")
        rows.append(f"{l['index']:>3}  {l['op']:<18} {'x'.join(map(str, l['output'][1:] or l['output'])):<14} "
                    f"{l['macs']:>11,} {fmt:<8} {l['weight_bytes']:>9,} {est:>12} "
                    f"{l['activation_bytes']:>10,}  {l['name'][:40]}")
        if w and w["format"] != "int8":
            notes.append(f"layer {l['index']}: {w['format']} weights {w['weight_format_bytes']:,} bytes "
                         f"(int8 {w['int8_weight_bytes']:,}), ~{w['est_instructions']:,} instructions "
                         f"(int8 ~{w['est_int8_instructions']:,})"
                         + (f", of which ~{w['est_decode_instructions']:,} decoding"
                            if w.get("est_decode_instructions") else ""))
        if w and w["note"]:
            notes.append(f"layer {l['index']}: {w['note']}")
    rows += notes
    rows += format_io(report)
    if report.get("budget"):
        from edgekit.budget import format_budget
        rows.append(format_budget(report["budget"]))
    t = report["totals"]
    target = report["target"]
    rows.append(f"total: {t['layers']} layers, {t['macs']:,} MACs, {t['weight_bytes']:,} bytes of weights "
                f"and parameters (flash), arena {t['arena_bytes']:,} bytes + input/output {t['io_bytes']:,} "
                f"bytes" + (f" + weights decoded at boot {t['boot_decoded_ram_bytes']:,} bytes" if t.get("boot_decoded_ram_bytes")
                            else "") + " (RAM)")
    if target != "host":
        rows.append(f"estimate for {target}: flash ~{t['flash_estimate_bytes']:,} of "
                    f"{t['target_flash_bytes']:,} bytes, RAM ~{t['ram_estimate_bytes']:,} of "
                    f"{t['target_ram_bytes']:,} bytes")
    return "\n".join(rows)
