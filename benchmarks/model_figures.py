#!/usr/bin/env python3
"""Memory and size figures of edgekit's Cortex-M4 firmware next to TFLite Micro's arena.

For each MLPerf Tiny model (keyword spotting, image classification ResNet-8, anomaly detection),
when it exists the bundled example examples/fashion_dscnn.h5, and a MobileNetV1-style model that is
not one of the shared models and that edgekit was never tuned on (benchmarks/mobilenet_style.py:
MobileNetV1 0.25x, 96x96x3, 2 classes, the visual wake words shape; random weights, int8 PTQ on
fixed-seed noise, cached under ~/.cache/edgekit-tests/; --no-mobilenet skips it), this script

  1. exports the model with edgekit for cortex-m4, builds the firmware with arm-none-eabi-gcc and
     reads `arm-none-eabi-size`: flash = text + data, static RAM = data + bss;
  2. reads edgekit's arena and input+output bytes from the export report;
  3. measures TFLite Micro's arena for the same model.tflite with TFLM's Python interpreter
     (RecordingMicroAllocator, printed by `print_allocations()`);
  4. runs the firmware in QEMU (mps2-an386) on 3 fixed-seed inputs and compares every output byte
     with TFLite's reference interpreter (`edgekit.run.verify`: the "outputs match" column and the exit
     status), and also with TFLM's outputs (reported, not required: TFLM's FULLY_CONNECTED rounds
     twice where LiteRT's reference kernel, and edgekit, round once, so they can differ by 1 LSB);

then prints a Markdown table (and, with --json PATH, writes every figure as JSON).

What the numbers contain
------------------------
* firmware RAM (data + bss) is all of the firmware's static RAM: the stack that templates/link.ld.j2
  reserves as a NOLOAD `.stack` section at the bottom of RAM (target.stack_bytes = 4,096 bytes;
  `size` counts it in bss), the arena (ek_arena), the input and output buffers (g_input,
  g_output), the serial protocol's two frame buffers (g_request, g_reply, 1,024 bytes each) and a
  few flags. There is no heap. The breakdown is printed below the table.
* edgekit arena: activations only. The input and output tensors are the caller's buffers, so
  "edgekit arena + I/O" is the activation memory comparable with TFLM's arena. Weights, biases
  and per-channel requantization parameters are const arrays in flash.
* TFLM arena ("Arena allocation total" of TFLM's RecordingMicroAllocator, = the interpreter's
  arena_used_bytes()) = head + tail of its single arena:
    head: the non-persistent section planned by the GreedyMemoryPlanner: every activation tensor
          INCLUDING the model's input and output tensors, plus kernel scratch buffers;
    tail: persistent allocations: TfLiteEvalTensor structs, the TfLiteTensor structs and
          quantization data of the I/O tensors, kernels' persistent buffers (OpData, per-channel
          multipliers and shifts), NodeAndRegistration structs, and the interpreter's own objects.
  The Python interpreter is a 64-bit x86 build with TFLM's reference kernels: the struct parts of
  the tail are bigger than on a 32-bit Cortex-M, and CMSIS-NN kernels may request other scratch
  and persistent buffers. The script also computes, from the .tflite alone, the peak of live
  activation bytes (input and output included, 16-byte aligned like TFLM): head == that peak
  shows what the head holds.

Run (about 5 s for the three MLPerf Tiny models; the Keras example adds ~15 s for TensorFlow's import
and int8 quantization; the MobileNet-style model ~10 s, plus ~10 s to convert it the first time):
    .venv/bin/python benchmarks/model_figures.py [--json figures.json] [--work-dir DIR] [--no-mobilenet]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODELS_DIR = REPO.parent / "shared" / "models" / "mlperf-tiny"
sys.path.insert(0, str(REPO))

import edgekit  # noqa: E402
import edgekit.build  # noqa: E402
import edgekit.export  # noqa: E402
import edgekit.targets  # noqa: E402
import edgekit.run.verify  # noqa: E402
from edgekit.api import CompiledModel  # noqa: E402
from edgekit.errors import EdgekitError  # noqa: E402

TARGET = "cortex-m4"
VERIFY_COUNT = 3
VERIFY_SEED = 0
TFLM_ALIGN = 16          # MicroArenaBufferAlignment() of TFLM

# (label, file, calibration file or None). Paths of the MLPerf Tiny models are relative to MODELS_DIR.
MLPERF = [
    ("KWS (DS-CNN)", "kws_ref_model.tflite"),
    ("IC (ResNet-8)", "pretrainedResnet_quant.tflite"),
    ("AD (FC autoencoder)", "ad01_int8.tflite"),
]
EXAMPLE = ("Fashion DS-CNN (example)", REPO / "examples" / "fashion_dscnn.h5", REPO / "examples" / "fashion_calib.npy")
MOBILENET_LABEL = "MobileNetV1-style 0.25x 96x96 (not a shared model)"

# TFLM arena figures quoted in the issue, measured elsewhere.
ISSUE_TFLM_ARENA = {"kws_ref_model.tflite": 22820, "pretrainedResnet_quant.tflite": 54996,
                    "ad01_int8.tflite": 2580}

# TFLite TensorType -> bytes per element (the types these models use).
_TYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8}


# ---------------------------------------------------------------------------------------------
# Firmware


def firmware_figures(out_dir: Path) -> dict:
    elf = edgekit.build.firmware_elf(out_dir)
    size = edgekit.build.firmware_size(elf)
    sections = {}
    proc = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True)
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith("."):
            sections[parts[0]] = int(parts[1])
    symbols = {}
    proc = subprocess.run(["arm-none-eabi-nm", "-S", "-t", "d", str(elf)], capture_output=True, text=True, check=True)
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "bBdD":
            symbols[parts[3]] = int(parts[1])
    ram = {
        "stack": sections.get(".stack", 0),
        "arena": symbols.get("ek_arena", 0),
        "input": symbols.get("g_input", 0),
        "output": symbols.get("g_output", 0),
        "serial_frame_buffers": symbols.get("g_request", 0) + symbols.get("g_reply", 0),
    }
    ram["other"] = size["ram_bytes"] - sum(ram.values())
    return dict(size, ram_breakdown=ram)


# ---------------------------------------------------------------------------------------------
# TFLite Micro


def _capture_fd2(fn):
    """Run fn() and return (its result, what C/C++ code wrote to file descriptor 2)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            result = fn()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        return result, tmp.read().decode(errors="replace")


