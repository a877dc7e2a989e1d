"""edgekit.train.compress: a model through a recipe of compression stages, each fine-tuned
and measured.

    result = compress(model, (x, y), validation=(xv, yv),
                      recipe=Recipe(prune=0.8, structured=0.5, bits=4, clusters=16, teacher=big))
    result.model      # Keras 3, ready for `edgekit export`
    result.report     # per stage: accuracy (float, and the exact int8 model), params, MACs, weight bytes

The stages run in this order, each only when the recipe asks for it:
  structured  remove the lowest-ranked channels (edgekit.train.structured), then fine-tune with
              the unpruned model as the teacher (or recipe.teacher)
  distill     fine-tune from recipe.teacher (keras.distillation), when there is a teacher and no
              structured stage did it already
  prune       magnitude pruning to recipe.prune (per layer, or global), polynomial schedule over
              the first two thirds of the stage's steps, then held
  cluster     k-means weight sharing to recipe.clusters values, zeros kept
  qat         quantization-aware training, int8 or 4-bit weights (recipe.bits), BN folded; its
              learning rate falls to 0 along a cosine
Every fine-tune keeps the earlier stages' zeros and shared values (edgekit.train.constraints).
After each stage the model is measured: its float accuracy (or MSE) on the validation data, and
the exact int8 model's: converted by TensorFlow's TFLite converter as `edgekit export` converts
it, compiled by edgekit (--weights auto --optimize size) and run by edgekit's integer reference, which computes
what the generated C computes, bit for bit.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from edgekit.errors import EdgekitError
from edgekit.train.data import Data, check_data


@dataclass
class Recipe:
    """What to do to the model; None / 0 leaves a stage out. See the module docstring."""
    prune: float | None = None           # fraction of each layer's weights set to zero
    prune_scope: str = "layer"           # 'layer': every layer exactly; 'global': one threshold
    structured: float | None = None      # fraction of channels removed
    clusters: int | None = None          # shared values per layer (per channel: cluster_scope)
    cluster_scope: str = "layer"
    bits: int | None = 8                 # quantization-aware training with 8- or 4-bit weights
    teacher: object = None               # a Keras model (or path) to distill from
    temperature: float = 4.0
    alpha: float = 0.5                   # weight of the distillation loss (1 - alpha: the labels')
    epochs: int = 2                      # per stage
    learning_rate: float = 1e-3
    qat_learning_rate: float | None = None   # None: learning_rate / 10
    batch_size: int = 64
    seed: int = 0
    skip: tuple = ()                     # layer names no stage touches

    def check(self) -> None:
        from edgekit.train.prune import check_sparsity
        if self.prune is not None:
            check_sparsity(self.prune, "--prune")
        if self.structured is not None:
            check_sparsity(self.structured, "--structured")
        if self.bits not in (None, 4, 8):
            raise EdgekitError(f"--bits {self.bits}: pass 8 or 4")
        if self.clusters is not None and not 2 <= self.clusters <= 256:
            raise EdgekitError(f"--clusters {self.clusters}: pass 2 to 256 (16 fits --weights lut4)")
        if self.epochs < 1:
            raise EdgekitError(f"--epochs {self.epochs}: pass at least 1")
        if not 0.0 <= self.alpha <= 1.0:
            raise EdgekitError(f"--alpha {self.alpha}: pass a weight from 0 to 1")
        if self.temperature <= 0:
            raise EdgekitError(f"--temperature {self.temperature}: pass a positive number")
        if not self.learning_rate > 0:
            raise EdgekitError(f"--lr {self.learning_rate}: pass a positive learning rate")
        if self.qat_learning_rate is not None and not self.qat_learning_rate > 0:
            raise EdgekitError(f"--qat-lr {self.qat_learning_rate}: pass a positive learning rate")
        if self.batch_size < 1:
            raise EdgekitError(f"--batch-size {self.batch_size}: pass at least 1")


@dataclass
class StageReport:
    stage: str
    seconds: float
    metric: str                          # 'accuracy' or 'mse'
    float_value: float                   # the Keras model on the validation data
    int8_value: float | None             # the exact int8 model (edgekit's integer reference)
    params: int
    macs: int                            # of the conv / depthwise / dense layers, one input
    float32_weight_bytes: int            # conv / depthwise / dense kernels as float32
    weight_bytes: dict = field(default_factory=dict)     # {'int8': .., 'exported': .. (--weights auto)}
    layers: list = field(default_factory=list)           # per compressed layer: format, bytes, sparsity, ...


@dataclass
class CompressResult:
    model: object
    report: list
    constraints: object = None

    def to_json(self) -> str:
        return json.dumps([asdict(s) for s in self.report], indent=2)

    def table(self) -> str:
        return format_report(self.report)


def _as_data(model, data, option) -> Data:
    if isinstance(data, Data):
        return data
    try:
        x, y = data
    except (TypeError, ValueError):
        raise EdgekitError(f"{option}: pass (x, y)") from None
    return check_data(model, x, y, option)


def compress(model, train, validation=None, recipe: Recipe | None = None, calib=None,
             target: str = "cortex-m4", verbose: int = 1, measure_int8: bool = True) -> CompressResult:
    """Run `recipe` on `model` (a Keras 3 model or a model path) with training data `train`
    ((x, y) or Data); `validation` defaults to the last 10 % of `train` (held out). `calib`: inputs
    for the int8 conversion (default: up to 500 training inputs)."""
    import keras
    from edgekit.train import tune as fitting
    from edgekit.train.model_io import load_model
    recipe = recipe or Recipe()
    recipe.check()
    model = load_model(model)
    train = _as_data(model, train, "training data")
    if validation is None:
        n = max(1, len(train) // 10)
        if len(train) < 2:
            raise EdgekitError("training data: pass at least 2 samples")
        validation = Data(train.x[-n:], train.y[-n:], train.classes)
        train = Data(train.x[:-n], train.y[:-n], train.classes)
    else:
        validation = _as_data(model, validation, "validation data")
    if validation.classes != train.classes:
        raise EdgekitError("the training and validation labels disagree: one is class indices, the other not")
    calib = np.asarray(calib, np.float32) if calib is not None else train.x[np.linspace(
        0, len(train) - 1, min(500, len(train))).astype(int)]
    teacher = load_model(recipe.teacher) if recipe.teacher is not None else None
    _check_stages(model, recipe)

    keras.utils.set_random_seed(recipe.seed)
    log = _Log(verbose)
    reports = []

    def measure(stage, m, started):
        reports.append(measure_stage(stage, m, validation, calib, target, time.time() - started, measure_int8))
        log(format_stage(reports[-1], reports[0] if len(reports) > 1 else None))

    t = time.time()
    measure("original", model, t)
    tune = dict(epochs=recipe.epochs, learning_rate=recipe.learning_rate, batch_size=recipe.batch_size,
                temperature=recipe.temperature, alpha=recipe.alpha, verbose=verbose)
    constraints = None

    if recipe.structured:
        from edgekit.train.structured import prune_channels
        t = time.time()
        log(f"[structured] removing {recipe.structured:.0%} of the channels")
        teacher = teacher or model
        model = prune_channels(model, recipe.structured, skip=recipe.skip)
        fitting.fit(model, train, validation, teacher=teacher, **tune)
        measure("structured", model, t)
    elif teacher is not None:
        t = time.time()
        log(f"[distill] fine-tuning from the teacher ({teacher.name})")
        fitting.fit(model, train, validation, teacher=teacher, **tune)
        measure("distill", model, t)

    if recipe.prune:
        from edgekit.train.prune import PolynomialDecay, StepSchedule, pruning
        t = time.time()
        steps = -(-len(train) // recipe.batch_size) * recipe.epochs
        end = (2 * steps) // 3 - 1
        schedule = (PolynomialDecay(recipe.prune, end_step=end, frequency=max(1, end // 10)) if end >= 1
                    else StepSchedule(((0, recipe.prune),)))       # too few steps for a ramp: at once
        log(f"[prune] magnitude pruning to {recipe.prune:.0%} ({recipe.prune_scope}), reached at step "
            f"{schedule.last_step} of {steps}")
        pruner = pruning(model, schedule, recipe.prune_scope, recipe.skip)
        fitting.fit(model, train, validation, callbacks=[pruner], teacher=teacher, **tune)
        constraints = pruner.constraints
        measure("prune", model, t)

    if recipe.clusters:
        from edgekit.train.cluster import cluster
        from edgekit.train.constraints import keep_constraints
        t = time.time()
        log(f"[cluster] k-means to {recipe.clusters} values per {recipe.cluster_scope}")
        constraints = cluster(model, recipe.clusters, recipe.cluster_scope, recipe.skip, constraints)
        fitting.fit(model, train, validation, callbacks=[keep_constraints(constraints)], teacher=teacher, **tune)
        measure("cluster", model, t)

    if recipe.bits:
        from edgekit.train.constraints import keep_constraints
        from edgekit.train.qat import quantize_model
        t = time.time()
        log(f"[qat] quantization-aware training, {recipe.bits}-bit weights, int8 activations")
        model, constraints = quantize_model(model, recipe.bits, calib=calib, constraints=constraints)
        callbacks = [keep_constraints(constraints)] if constraints else []
        fitting.fit(model, train, validation, callbacks=callbacks, teacher=teacher, decay=True,
                    **dict(tune, learning_rate=recipe.qat_learning_rate or recipe.learning_rate / 10))
        measure(f"qat{recipe.bits}", model, t)
    return CompressResult(model, reports, constraints)


def _check_stages(model, recipe: Recipe) -> None:
    """Every stage's refusals (a layer it cannot handle) before any training starts."""
    from edgekit.train.graph import stage_layers
    for wanted, stage in ((recipe.structured, "structured pruning"), (recipe.prune, "pruning"),
                          (recipe.clusters, "clustering"), (recipe.bits, "quantization-aware training")):
        if wanted:
            stage_layers(model, stage, recipe.skip)


