"""`edgekit eval OUT --data x.npy [--labels y.npy]`: the accuracy of the exact integer model an
export deploys, on a whole dataset, without a board or a C build.

OUT/model.tflite is lowered again with the portable kernels (and the weight formats of OUT's
report, which are lossless) and run by edgekit's integer reference (edgekit.run.intref), whose every
output byte is what the generated C computes (tests/test_intref.py holds them equal), batch by
batch at numba speed. Float data is quantized with the model input's scale and zero point
(edgekit.api.quantize_input), int8 data is used as is. Top-1 is the argmax of the int8 output
(the first of equal maxima, like numpy.argmax), against integer class labels.

A model exported with budget levels (--budgets) is also scored per level (`levels`): the exit
ek_model_invoke_budget takes on each sample (edgekit.budget.reference_budget) and that exit's
prediction, with the share of samples at each exit and the mean MACs.

A model with several outputs is scored on its output 0 (the first in the model's output order,
the .tflite's), and the summary says so by name; the saved outputs are then every output's
bytes, [N, total output bytes] (report.json's "outputs" give each one's offset and size).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekit.api import CompiledModel, saved_outputs, split_outputs
from edgekit.budget import format_shares
from edgekit.datasets import load_array, prepare_data, prepare_labels
from edgekit.errors import EdgekitError

DEFAULT_BATCH = 256


@dataclass
class EvalResult:
    outputs: np.ndarray            # int8 [N, *output_shape]; several outputs: [N, total output bytes]
    predictions: np.ndarray        # int64 [N], argmax of each output (of output 0, when several)
    labels: np.ndarray | None      # int64 [N]
    seconds: float                 # running the batches (numba compilation excluded)
    batch: int
    layers: int
    out_dir: Path
    scored: str = ""               # several outputs: which one the predictions come from
    levels: list[dict] | None = None   # budget levels: level, predictions, exits, accuracy, mean_macs

    @property
    def count(self) -> int:
        return int(self.outputs.shape[0])

    @property
    def correct(self) -> int | None:
        return None if self.labels is None else int((self.predictions == self.labels).sum())

    @property
    def accuracy(self) -> float | None:
        return None if self.labels is None else self.correct / self.count

    def describe(self) -> str:
        lines = []
        what = f"the integer model of {self.out_dir} ({self.layers} layers, edgekit's integer reference)"
        what += f", scored on {self.scored}" if self.scored else ""
        if self.labels is not None:
            lines.append(f"accuracy: {100 * self.accuracy:.2f}% top-1 ({self.correct:,} of {self.count:,} "
                         f"samples) for {what}")
        else:
            classes, counts = np.unique(self.predictions, return_counts=True)
            order = np.argsort(-counts, kind="stable")[:10]
            top = ", ".join(f"class {int(classes[i])}: {int(counts[i]):,}" for i in order)
            more = f" and {len(classes) - 10} more classes" if len(classes) > 10 else ""
            lines.append(f"predictions of {what} for {self.count:,} samples: {top}{more}")
        for lv in self.levels or []:
            acc = f"accuracy {100 * lv['accuracy']:.2f}%, " if lv["accuracy"] is not None else ""
            lines.append(f"budget level {lv['level']}: {acc}exits taken "
                         + format_shares(lv["exits"]) + f", mean MACs {lv['mean_macs']:,.0f}")
        rate = self.count / self.seconds if self.seconds > 0 else float("inf")
        lines.append(f"throughput: {rate:,.0f} samples/s ({self.count:,} samples in {self.seconds:.2f} s, "
                     f"batches of {self.batch:,})")
        return "\n".join(lines)


def evaluate(out_dir: str | Path, data: str | Path, labels: str | Path | None = None,
             batch: int = DEFAULT_BATCH) -> EvalResult:
    from edgekit.run.intref import IntReference
    if batch < 1:
        raise EdgekitError(f"--batch {batch}: pass at least 1")
    model = CompiledModel(out_dir)          # checks report.json
    if not model.tflite_path.exists():
        raise EdgekitError(f"{out_dir} has no model.tflite: export the model again")
    x = prepare_data(load_array(data, "--data", "x"), data, model.report)
    layout = model.output_layout
    scored = layout[0]
    y = None if labels is None else prepare_labels(load_array(labels, "--labels", "y"), labels, len(x),
                                                   scored["size"])
    ref = IntReference.from_export(out_dir)
    ref.run(x[:1])                          # compile (or load the cached kernels) before timing
    flat = np.empty((len(x), model.output_size), np.int8)
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        flat[i:i + batch] = ref.run_flat(x[i:i + batch])
    seconds = time.perf_counter() - start
    part = flat[:, scored["offset"]:scored["offset"] + scored["size"]]
    predictions = np.argmax(part, axis=1).astype(np.int64)
    return EvalResult(outputs=saved_outputs(flat, layout), predictions=predictions, labels=y, seconds=seconds,
                      batch=batch, layers=ref.num_layers, out_dir=Path(out_dir),
                      scored=f"output 0 '{scored['name']}' of {len(layout)}" if len(layout) > 1 else "",
                      levels=_levels(model.report.get("budget"), split_outputs(flat, layout), y))


def _levels(budget: dict | None, outputs: list[np.ndarray], labels: np.ndarray | None) -> list[dict] | None:
    """Every budget level on the dataset (EvalResult.levels)."""
    if not budget:
        return None
    from edgekit.budget import level_macs, reference_budget
    out = []
    for level in range(len(budget["levels"])):
        taken, scores = reference_budget(budget, outputs, level)
        predictions = np.argmax(scores, axis=1).astype(np.int64)
        out.append(dict(level=level, predictions=predictions,
                        exits=[float(v) for v in np.bincount(taken, minlength=len(budget["exits"])) / len(taken)],
                        accuracy=None if labels is None else float((predictions == labels).mean()),
                        mean_macs=float(level_macs(budget, taken, level).mean())))
    return out