def tflm_figures(tflite: bytes, x: np.ndarray) -> dict:
    """TFLM's arena for `tflite` after invoking it on every sample of x; also its outputs."""
    from tflite_micro import runtime

    interp = runtime.Interpreter.from_bytes(tflite)
    outputs = []
    for sample in x:
        interp.set_input(sample[np.newaxis], 0)
        interp.invoke()
        outputs.append(np.array(interp.get_output(0))[0])
    _, text = _capture_fd2(interp.print_allocations)
    fig = {}
    for key in ("total", "head", "tail"):
        m = re.search(rf"Arena allocation {key} (\d+) bytes", text)
        if not m:
            raise EdgekitError(f"unexpected print_allocations() output from tflite-micro:\n{text}")
        fig[f"{key}_bytes"] = int(m.group(1))
    tail_parts = {}
    for m in re.finditer(r"'([^']+)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes for (\d+)",
                         text):
        tail_parts[m.group(1)] = dict(used=int(m.group(2)), requested=int(m.group(3)), count=int(m.group(4)))
    fig["tail_parts"] = tail_parts
    fig["tail_unlisted_bytes"] = fig["tail_bytes"] - sum(p["used"] for p in tail_parts.values())
    fig["print_allocations"] = [line.strip() for line in text.strip().splitlines()]
    return fig, np.stack(outputs).astype(np.int8)


