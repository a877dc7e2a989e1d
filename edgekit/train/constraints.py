"""Weight constraints that every later training step keeps: pruning masks and cluster
assignments, per layer kernel.

A stage that compresses weights records what it decided here; a callback
(`KeepConstraints`) puts every constrained kernel back on its constraint after each optimizer
step, in that stage and in all that follow (fine-tuning, distillation, quantization-aware
training), so that the zeros and the shared values reach the exported model:
  mask    False where a weight is pruned: it is held at exactly 0.0
  labels  the cluster of each weight (-1: pruned, not in any cluster); after each step every
          weight of a cluster is set to the cluster's mean (its centroid moves with the gradient
          steps of its members, as in Deep Compression's weight sharing)
A stage that rebuilds the model (quantization-aware training folds BatchNormalization into the
kernels) re-binds the constraints to the new layers by name.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgekit.train.graph import kernel


@dataclass
class Rule:
    layer: object                           # the Keras layer whose kernel is constrained
    mask: np.ndarray | None = None          # bool, kernel shape; False = pruned (held at 0)
    labels: np.ndarray | None = None        # int64, kernel shape; -1 = no cluster

    def apply(self, w: np.ndarray) -> np.ndarray:
        if self.mask is not None:
            w = np.where(self.mask, w, np.float32(0.0))
        if self.labels is not None:
            w = np.where(self.labels >= 0, centroids(w, self.labels)[np.maximum(self.labels, 0)], w)
        return w.astype(np.float32)


def centroids(w: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The mean of each cluster's weights (0.0 for an empty cluster)."""
    sel = labels >= 0
    n = int(labels.max()) + 1 if sel.any() else 1
    sums = np.bincount(labels[sel], weights=w[sel].astype(np.float64), minlength=n)
    counts = np.bincount(labels[sel], minlength=n)
    return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0).astype(np.float32)


@dataclass
class Constraints:
    rules: dict = field(default_factory=dict)    # layer name -> Rule

    def rule(self, layer) -> Rule:
        if layer.name not in self.rules:
            self.rules[layer.name] = Rule(layer)
        return self.rules[layer.name]

    def apply(self) -> None:
        """Put every constrained kernel back on its constraint."""
        for r in self.rules.values():
            v = kernel(r.layer)
            v.assign(r.apply(np.asarray(v.numpy())))

    def rebind(self, model) -> "Constraints":
        """The same constraints on the same-named layers of `model` (kernels of the same shape)."""
        layers = {layer.name: layer for layer in model.layers}
        out = Constraints()
        for name, r in self.rules.items():
            if name in layers:
                out.rules[name] = Rule(layers[name], r.mask, r.labels)
        return out

    def __bool__(self) -> bool:
        return bool(self.rules)


def keep_constraints(constraints: Constraints):
    """A Keras callback applying `constraints` after every training batch and at the end."""
    import keras

    class KeepConstraints(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            constraints.apply()

        def on_train_end(self, logs=None):
            constraints.apply()

    return KeepConstraints()
