"""Magnitude pruning of Conv2D, DepthwiseConv2D and Dense kernels, on a schedule, for Keras 3.

During training the `Pruning` callback raises the sparsity on its schedule: at each update step
the smallest-magnitude weights of every layer (scope 'layer') or of all layers together (scope
'global') are masked, exactly round(sparsity * weights) of them (ties by position), and after
every batch the masked weights are put back to 0.0. The masks are `Constraints`, so later stages
keep the zeros; 0.0 stays 0 through BatchNormalization folding and int8 quantization, which lets
`edgekit export --weights auto` store those layers sparse (or Huffman-coded).

    pruner = Pruning(model, PolynomialDecay(0.8, end_step=300))
    model.fit(x, y, epochs=2, callbacks=[pruner])     # sparsity 0 -> 0.8 over 300 steps, held
    sparsity(model)                                   # {layer name: fraction of zeros}
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgekit.errors import EdgekitError
from edgekit.train.constraints import Constraints, keep_constraints
from edgekit.train.graph import kernel, stage_layers


def check_sparsity(s: float, option: str = "sparsity") -> float:
    s = float(s)
    if not 0.0 <= s < 1.0:
        raise EdgekitError(f"{option} {s:g}: pass a fraction of weights to remove, at least 0 and below 1 "
                           "(every layer keeps some weights)")
    return s


@dataclass(frozen=True)
class PolynomialDecay:
    """Sparsity from `initial` at begin_step to `final` at end_step along
    final + (initial - final) * (1 - t)^power (Zhu & Gupta), masks updated every `frequency`
    steps and at end_step; held at `final` after it."""
    final: float
    end_step: int
    begin_step: int = 0
    initial: float = 0.0
    power: float = 3.0
    frequency: int = 1

    def __post_init__(self):
        check_sparsity(self.final)
        check_sparsity(self.initial, "initial sparsity")
        if self.end_step <= self.begin_step or self.frequency < 1:
            raise EdgekitError(f"pruning schedule: end_step {self.end_step} must come after begin_step "
                               f"{self.begin_step}, with frequency >= 1")

    @property
    def last_step(self) -> int:
        return self.end_step

    def at(self, step: int) -> float | None:
        """The sparsity to apply before training step `step` (0-based), or None: no update."""
        if step < self.begin_step or step > self.end_step:
            return None
        if step != self.end_step and (step - self.begin_step) % self.frequency:
            return None
        t = (step - self.begin_step) / (self.end_step - self.begin_step)
        return self.final + (self.initial - self.final) * (1.0 - t) ** self.power


@dataclass(frozen=True)
class StepSchedule:
    """Sparsity raised in steps: `steps` is ((step, sparsity), ...) in increasing order; a
    constant sparsity is StepSchedule(((0, s),))."""
    steps: tuple

    def __post_init__(self):
        last = -1
        for step, s in self.steps:
            check_sparsity(s)
            if step <= last:
                raise EdgekitError("pruning schedule: the steps must increase")
            last = step
        if not self.steps:
            raise EdgekitError("pruning schedule: give at least one (step, sparsity)")

    @property
    def final(self) -> float:
        return self.steps[-1][1]

    @property
    def last_step(self) -> int:
        return self.steps[-1][0]

    def at(self, step: int) -> float | None:
        for s_step, s in self.steps:
            if s_step == step:
                return s
        return None


def magnitude_masks(kernels: list[np.ndarray], sparsity: float, scope: str = "layer") -> list[np.ndarray]:
    """For each kernel a mask (True = kept) with the smallest-magnitude weights removed: exactly
    round(sparsity * n) of each kernel's n (scope 'layer'), or of all kernels' weights together
    (scope 'global'); ties go by position (stable order)."""
    if scope == "layer":
        out = []
        for w in kernels:
            flat = np.abs(w).reshape(-1)
            drop = np.argsort(flat, kind="stable")[:int(round(sparsity * flat.size))]
            mask = np.ones(flat.size, bool)
            mask[drop] = False
            out.append(mask.reshape(w.shape))
        return out
    if scope != "global":
        raise EdgekitError(f"pruning scope '{scope}': pass 'layer' or 'global'")
    flat = np.concatenate([np.abs(w).reshape(-1) for w in kernels])
    drop = np.argsort(flat, kind="stable")[:int(round(sparsity * flat.size))]
    mask = np.ones(flat.size, bool)
    mask[drop] = False
    out, at = [], 0
    for w in kernels:
        out.append(mask[at:at + w.size].reshape(w.shape))
        at += w.size
    return out


def pruning(model, schedule, scope: str = "layer", skip=(), constraints: Constraints | None = None):
    """A Keras callback pruning `model`'s Conv2D / DepthwiseConv2D / Dense kernels on `schedule`
    (PolynomialDecay or StepSchedule); its masks go into `constraints` (a new set if None, at
    callback.constraints). Refuses, before training starts, a fit too short to reach the
    schedule's final sparsity."""
    import keras
    layers = stage_layers(model, "pruning", skip)
    if not layers:
        raise EdgekitError("the model has no Conv2D, DepthwiseConv2D or Dense layer to prune")
    constraints = constraints if constraints is not None else Constraints()
    keep = keep_constraints(constraints)

    class Pruning(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.step = 0
            self.constraints = constraints
            self.schedule = schedule

        def on_train_begin(self, logs=None):
            steps, epochs = self.params.get("steps"), self.params.get("epochs")
            if steps and epochs and steps * epochs <= schedule.last_step:
                raise EdgekitError(
                    f"the pruning schedule reaches sparsity {schedule.final:g} at step {schedule.last_step}, "
                    f"but this training runs {steps * epochs} steps: train longer or end the schedule sooner")

        def on_train_batch_begin(self, batch, logs=None):
            s = schedule.at(self.step)
            if s is not None:
                prune_to(layers, s, scope, constraints)
            self.step += 1

        def on_train_batch_end(self, batch, logs=None):
            keep.on_train_batch_end(batch, logs)

        def on_train_end(self, logs=None):
            keep.on_train_end(logs)

    return Pruning()


def prune_to(layers, sparsity: float, scope: str, constraints: Constraints) -> None:
    """Mask the kernels of `layers` to `sparsity` now (magnitude_masks) and apply the masks."""
    kernels = [np.asarray(kernel(layer).numpy()) for layer in layers]
    for layer, mask in zip(layers, magnitude_masks(kernels, sparsity, scope)):
        constraints.rule(layer).mask = mask
    constraints.apply()


def sparsity(model) -> dict[str, float]:
    """Fraction of exact zeros in each Conv2D / DepthwiseConv2D / Dense kernel."""
    from edgekit.train.graph import kind
    out = {}
    for layer in model.layers:
        if kind(layer) is not None:
            w = np.asarray(kernel(layer).numpy())
            out[layer.name] = float(np.mean(w == 0.0))
    return out