class _Log:
    def __init__(self, verbose: int):
        self.verbose = verbose

    def __call__(self, text: str) -> None:
        if self.verbose:
            print(text, flush=True)


def measure_stage(stage: str, model, validation: Data, calib, target: str, seconds: float,
                  measure_int8: bool = True) -> StageReport:
    """The model after a stage: float metric, exact int8 metric, params, MACs, weight bytes."""
    from edgekit.train import tune as fitting
    from edgekit.train.graph import kernel, kind
    from edgekit.train.structured import macs as keras_macs
    float_value = fitting.evaluate(model, validation)
    kernels = [layer for layer in model.layers if kind(layer) is not None]
    f32 = sum(int(np.prod(kernel(layer).shape)) * 4 for layer in kernels)
    rep = StageReport(stage=stage, seconds=round(seconds, 1),
                      metric="accuracy" if validation.classification else "mse",
                      float_value=float_value, int8_value=None, params=int(model.count_params()),
                      macs=keras_macs(model), float32_weight_bytes=f32)
    layer_stats = {layer.name: _layer_stats(layer) for layer in kernels}
    if measure_int8:
        int8_value, export = int8_measure(model, validation, calib, target)
        rep.int8_value = int8_value
        chosen = [l for l in export["layers"] if "weights" in l]
        rep.weight_bytes = {"int8": sum(l["weights"]["int8_weight_bytes"] for l in chosen),
                            "exported": sum(l["weights"]["weight_format_bytes"] for l in chosen)}
        stats = list(layer_stats.values())
        for i, l in enumerate(chosen):
            entry = {"name": l["name"], "op": l["op"], "format": l["weights"]["format"],
                     "bytes": l["weights"]["weight_format_bytes"], "int8_bytes": l["weights"]["int8_weight_bytes"]}
            if len(stats) == len(chosen):       # the converter keeps the layers' order
                entry.update(stats[i])
            rep.layers.append(entry)
    else:
        rep.layers = [dict(name=n, **s) for n, s in layer_stats.items()]
    return rep


