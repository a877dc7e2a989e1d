"""`edgekit exits`: the command line side of edgekit.train.exits. Files, data and options are
checked before training; the multi-exit model and its report appear only when training is done."""
from __future__ import annotations

import sys

from edgekit.errors import EdgekitError


def _list(text: str | None, convert, option: str):
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise EdgekitError(f"{option}: pass a comma-separated list")
    try:
        return [convert(t) for t in items]
    except ValueError:
        raise EdgekitError(f"{option} {text}: pass numbers separated by commas") from None


def run_exits(args) -> int:
    from edgekit.train.model_io import check_output_path
    out = check_output_path(args.out, "multi-exit model")
    if (args.after is None) == (args.at is None):
        raise EdgekitError("say where the exits go: --after LAYER,LAYER or --at 0.25,0.5 (fractions of the MACs)")
    if args.epochs < 1:
        raise EdgekitError(f"--epochs {args.epochs}: pass at least 1")
    after = _list(args.after, str, "--after")
    at = _list(args.at, float, "--at")
    weights = _list(args.loss_weights, float, "--loss-weights")
    import keras

    from edgekit.measure.bench import write_json_atomic
    from edgekit.train.data import load_data
    from edgekit.train.exits import attach_exits, exit_report, format_exit_report, train_exits
    from edgekit.train.model_io import load_model, save_model
    keras.utils.set_random_seed(args.seed)
    model = load_model(args.model)
    train = load_data(args.data, model, "--data")
    val = load_data(args.val, model, "--val") if args.val else None
    multi = attach_exits(model, after=after, at=at, head=args.head, seed=args.seed)
    if weights is not None and len(weights) != len(multi.outputs):
        raise EdgekitError(f"--loss-weights: pass {len(multi.outputs)} weights, one per output (exits, then the final)")
    train_exits(multi, train, val, epochs=args.epochs, learning_rate=args.lr, batch_size=args.batch_size,
                weights=weights, distill=args.distill, temperature=args.temperature,
                freeze_backbone=args.freeze_backbone, verbose=1 if sys.stdout.isatty() else 2)
    rows = exit_report(multi, val if val is not None else train)
    print()
    print(f"on {'--val' if val is not None else '--data (no --val given)'}:")
    print(format_exit_report(rows))
    report_path = out.with_suffix(".json")
    save_model(multi, out)
    write_json_atomic(report_path, rows)
    print(f"wrote {out} and {report_path}")
    return 0
