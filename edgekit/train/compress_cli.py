"""`edgekit compress`: the command line side of edgekit.train.compress. Everything is checked
before training starts (files, data, options, layers); the model and its report appear only
when every stage has finished."""
from __future__ import annotations

import sys
from dataclasses import asdict


def run_compress(args) -> int:
    from edgekit.train.model_io import check_output_path
    out = check_output_path(args.out, "compressed model")
    report_path = out.with_suffix(".json")
    from edgekit.measure.bench import write_json_atomic
    from edgekit.train.data import load_data
    from edgekit.train.model_io import load_model, save_model
    from edgekit.train.recipe import Recipe, compress
    recipe = Recipe(prune=args.prune, prune_scope=args.prune_scope, structured=args.structured,
                    clusters=args.clusters, cluster_scope=args.cluster_scope,
                    bits=None if args.no_qat else args.bits, temperature=args.temperature, alpha=args.alpha,
                    epochs=args.epochs, learning_rate=args.lr, qat_learning_rate=args.qat_lr,
                    batch_size=args.batch_size, seed=args.seed,
                    skip=tuple(args.skip))
    recipe.check()
    model = load_model(args.model)
    train = load_data(args.data, model, "--data")
    val = load_data(args.val, model, "--val") if args.val else None
    if args.teacher:
        recipe.teacher = load_model(args.teacher)
    result = compress(model, train, val, recipe, target=args.target, verbose=1 if sys.stdout.isatty() else 2)
    print()
    print(result.table())
    save_model(result.model, out)
    write_json_atomic(report_path, [asdict(s) for s in result.report])
    weights = "int4" if recipe.bits == 4 else "auto" + (" --optimize size" if (args.prune or args.clusters) else "")
    print(f"wrote {out} and {report_path}; export with: edgekit export {out} --target {args.target} "
          f"--calib CALIB.npy --weights {weights}")
    return 0

