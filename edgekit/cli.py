"""The `edgekit` command line: export, verify, targets.

Every user error is one sentence on stderr and exit status 2; a failed comparison exits 1.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import __version__
from .errors import EdgekitError


def _cmd_export(args) -> int:
    from .export import export
    from .targets import get_target, parse_size
    target = get_target(args.target, flash=parse_size(args.flash) if args.flash else None,
                        ram=parse_size(args.ram) if args.ram else None, portable=args.kernels == "portable")
    result = export(args.model, args.out, target, calib=args.calib, name=args.name)
    print(result.summary)
    if args.show_plan:
        print()
        print(result.program.plan_text())
    print(f"wrote {args.out}/ (model.c, model.h, Makefile, model.tflite, report.json); "
          f"build with: make -C {args.out}" + (" host" if target.is_host else ""))
    return 0


def _check_writable(path: str | None, option: str) -> None:
    """Fail before a long run, not after it, when an output file cannot be written."""
    if path and not Path(path).resolve().parent.is_dir():
        raise EdgekitError(f"cannot write {option} {path}: its directory does not exist")


def _save_outputs(path: str, outputs) -> None:
    import numpy as np
    try:
        np.save(path, outputs)
    except OSError as e:
        raise EdgekitError(f"cannot save outputs to {path}: {e.strerror or e}") from None


def _cmd_verify(args) -> int:
    from .verify import verify
    if args.count < 1:
        raise EdgekitError(f"--count {args.count}: pass at least 1 random input")
    _check_writable(args.save_outputs, "--save-outputs")
    result = verify(args.out, inputs=args.inputs, count=args.count, seed=args.seed, emulate=args.emulate,
                    sanitize=args.sanitize)
    if args.save_outputs:
        _save_outputs(args.save_outputs, result.outputs)
    print(result.describe())
    return 0 if result.ok else 1


def _cmd_bench(args) -> int:
    from .bench import BenchConfig, bench, format_summary, write_csv, write_plots
    for path, option in ((args.save_outputs, "--save-outputs"), (args.json, "--json"), (args.csv, "--csv")):
        _check_writable(path, option)
    config = BenchConfig(runs=args.runs, warmup=args.warmup, count=args.count, seed=args.seed,
                         inputs=args.inputs, profile=args.profile, protocol=args.protocol,
                         clock_hz=args.clock_hz, timeout=args.timeout)
    result = bench(args.out, config, emulate=args.emulate, port=args.port, baud=args.baud,
                   json_path=args.json)
    print(format_summary(result))
    if args.save_outputs:
        import numpy as np
        _save_outputs(args.save_outputs, np.stack(result.outputs))
    if args.csv:
        write_csv(args.csv, result)
    if args.plot:
        for path in write_plots(args.plot, result):
            print(f"wrote {path}")
    return 0 if result.matched == len(result.per_input) else 1


def _cmd_targets(args) -> int:
    from .targets import TARGETS
    for t in TARGETS.values():
        print(f"{t.name:<14} {t.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgekit", description="Compile Keras / TFLite models into "
                                "bit-exact C for microcontrollers.")
    p.add_argument("--version", action="version", version=f"edgekit {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("export", help="model (.h5, .keras, .tflite) -> C sources, Makefile, firmware")
    e.add_argument("model", help="a Keras .h5/.keras model or an int8 .tflite model")
    e.add_argument("--target", default="cortex-m4", help="cortex-m4 (default), cortex-m7, cortex-m3, "
                   "cortex-m0plus or host (see `edgekit targets`)")
    e.add_argument("--calib", help="representative inputs for int8 quantization of a Keras model "
                   "(.npy/.npz, N samples shaped like the input), or 'random' (loses accuracy)")
    e.add_argument("-o", "--out", default="out", help="output directory (default: out)")
    e.add_argument("--flash", help="flash size of your part, e.g. 512K (overrides the target's)")
    e.add_argument("--ram", help="RAM size of your part, e.g. 128K (overrides the target's)")
    e.add_argument("--name", help="model name used in the generated code (default: file name)")
    e.add_argument("--show-plan", action="store_true", help="print the memory plan")
    e.add_argument("--kernels", choices=["auto", "portable"], default="auto",
                   help="auto: the fastest variant per layer for the target (DSP on Cortex-M4/M7); "
                        "portable: the plain C reference kernels everywhere")
    e.set_defaults(func=_cmd_export)

    v = sub.add_parser("verify", help="run the generated C and compare with the TFLite reference")
    v.add_argument("out", help="an `edgekit export` output directory")
    v.add_argument("--emulate", action="store_true", help="run the firmware in QEMU instead of the host build")
    v.add_argument("--inputs", help=".npy/.npz batch [N, *input_shape]: int8 as is, float32 quantized")
    v.add_argument("--save-outputs", help="save the raw int8 outputs [N, *output_shape] to this .npy")
    v.add_argument("--count", type=int, default=10, help="random inputs when --inputs is not given (default 10)")
    v.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    v.add_argument("--sanitize", action="store_true", help="host build with AddressSanitizer and UBSan")
    v.set_defaults(func=_cmd_verify)

    b = sub.add_parser("bench", help="latency and correctness on the board (or QEMU) over a serial port")
    b.add_argument("out", help="an `edgekit export` output directory (for a Cortex-M target)")
    where = b.add_mutually_exclusive_group(required=True)
    where.add_argument("--emulate", action="store_true", help="build the firmware and run it in QEMU "
                       "(counts instructions, deterministic)")
    where.add_argument("--port", help="the board's serial port or any pyserial URL "
                       "(/dev/ttyACM0, socket://host:port)")
    b.add_argument("--baud", type=int, default=115200, help="baud rate of --port (default 115200)")
    b.add_argument("--clock-hz", type=int, help="the board's CPU clock, to report ms and inferences/s")
    b.add_argument("--inputs", help=".npy/.npz batch [N, *input_shape]: int8 as is, float32 quantized")
    b.add_argument("--count", type=int, default=3, help="random inputs when --inputs is not given (default 3)")
    b.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    b.add_argument("--runs", type=int, default=20, help="timed inferences per input (default 20)")
    b.add_argument("--warmup", type=int, default=3, help="untimed inferences before them (default 3)")
    b.add_argument("--profile", action="store_true", help="per-layer times (firmware with PROFILE=1)")
    b.add_argument("--protocol", default="edgekit", choices=["edgekit", "mlperf-tiny"],
                   help="edgekit's framed protocol (default) or the MLPerf Tiny / EEMBC runner's")
    b.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the banner, each reply and each inference (default 10)")
    b.add_argument("--json", help="write the results as JSON (atomically, also when cut short)")
    b.add_argument("--csv", help="write every run's latency as CSV")
    b.add_argument("--save-outputs", help="save the raw int8 outputs [N, *output_shape] to this .npy")
    b.add_argument("--plot", metavar="DIR", help="write latency_histogram.png (and layers.png) to DIR")
    b.set_defaults(func=_cmd_bench)

    t = sub.add_parser("targets", help="list the targets")
    t.set_defaults(func=_cmd_targets)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EdgekitError as e:
        print(f"edgekit: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edgekit: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug in edgekit, not the user's mistake: one line, unless debugging
        if os.environ.get("EDGEKIT_DEBUG"):
            raise
        print(f"edgekit: internal error ({type(e).__name__}: {' '.join(str(e).split())[:300]}); please "
              "report it with the command you ran (EDGEKIT_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