def peak_live_activations(tflite: bytes, align: int = TFLM_ALIGN) -> int:
    """Largest sum of the non-constant tensors live at one op (model input and output included),
    each rounded up to `align`: what any planner that keeps I/O in the arena needs at least."""
    from tflite_micro.python.tflite_micro.runtime import convert_bytearray_to_object

    model = convert_bytearray_to_object(bytearray(tflite))
    sg = model.subgraphs[0]
    n_ops = len(sg.operators)

    def is_const(t):
        buf = model.buffers[sg.tensors[t].buffer]
        return (buf.data is not None and len(buf.data) > 0) or bool(getattr(buf, "offset", 0))

    def nbytes(t):
        tensor = sg.tensors[t]
        n = int(np.prod(tensor.shape)) if tensor.shape is not None else 1
        return -(-n * _TYPE_BYTES[tensor.type] // align) * align

    first, last = {}, {}
    for t in sg.inputs:
        first[t], last[t] = 0, 0
    for i, op in enumerate(sg.operators):
        for t in op.inputs:
            if t >= 0 and not is_const(t):
                first.setdefault(t, i)
                last[t] = i
        for t in op.outputs:
            first.setdefault(t, i)
            last[t] = max(last.get(t, i), i)
    for t in sg.outputs:
        last[t] = n_ops - 1
    return max(sum(nbytes(t) for t in first if first[t] <= i <= last[t]) for i in range(n_ops))


# ---------------------------------------------------------------------------------------------


def measure(label: str, model_path: Path, out_dir: Path, calib: Path | None) -> dict:
    target = edgekit.targets.get_target(TARGET)
    result = edgekit.export.export(model_path, out_dir, target, calib=str(calib) if calib else None)
    totals = result.report["totals"]
    fw = firmware_figures(out_dir)

    v = edgekit.run.verify.verify(out_dir, count=VERIFY_COUNT, seed=VERIFY_SEED, emulate=True)
    tflite = (out_dir / "model.tflite").read_bytes()
    x = edgekit.run.verify.load_inputs(None, CompiledModel(out_dir), VERIFY_COUNT, VERIFY_SEED)
    tflm, tflm_out = tflm_figures(tflite, x)
    tflm["peak_live_activations_bytes"] = peak_live_activations(tflite)

    arena_io = totals["arena_bytes"] + totals["io_bytes"]
    return dict(
        label=label,
        model=model_path.name,
        macs=totals["macs"],
        weight_bytes=totals["weight_bytes"],
        firmware=fw,
        edgekit_arena_bytes=totals["arena_bytes"],
        edgekit_io_bytes=totals["io_bytes"],
        edgekit_arena_io_bytes=arena_io,
        tflm=tflm,
        ratio_arena_io_to_tflm=round(arena_io / tflm["total_bytes"], 3),
        issue_tflm_arena_bytes=ISSUE_TFLM_ARENA.get(model_path.name),
        verify=dict(matched=v.matched, total=v.total, where=v.where, ok=v.ok, description=v.describe(),
                    matches_tflm=bool((v.outputs == tflm_out).all()),
                    tflm_vs_firmware=_diff(tflm_out, v.outputs), tflm_vs_reference=_diff(tflm_out, v.reference)),
    )


def _diff(a: np.ndarray, b: np.ndarray) -> dict:
    d = np.abs(a.astype(np.int32) - b.astype(np.int32))
    return dict(differing_bytes=int((d != 0).sum()), total_bytes=int(d.size), max_abs_diff=int(d.max()))


def fmt(n) -> str:
    return f"{n:,}" if isinstance(n, int) else str(n)


def print_report(rows: list[dict], notes: list[str]) -> None:
    print("| model | MACs | weights+params bytes | firmware flash bytes | firmware RAM bytes | "
          "edgekit arena bytes | edgekit arena + I/O bytes | TFLM arena bytes | "
          "ratio (edgekit arena+I/O / TFLM arena) | outputs match |")
    print("|---|" + "---:|" * 8 + "---|")
    for r in rows:
        v = r["verify"]
        print(f"| {r['label']} | {fmt(r['macs'])} | {fmt(r['weight_bytes'])} | "
              f"{fmt(r['firmware']['flash_bytes'])} | {fmt(r['firmware']['ram_bytes'])} | "
              f"{fmt(r['edgekit_arena_bytes'])} | {fmt(r['edgekit_arena_io_bytes'])} | "
              f"{fmt(r['tflm']['total_bytes'])} | {r['ratio_arena_io_to_tflm']:.3f} | "
              f"{'yes' if v['ok'] else 'NO'} ({v['matched']}/{v['total']}, {v['where']}) |")

    print("\nFirmware RAM (data + bss) breakdown, bytes:\n")
    print("| model | stack (link.ld) | arena | input | output | serial frame buffers | other | total |")
    print("|---|" + "---:|" * 7)
    for r in rows:
        b, fw = r["firmware"]["ram_breakdown"], r["firmware"]
        print(f"| {r['label']} | {fmt(b['stack'])} | {fmt(b['arena'])} | {fmt(b['input'])} | {fmt(b['output'])} | "
              f"{fmt(b['serial_frame_buffers'])} | {fmt(b['other'])} | {fmt(fw['ram_bytes'])} |")

    print("\nTFLM arena = head (activations incl. input/output, scratch) + tail (persistent), bytes:\n")
    print("| model | TFLM total | head | peak live activations incl. I/O (from .tflite) | tail | "
          "edgekit arena + I/O - TFLM head | issue's TFLM figure | measured - issue | "
          "TFLM outputs = firmware outputs |")
    print("|---|" + "---:|" * 7 + "---|")
    for r in rows:
        t = r["tflm"]
        issue = r["issue_tflm_arena_bytes"]
        vs_issue = f"{t['total_bytes'] - issue:+,}" if issue else "-"
        print(f"| {r['label']} | {fmt(t['total_bytes'])} | {fmt(t['head_bytes'])} | "
              f"{fmt(t['peak_live_activations_bytes'])} | {fmt(t['tail_bytes'])} | "
              f"{r['edgekit_arena_io_bytes'] - t['head_bytes']:+,} | "
              f"{fmt(issue) if issue else '-'} | {vs_issue} | "
              f"{'yes' if r['verify']['matches_tflm'] else 'NO'} |")

    print("\nTFLM tail parts (used bytes / allocations):\n")
    parts = sorted({k for r in rows for k in r["tflm"]["tail_parts"]})
    print("| model | " + " | ".join(parts) + " | not itemized (interpreter objects) |")
    print("|---|" + "---:|" * (len(parts) + 1))
    for r in rows:
        tp = r["tflm"]["tail_parts"]
        cells = [f"{tp[k]['used']:,} / {tp[k]['count']}" if k in tp else "-" for k in parts]
        print(f"| {r['label']} | " + " | ".join(cells) + f" | {r['tflm']['tail_unlisted_bytes']:,} |")

    for r in rows:
        if not r["verify"]["matches_tflm"]:
            fw, ref = r["verify"]["tflm_vs_firmware"], r["verify"]["tflm_vs_reference"]
            notes.append(
                f"{r['label']}: TFLM's outputs differ from the firmware's in {fw['differing_bytes']} of "
                f"{fw['total_bytes']} bytes (at most {fw['max_abs_diff']} LSB) and from LiteRT's reference "
                f"(BUILTIN_REF) in {ref['differing_bytes']} bytes: the firmware matches the reference it is "
                "verified against, TFLM does not (edgekit's FULLY_CONNECTED rounds once, like LiteRT's "
                "reference kernel; TFLM's rounds twice).")
    for n in notes:
        print(f"\nNote: {n}")


def reproduce_command(argv: list[str]) -> str:
    exe = Path(sys.executable)
    exe_s = str(exe.relative_to(REPO)) if exe.is_relative_to(REPO) else str(exe)
    return f"cd {shlex.quote(str(REPO))} && {shlex.join([exe_s, 'benchmarks/model_figures.py', *argv])}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", metavar="PATH", help="also write every figure to this JSON file")
    ap.add_argument("--work-dir", metavar="DIR",
                    help="keep the export directories here (default: a temporary directory, removed)")
    ap.add_argument("--no-mobilenet", action="store_true",
                    help="skip the MobileNetV1-style model of benchmarks/mobilenet_style.py")
    args = ap.parse_args(argv)

    print(f"Reproduce: `{reproduce_command(argv)}`")
    print(f"edgekit {edgekit.__version__}, target {TARGET}, tflite-micro {_tflm_version()}, "
          f"{_tool_version(['arm-none-eabi-gcc', '--version'])}, {_tool_version(['qemu-system-arm', '--version'])}\n")

    missing = [name for _, name in MLPERF if not (MODELS_DIR / name).is_file()]
    if missing:
        print(f"error: the MLPerf Tiny models are not where this script looks for them: {MODELS_DIR} "
              f"lacks {', '.join(missing)}. Put kws_ref_model.tflite, pretrainedResnet_quant.tflite and "
              "ad01_int8.tflite there (beside the repository: ../shared/models/mlperf-tiny/).", file=sys.stderr)
        return 2

    jobs = [(label, MODELS_DIR / name, None) for label, name in MLPERF]
    notes = []
    label, h5, calib = EXAMPLE
    if not h5.is_file():
        notes.append(f"{h5.relative_to(REPO)} is not there yet: the bundled example was skipped.")
    elif not calib.is_file():
        notes.append(f"{h5.relative_to(REPO)} exists but its calibration file {calib.relative_to(REPO)} "
                     "does not: the bundled example was skipped.")
    else:
        jobs.append((label, h5, calib))
    if not args.no_mobilenet:
        sys.path.insert(0, str(REPO / "benchmarks"))
        from mobilenet_style import mobilenet_tflite
        print(f"converting or loading {MOBILENET_LABEL} ...", file=sys.stderr, flush=True)
        jobs.append((MOBILENET_LABEL, mobilenet_tflite(), None))
        notes.append(f"{MOBILENET_LABEL} is benchmarks/mobilenet_style.py: keras.applications.MobileNet("
                     "alpha=0.25, input 96x96x3, 2 classes, weights=None) with fixed-seed random weights and "
                     "data-dependent BatchNormalization statistics, int8 PTQ on fixed-seed noise. It is not one "
                     "of the shared models and edgekit was never tuned on it; its TFLM arena is measured here "
                     "like the others' (there is no issue figure for it).")

    started = time.monotonic()
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="edgekit-figures-"))
    rows = []
    try:
        for label, path, calib in jobs:
            print(f"measuring {label} ...", file=sys.stderr, flush=True)
            rows.append(measure(label, path, work / path.stem, calib))
    except EdgekitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if not args.work_dir:
            shutil.rmtree(work, ignore_errors=True)

    print_report(rows, notes)
    if args.json:
        doc = dict(command=reproduce_command(argv), edgekit=edgekit.__version__, target=TARGET,
                   tflite_micro=_tflm_version(), verify=dict(count=VERIFY_COUNT, seed=VERIFY_SEED),
                   models=rows, notes=notes)
        Path(args.json).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    print(f"done in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0 if all(r["verify"]["ok"] for r in rows) else 1


def _tflm_version() -> str:
    import tflite_micro
    return tflite_micro.__version__


def _tool_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
    except (OSError, IndexError):
        return f"{cmd[0]} (not found)"
    return out.strip()


if __name__ == "__main__":
    sys.exit(main())
