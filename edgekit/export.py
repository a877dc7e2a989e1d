"""`edgekit export`: model file -> directory of C sources, Makefile, model.tflite and report.json.

Stages: import (Keras -> int8 TFLite, or TFLite) -> IR -> passes -> lowering + memory plan ->
fit check -> emission. Everything is written to a temporary directory beside the destination
and renamed into place at the end, so a failed export leaves nothing half-written.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgekit.version import __version__
from edgekit.budget import BudgetSpec, budget_report, exit_evidence
from edgekit.emit.codegen import c_string_name, environment, kernel_sources, render_model, resource_dir, weights_hash
from edgekit.errors import DoesNotFitError, EdgekitError
from edgekit.lower.program import Program
from edgekit.pipeline import compile_program
from edgekit.emit.report import build_report, format_report
from edgekit.emit.signatures import add_exit_signatures
from edgekit.targets import Target

STACK_BYTES_DEFAULT = 4096
# Firmware files beside model.c: both protocols' main loops (the Makefile's PROTOCOL picks one)
# and the per-layer profile hooks (PROFILE=1).
DEVICE_FILES = ("device_main.c", "mlperf_main.c", "ek_profile.h")


@dataclass
class ExportResult:
    out_dir: Path
    program: Program
    report: dict
    tflite: bytes | None = None           # the model compiled (before any exit signatures)
    evidence: object = None               # --budgets: edgekit.budget.Evidence, for a recalibration

    @property
    def summary(self) -> str:
        return format_report(self.report)


def model_to_tflite(model_path: str | Path, calib=None) -> bytes:
    """Load a model file; Keras models are quantized to int8 with `calib` (.npy/.npz path,
    'random' or an array)."""
    path = Path(model_path)
    if not path.exists():
        raise EdgekitError(f"{path} does not exist")
    if path.is_dir():
        raise EdgekitError(f"{path} is a directory: pass a .h5, .keras or .tflite model file")
    if path.stat().st_size == 0:
        raise EdgekitError(f"{path} is empty (0 bytes): pass a .h5, .keras or .tflite model file")
    suffix = path.suffix.lower()
    if suffix == ".tflite":
        return path.read_bytes()
    if suffix in (".h5", ".hdf5", ".keras"):
        from edgekit.frontend import keras as kimp
        if calib is None:
            raise EdgekitError(f"{path} is a Keras model and needs calibration data to quantize to int8: "
                               "pass --calib samples.npy (N inputs shaped like the model input), or "
                               "--calib random to accept an accuracy loss")
        return kimp.keras_to_tflite(path, calib)
    raise EdgekitError(f"{path}: unknown model format '{suffix}'; pass a .h5, .keras or .tflite file")


def check_fit(report: dict, target: Target) -> None:
    t = report["totals"]
    if t["flash_estimate_bytes"] > target.flash_bytes:
        over = t["flash_estimate_bytes"] - target.flash_bytes
        raise DoesNotFitError(
            f"the model needs about {t['flash_estimate_bytes']:,} bytes of flash ({t['weight_bytes']:,} of "
            f"weights + code) but {target.name} has {target.flash_bytes:,}: {over:,} bytes too many; "
            "use a smaller model or pass --flash for a bigger part")
    if t["ram_estimate_bytes"] > target.ram_bytes:
        over = t["ram_estimate_bytes"] - target.ram_bytes
        raise DoesNotFitError(
            f"the model needs about {t['ram_estimate_bytes']:,} bytes of RAM (arena {t['arena_bytes']:,} + "
            f"input/output {t['io_bytes']:,} + "
            + (f"weights decoded at boot {t['boot_decoded_ram_bytes']:,} + " if t.get("boot_decoded_ram_bytes") else "")
            + f"stack and firmware) but {target.name} has "
            f"{target.ram_bytes:,}: {over:,} bytes too many; use a smaller model or pass --ram for a bigger part")


def _render_build_files(target: Target, kernels: list[str]) -> dict[str, str]:
    env = environment()
    ctx = dict(target=target.name, is_host=target.is_host, arch_flags=" ".join(target.arch_flags),
               kernel_sources=[k for k in kernels if k.endswith(".c")], version=__version__,
               qemu_machine=target.qemu_machine or "", flash_size=target.flash_bytes,
               ram_size=target.ram_bytes, stack_size=target.stack_bytes)
    files = {"Makefile": env.get_template("Makefile.j2").render(ctx)}
    if not target.is_host:
        files["link.ld"] = env.get_template("link.ld.j2").render(
            flash_origin="0x00000000", flash_size=target.flash_bytes, ram_origin="0x20000000",
            ram_size=target.ram_bytes, stack_size=target.stack_bytes)
    return files


def check_out_dir(out_dir: Path, model_path: Path | None = None) -> None:
    """Refuse an output directory the export must not replace (checked before any work and again
    before writing): a file, a non-empty directory that is no earlier export, the current
    directory or one of its parents, or a directory holding the model file itself."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise EdgekitError(f"{out_dir} exists and is not a directory; choose another output path")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / "report.json").exists():
        raise EdgekitError(f"{out_dir} is not empty and is not an earlier edgekit export; "
                           "choose another output directory or empty it")
    for above in Path(os.path.abspath(out_dir)).parents:
        if above.exists():
            if not above.is_dir():
                raise EdgekitError(f"cannot create the output directory {out_dir}: {above} is not a "
                                   "directory; choose another output path")
            break
    real = out_dir.resolve()
    if Path.cwd().resolve().is_relative_to(real):
        raise EdgekitError(f"{out_dir} is the current directory or contains it, and an export replaces "
                           "its output directory as a whole; choose a new subdirectory, e.g. -o out")
    if model_path is not None and Path(model_path).resolve().is_relative_to(real):
        raise EdgekitError(f"the model file {model_path} is inside the output directory {out_dir}, which "
                           "the export replaces as a whole; choose another output directory")


