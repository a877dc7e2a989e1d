"""The `edgekit` command line: compress, exits, export, verify, bench, eval, targets.

Every user error is one sentence on stderr and exit status 2; a failed comparison exits 1.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from edgekit.version import __version__
from edgekit.errors import EdgekitError


def _cmd_export(args) -> int:
    from edgekit.export import export
    from edgekit.targets import get_target, parse_size
    target = get_target(args.target, flash=parse_size(args.flash) if args.flash else None,
                        ram=parse_size(args.ram) if args.ram else None, portable=args.kernels == "portable")
    budgets = None
    if args.budgets is not None:
        from edgekit.budget import BudgetSpec
        if not args.val:
            raise EdgekitError("--budgets needs --val val.npz (inputs x and labels y) to calibrate the levels on")
        budgets = BudgetSpec(levels=args.budgets, val=args.val, rule=args.exit_rule, costs=args.budget_costs,
                             losses=_floats(args.budget_loss, "--budget-loss"),
                             battery_mv=[int(v) for v in _floats(args.battery_mv, "--battery-mv") or []] or None)
    elif args.val or args.budget_loss or args.battery_mv or args.budget_costs != "macs":
        raise EdgekitError("--val, --budget-loss, --battery-mv and --budget-costs calibrate early exits: pass them "
                           "with --budgets N")
    if budgets is not None and budgets.costs == "emulate":
        from edgekit.measure.budget_costs import require_emulator
        require_emulator(target)
    result = export(args.model, args.out, target, calib=args.calib, name=args.name, weights=args.weights,
                    optimize=args.optimize, huffman_decode=args.huffman_decode, budgets=budgets)
    if budgets is not None and budgets.costs == "emulate":
        from edgekit.measure.budget_costs import measure_budget_costs
        result = measure_budget_costs(result, budgets, target)
    print(result.summary)
    if args.show_plan:
        print()
        print(result.program.plan_text())
    print(f"wrote {args.out}/ (model.c, model.h, Makefile, model.tflite, report.json); "
          f"build with: make -C {args.out}" + (" host" if target.is_host else ""))
    if args.verify:
        # The same C built for this computer, every layer traced and compared with edgekit's
        # integer reference, and the outputs with TFLite's (edgekit.run.trace).
        from edgekit.run.trace import verify_layers
        result = verify_layers(args.out, count=8, seed=0)
        print(result.describe())
        return 0 if result.ok else 1
    return 0


def _floats(text: str | None, option: str) -> list[float] | None:
    """A comma-separated list of numbers ('inf' allowed), or None."""
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise EdgekitError(f"{option} {text}: pass numbers separated by commas, e.g. 3700,3500,3300") from None


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
    from edgekit.run.trace import verify_layers
    from edgekit.run.verify import verify
    if args.count < 1:
        raise EdgekitError(f"--count {args.count}: pass at least 1 random input")
    _check_writable(args.save_outputs, "--save-outputs")
    run = verify_layers if args.layers else verify
    result = run(args.out, inputs=args.inputs, count=args.count, seed=args.seed, emulate=args.emulate,
                 sanitize=args.sanitize)
    if args.save_outputs:
        _save_outputs(args.save_outputs, result.saved())
    print(result.describe())
    return 0 if result.ok else 1


def _cmd_bench(args) -> int:
    from edgekit.measure.bench import BenchConfig, bench, format_summary, write_csv, write_plots
    for path, option in ((args.save_outputs, "--save-outputs"), (args.json, "--json"), (args.csv, "--csv")):
        _check_writable(path, option)
    config = BenchConfig(runs=args.runs, warmup=args.warmup, count=args.count, seed=args.seed,
                         inputs=args.inputs, profile=args.profile, protocol=args.protocol,
                         clock_hz=args.clock_hz, timeout=args.timeout, budget=args.budget, labels=args.labels)
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
    levels_ok = all(row["matched"] == row["inputs"] for row in result.level_summary())
    return 0 if result.matched == len(result.per_input) and levels_ok else 1


def _cmd_eval(args) -> int:
    from edgekit.run.evaluate import evaluate
    for path, option in ((args.out_preds, "--out"), (args.save_outputs, "--save-outputs")):
        _check_writable(path, option)
    result = evaluate(args.out, args.data, labels=args.labels, batch=args.batch)
    print(result.describe())
    if args.out_preds:
        _save_outputs(args.out_preds, result.predictions)
    if args.save_outputs:
        _save_outputs(args.save_outputs, result.outputs)
    return 0


def _cmd_compress(args) -> int:
    from edgekit.train.compress_cli import run_compress
    return run_compress(args)


def _cmd_exits(args) -> int:
    from edgekit.train.exits_cli import run_exits
    return run_exits(args)


def _cmd_targets(args) -> int:
    from edgekit.targets import TARGETS
    for t in TARGETS.values():
        print(f"{t.name:<14} {t.description}")
    return 0


SAVE_OUTPUTS_HELP = ("save the raw int8 outputs [N, *output_shape] to this .npy (a model with several "
                     "outputs: [N, total bytes], each output at its offset in report.json's outputs)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgekit", description="Compile Keras / TFLite models into "
                                "bit-exact C for microcontrollers.")
    p.add_argument("--version", action="version", version=f"edgekit {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compress", help="prune, cluster, distill and quantization-aware train a Keras model "
                       "(Keras 3) for export", description="Stages run in this order, each when asked for: "
                       "structured pruning -> distillation -> pruning -> clustering -> quantization-aware "
                       "training (8-bit unless --bits 4 or --no-qat). Each stage fine-tunes and prints the "
                       "float accuracy and the exact int8 model's.")
    c.add_argument("model", help="a Keras .keras or .h5 model (Keras 2 or 3) or a Keras 2 SavedModel directory")
    c.add_argument("--data", required=True, help="training data: .npz with x [N, *input_shape] (float32) and y "
                   "(class indices [N] or one-hot [N, C]; for a regression, targets shaped like the output)")
    c.add_argument("--val", help="validation data, .npz like --data (default: the last 10%% of --data, held out)")
    c.add_argument("-o", "--out", required=True, help="the compressed model, .keras (written when finished; the "
                   "report goes beside it as .json)")
    c.add_argument("--prune", type=float, help="fraction of each Conv2D/DepthwiseConv2D/Dense layer's weights "
                   "set to zero (magnitude pruning)")
    c.add_argument("--prune-scope", choices=["layer", "global"], default="layer",
                   help="layer (default): every layer exactly at --prune; global: one magnitude threshold")
    c.add_argument("--structured", type=float, help="fraction of channels removed (filters, and what consumes them)")
    c.add_argument("--clusters", type=int, help="k-means shared values per layer (16: --weights lut4)")
    c.add_argument("--cluster-scope", choices=["layer", "channel"], default="layer")
    c.add_argument("--bits", type=int, choices=[8, 4], default=8, help="weight bits of quantization-aware "
                   "training (default 8; 4: every layer exports as --weights int4)")
    c.add_argument("--no-qat", action="store_true", help="leave out quantization-aware training")
    c.add_argument("--teacher", help="a Keras model to distill from (keras.distillation)")
    c.add_argument("--temperature", type=float, default=4.0, help="distillation temperature (default 4)")
    c.add_argument("--alpha", type=float, default=0.5, help="weight of the distillation loss (default 0.5)")
    c.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs per stage (default 2)")
    c.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    c.add_argument("--qat-lr", type=float, help="learning rate of quantization-aware training (default: --lr / 10)")
    c.add_argument("--batch-size", type=int, default=64)
    c.add_argument("--seed", type=int, default=0, help="fixes shuffling and initialization (default 0)")
    c.add_argument("--skip", action="append", default=[], metavar="LAYER",
                   help="leave this layer as it is in every stage (repeatable)")
    c.add_argument("--target", default="cortex-m4", help="target whose formats the report prices (default cortex-m4)")
    c.set_defaults(func=_cmd_compress)

    x = sub.add_parser("exits", help="attach early-exit heads to a Keras classifier and train them",
                       description="The model's outputs become [exit 1, ..., exit k, final]; each exit is a "
                       "small head (global average pooling + Dense, or --head dw: a 3x3 depthwise layer first) "
                       "on a backbone tensor. Training sums every output's cross-entropy; the report gives "
                       "each exit's MACs and accuracy.")
    x.add_argument("model", help="a Keras .keras or .h5 classifier (Keras 2 or 3) or a Keras 2 SavedModel directory")
    x.add_argument("--data", required=True, help="training data: .npz with x and y (class indices or one-hot)")
    x.add_argument("--val", help="validation data, .npz like --data: each exit's accuracy is reported on it")
    x.add_argument("--after", help="the layers the exits read, comma-separated (an error lists the layers "
                   "that can take one)")
    x.add_argument("--at", help="or: fractions of the model's MACs, comma-separated (e.g. 0.25,0.5): each exit "
                   "goes to the block end nearest that share")
    x.add_argument("--head", choices=["gap", "dw"], default="gap", help="gap (default): pooling + Dense; dw: a 3x3 "
                   "depthwise layer and ReLU first")
    x.add_argument("--epochs", type=int, default=3, help="training epochs (default 3)")
    x.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default 1e-3)")
    x.add_argument("--batch-size", type=int, default=64)
    x.add_argument("--loss-weights", help="one loss weight per output, exits then the final (default 1 each)")
    x.add_argument("--distill", type=float, default=0.0, help="self-distillation: share of each exit's target "
                   "taken from the final exit's softened predictions (0 to 1, default 0)")
    x.add_argument("--temperature", type=float, default=4.0, help="temperature of those predictions (default 4)")
    x.add_argument("--freeze-backbone", action="store_true", help="train only the heads (for a trained model)")
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("-o", "--out", required=True, help="the multi-exit model, .keras (its report beside it as .json)")
    x.set_defaults(func=_cmd_exits)

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
    e.add_argument("--weights", choices=["auto", "int8", "int4", "lut4", "lut8", "sparse", "huffman"],
                   default="auto",
                   help="weight format of conv/FC layers (lossless, bit-exact): auto picks per layer "
                        "by --optimize; a forced format a layer cannot take falls back to int8 for "
                        "that layer, said in the report")
    e.add_argument("--huffman-decode", choices=["layer", "boot"], default="layer",
                   help="layer (default): Huffman weights are decoded block by block into scratch at "
                        "every inference; boot: once by ek_model_init() into RAM (int8 speed)")
    e.add_argument("--verify", action="store_true",
                   help="after export, build the C for this computer and check every layer against "
                        "edgekit's integer reference and the outputs against TFLite (as `verify --layers`)")
    e.add_argument("--optimize", choices=["size", "speed", "balanced"], default="speed",
                   help="with --weights auto: size = fewest flash bytes; speed (default) = fewest "
                        "bytes among formats no slower than int8; balanced = at most 2x slower")
    e.add_argument("--budgets", type=int, help="a model with early exits (`edgekit exits`): N budget levels "
                   "for ek_model_invoke_budget, calibrated on --val")
    e.add_argument("--val", help="with --budgets: validation data, .npz with x and y")
    e.add_argument("--budget-loss", help="with --budgets: accuracy points each level may lose, lowest level "
                   "first (default: inf,...,4,2,1,0)")
    e.add_argument("--exit-rule", choices=["margin", "max"], default="margin",
                   help="an exit's confidence: margin (top-1 minus top-2 int8 score, default) or max (top-1)")
    e.add_argument("--battery-mv", help="with --budgets: N-1 millivolt floors, highest first, for "
                   "ek_budget_for_battery_mv (default 3900..3400)")
    e.add_argument("--budget-costs", choices=["macs", "emulate"], default="macs",
                   help="with --budgets: calibrate on MACs (default) or on each layer's instructions measured "
                        "once in QEMU (emulate)")
    e.set_defaults(func=_cmd_export)

    v = sub.add_parser("verify", help="run the generated C and compare with the TFLite reference")
    v.add_argument("out", help="an `edgekit export` output directory")
    v.add_argument("--emulate", action="store_true", help="run the firmware in QEMU instead of the host build")
    v.add_argument("--inputs", help=".npy/.npz batch [N, *input_shape]: int8 as is, float32 quantized")
    v.add_argument("--save-outputs", help=SAVE_OUTPUTS_HELP)
    v.add_argument("--count", type=int, default=10, help="random inputs when --inputs is not given (default 10)")
    v.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    v.add_argument("--sanitize", action="store_true", help="host build with AddressSanitizer and UBSan")
    v.add_argument("--layers", action="store_true", help="also trace every layer of the host build and "
                   "name the first whose output differs from edgekit's integer reference")
    v.set_defaults(func=_cmd_verify)

    ev = sub.add_parser("eval", help="accuracy of the exact integer model of an export on a dataset")
    ev.add_argument("out", help="an `edgekit export` output directory")
    ev.add_argument("--data", required=True, help=".npy/.npz samples [N, *input_shape] (.npz: array 'x'): "
                    "int8 as is, float quantized with the model input's scale and zero point")
    ev.add_argument("--labels", help=".npy/.npz integer class labels [N] (.npz: array 'y'); without it, "
                    "only the predictions are summarized")
    ev.add_argument("--batch", type=int, default=256, help="samples per batch (default 256)")
    ev.add_argument("--out", dest="out_preds", metavar="PREDS", help="save the top-1 class of every sample "
                    "to this .npy")
    ev.add_argument("--save-outputs", help=SAVE_OUTPUTS_HELP)
    ev.set_defaults(func=_cmd_eval)

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
    b.add_argument("--save-outputs", help=SAVE_OUTPUTS_HELP)
    b.add_argument("--plot", metavar="DIR", help="write latency_histogram.png (and layers.png, "
                   "budget_levels.png) to DIR")
    b.add_argument("--budget", help="a model exported with --budgets: measure budget level L "
                   "(ek_model_invoke_budget), or 'all' levels and the whole model")
    b.add_argument("--labels", help=".npy/.npz class labels of --inputs: accuracy (per budget level)")
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