def _layer_stats(layer) -> dict:
    from edgekit.train.cluster import max_distinct_per_channel
    from edgekit.train.graph import channel_view, kernel
    w = np.asarray(kernel(layer).numpy())
    if hasattr(layer, "quantized_kernel"):
        w = np.asarray(layer.quantized_kernel())
    return {"keras_layer": layer.name, "weights": int(w.size), "zeros": int(np.sum(w == 0.0)),
            "sparsity": round(float(np.mean(w == 0.0)), 4),
            "max_distinct_per_channel": max_distinct_per_channel(layer, w),
            "channels": int(channel_view(layer, w).shape[-1])}


def int8_measure(model, data: Data, calib, target: str):
    """(metric of the exact int8 model on `data`, edgekit's export report with --weights auto)."""
    import keras
    from edgekit.emit.report import build_report
    from edgekit.pipeline import compile_program
    from edgekit.frontend.keras import quantize_keras
    from edgekit.run.intref import IntReference
    from edgekit.targets import get_target
    from edgekit.version import __version__
    tflite = quantize_keras(model, keras, calib)
    tgt = get_target(target)
    program = compile_program(tflite, label=model.name, target=tgt, weights="auto", optimize="size")
    report = build_report(program, tgt, model.name, "edgekit.train", __version__)
    scale, zp = report["input"]["scale"], report["input"]["zero_point"]
    xq = np.clip(np.round(data.x / np.float32(scale)) + zp, -128, 127).astype(np.int8)
    ref = IntReference(compile_program(tflite, label=model.name, target=None))   # formats do not change outputs
    y = np.concatenate([np.asarray(ref.run(xq[i:i + 500])) for i in range(0, len(xq), 500)])
    y = y.reshape(len(xq), -1)
    if data.classification:
        return float(np.mean(np.argmax(y, axis=1) == data.y)), report
    out = report["outputs"][0]
    yf = (y.astype(np.float64) - out["zero_point"]) * out["scale"]
    return float(np.mean((yf - data.y.reshape(len(y), -1)) ** 2)), report