def write_export(out_dir: Path, files: dict[str, str | bytes], copies: dict[str, Path]) -> None:
    """Write everything to a temp dir beside out_dir, then swap it into place."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir)
    dest_dir = Path(os.path.abspath(out_dir))
    parent = dest_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.tmp-", dir=parent))
    except OSError as e:
        raise EdgekitError(f"cannot create the output directory {out_dir}: {e.strerror or e}") from None
    old = None
    try:
        for rel, content in files.items():
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                dest.write_bytes(content)
            else:
                dest.write_text(content)
        for rel, src in copies.items():
            dest = tmp / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
        if dest_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest_dir.name}.old-", dir=parent))
            os.rename(dest_dir, old / "x")
        os.rename(tmp, dest_dir)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / "x").exists() and not dest_dir.exists():
            os.rename(old / "x", dest_dir)      # put the earlier export back
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        if isinstance(e, OSError):
            raise EdgekitError(f"cannot write the output directory {out_dir}: {e.strerror or e}") from None
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_program(program: Program, out_dir: str | Path, target: Target, model_name: str, source: str,
                   tflite: bytes | None = None, weights: dict | None = None,
                   budget: dict | None = None) -> ExportResult:
    """Write an export directory from a lowered Program: report.json (after the fit check),
    model.c/model.h, the Makefile and linker script, plan.txt,
    the kernels and firmware files, and `tflite` as model.tflite when given. `weights` is
    report["weights"] (the --weights/--optimize/--huffman-decode choice); `budget`, report["budget"]
    of a model with exits (edgekit.budget.budget_report)."""
    report = build_report(program, target, model_name, source, __version__, weights_hash=weights_hash(program))
    if weights is not None:
        report["weights"] = weights
    if budget is not None:
        report["budget"] = budget
    check_fit(report, target)

    files: dict[str, str | bytes] = dict(render_model(program, target.name, model_name, __version__, budget))
    kernels = kernel_sources(program)
    files.update(_render_build_files(target, kernels))
    if tflite is not None:
        # A model with exits: a signature per early exit for phones (edgekit.emit.signatures).
        files["model.tflite"] = (add_exit_signatures(tflite, program.exits.outputs) if program.exits is not None
                                 else tflite)
    files["report.json"] = json.dumps(report, indent=2) + "\n"
    files["plan.txt"] = program.plan_text() + "\n"
    fw = resource_dir("firmware")
    copies = {f"kernels/{k}": fw / "kernels" / k for k in kernels}
    copies["host_main.c"] = fw / "host_main.c"
    if not target.is_host:
        for name in DEVICE_FILES:
            copies[name] = fw / name
        board = fw / "boards" / target.board
        for f in sorted(board.iterdir()):
            if f.is_file():
                copies[f"board/{f.name}"] = f
    write_export(Path(out_dir), files, copies)
    return ExportResult(Path(out_dir), program, report, tflite=tflite)


def export(model_path: str | Path, out_dir: str | Path, target: Target, calib=None,
           name: str | None = None, weights: str = "auto", optimize: str = "speed",
           huffman_decode: str = "layer", budgets: BudgetSpec | None = None) -> ExportResult:
    """`edgekit export`; with `budgets`, a model with early exits is lowered in the exit schedule's
    order and its budget levels calibrated on budgets.val (edgekit.budget)."""
    model_path = Path(model_path)
    check_out_dir(Path(out_dir), model_path)
    if budgets is not None:
        budgets.check()
    tflite = model_to_tflite(model_path, calib)
    program = compile_program(tflite, label=str(model_path), target=target, weights=weights,
                              optimize=optimize, huffman_decode=huffman_decode, exits=budgets is not None)
    evidence = exit_evidence(program, tflite, budgets, str(model_path)) if budgets is not None else None
    budget = budget_report(program, budgets, evidence) if budgets is not None else None
    result = export_program(program, out_dir, target, c_string_name(name or model_path.stem), model_path.name,
                            tflite=tflite, weights=dict(mode=weights, optimize=optimize, huffman_decode=huffman_decode),
                            budget=budget)
    result.evidence = evidence
    return result