def _value(metric: str, v) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.2f} %" if metric == "accuracy" else f"{v:.4g}"


def _bytes(n) -> str:
    return "-" if n is None else f"{n:,}"


def format_stage(s: StageReport, first: StageReport | None = None) -> str:
    wb = s.weight_bytes.get("exported")
    ratio = f" ({s.float32_weight_bytes / wb:.1f}x smaller than float32)" if wb else ""
    lines = [f"{s.stage}: {s.metric} float {_value(s.metric, s.float_value)}, int8 {_value(s.metric, s.int8_value)}"
             f"; {s.params:,} params, {s.macs:,} MACs; weights {_bytes(wb)} bytes{ratio}"
             f"; {s.seconds:.0f} s"]
    if first is not None and first.metric == "accuracy" and s.int8_value is not None and first.int8_value is not None:
        lines.append(f"  int8 accuracy {100 * (s.int8_value - first.int8_value):+.2f} pt against the original")
    return "\n".join(lines)


def format_report(reports: list) -> str:
    head = "| stage | float | int8 (exact) | params | MACs | weight bytes | vs float32 | seconds |"
    rows = [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in reports:
        wb = s.weight_bytes.get("exported")
        rows.append(f"| {s.stage} | {_value(s.metric, s.float_value)} | {_value(s.metric, s.int8_value)} | "
                    f"{s.params:,} | {s.macs:,} | {_bytes(wb)} | "
                    f"{(s.float32_weight_bytes / wb) if wb else 0:.1f}x | {s.seconds:.0f} |")
    return "\n".join(rows)
