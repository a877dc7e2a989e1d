"""Structured pruning that removes channels: a smaller ordinary Keras model with fewer MACs.

Channels are tracked through the graph as "groups": the output channels of a Conv2D or Dense
layer open a group; layers that work channel by channel carry it on (BatchNormalization, ReLU and
other activations, DepthwiseConv2D with multiplier 1, pooling, padding, dropout, global average
pooling, Flatten); an Add (or other element-wise merge) joins the groups of its inputs into one,
so a residual block's channels stay aligned (the union is pruned: the same channels leave every
branch); the next Conv2D or Dense consumes the group (its kernel loses those input rows). A group
that reaches a model output, a Concatenate, a Reshape or any other layer is left whole, as are
groups opened by a skipped layer.

In each group the channels are ranked by the L1 norm of their effective filters (the kernel times
the following BatchNormalization's scale gamma / sqrt(var + eps), summed over the group's layers,
each layer's norms divided by their mean so no layer dominates), and the lowest
round(fraction * channels) are removed from every layer the group touches: the filters and biases
of its producers, the depthwise filters and BatchNormalization parameters on the way, the input
rows of its consumers (for a Dense after Flatten, every spatial position's rows of the channel).
"""
from __future__ import annotations

import numpy as np

import keras

from edgekit.errors import EdgekitError, UnsupportedModelError
from edgekit.train.graph import kind, layer_macs, producers

# Layers that compute each channel from the same channel alone: a group passes through them.
_CHANNELWISE = ("BatchNormalization", "ReLU", "Activation", "Dropout", "SpatialDropout2D", "MaxPooling2D",
                "AveragePooling2D", "ZeroPadding2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
                "Identity", "LeakyReLU", "PReLU", "GaussianNoise")
_MERGES = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")


class _Groups:
    """Union-find over channel groups, with the groups that must stay whole."""

    def __init__(self):
        self.parent: list[int] = []
        self.fixed: set[int] = set()

    def new(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[b] = a
            if b in self.fixed:
                self.fixed.add(a)
        return a

    def fix(self, g) -> None:
        if g is not None:
            self.fixed.add(self.find(g))

    def is_fixed(self, g) -> bool:
        return g is None or self.find(g) in self.fixed


def trace_groups(model, skip=()):
    """(groups, out_group, in_group): the channel group of each layer's output and of its
    (first) input, None where channels are not tracked."""
    groups = _Groups()
    out_group: dict[str, int | None] = {}
    in_group: dict[str, int | None] = {}
    skip = set(skip)
    for layer in model.layers:
        name = type(layer).__name__
        ins = [out_group.get(p.name) for p in producers(layer)]
        in_group[layer.name] = ins[0] if ins else None
        k = kind(layer)
        if name == "InputLayer":
            out_group[layer.name] = None
        elif k in ("conv", "dense"):
            g = groups.new()
            if layer.name in skip or (k == "conv" and layer.get_config().get("groups", 1) != 1):
                groups.fix(g)
            out_group[layer.name] = g
        elif k == "depthwise" and layer.get_config().get("depth_multiplier", 1) == 1:
            out_group[layer.name] = ins[0]
            if layer.name in skip:
                groups.fix(ins[0])
        elif name in _CHANNELWISE or name == "Flatten":
            out_group[layer.name] = ins[0]
            if name == "Flatten" and not _flatten_to_dense_only(model, layer):
                groups.fix(ins[0])
        elif name in _MERGES and all(g is not None for g in ins):
            g = ins[0]
            for other in ins[1:]:
                g = groups.union(g, other)
            out_group[layer.name] = g
        else:                          # Concatenate, Reshape, unknown layers: channels stay
            for g in ins:
                groups.fix(g)
            out_group[layer.name] = None
            if layer.trainable_weights and k is None and name != "BatchNormalization":
                raise UnsupportedModelError(
                    f"layer '{layer.name}' ({name}) cannot go through structured pruning: edgekit removes "
                    f"channels of Conv2D, DepthwiseConv2D and Dense layers; pass --skip {layer.name} to leave "
                    "it as it is")
    for t in model.outputs:
        groups.fix(out_group.get(t._keras_history.operation.name))
    return groups, out_group, in_group


def _flatten_to_dense_only(model, flatten) -> bool:
    from edgekit.train.graph import consumers
    users = consumers(model).get(flatten.name, [])
    return bool(users) and all(kind(u) == "dense" for u in users)


def _bn_scale(layer) -> np.ndarray:
    params = {v.name: np.asarray(v.numpy(), np.float64) for v in layer.weights}
    n = params["moving_variance"].shape[0]
    return np.abs(params.get("gamma", np.ones(n))) / np.sqrt(params["moving_variance"] + layer.epsilon)


def channel_importance(model, groups, out_group) -> dict[int, np.ndarray]:
    """group -> importance of each channel (see the module docstring)."""
    from edgekit.train.graph import consumers, kernel
    users = consumers(model)
    scores: dict[int, np.ndarray] = {}
    for layer in model.layers:
        if kind(layer) not in ("conv", "dense") or out_group.get(layer.name) is None:
            continue
        g = groups.find(out_group[layer.name])
        if g in groups.fixed:
            continue
        w = np.asarray(kernel(layer).numpy(), np.float64)
        l1 = np.abs(w.reshape(-1, w.shape[-1])).sum(axis=0)
        nxt = users.get(layer.name, [])
        if len(nxt) == 1 and isinstance(nxt[0], keras.layers.BatchNormalization):
            l1 = l1 * _bn_scale(nxt[0])
        l1 = l1 / max(float(l1.mean()), 1e-12)
        scores[g] = scores.get(g, 0.0) + l1
    return scores


def prune_channels(model, fraction: float, skip=(), keep_min: int = 1):
    """A new model with round(fraction * channels) channels removed from every prunable group
    (at least keep_min kept)."""
    from edgekit.train.prune import check_sparsity
    check_sparsity(fraction, "--structured")
    if type(model).__name__ != "Functional":
        raise UnsupportedModelError("structured pruning needs a Functional Keras model (a Sequential one: "
                                    "rebuild it with keras.Input and keras.Model)")
    groups, out_group, in_group = trace_groups(model, skip)
    scores = channel_importance(model, groups, out_group)
    if not scores:
        raise EdgekitError("structured pruning: no channel group of the model can be pruned (every one reaches "
                           "an output, a Concatenate or a skipped layer)")
    keep: dict[int, np.ndarray] = {}
    for g, s in scores.items():
        n = len(s)
        k = max(keep_min, n - int(round(fraction * n)))
        keep[g] = np.sort(np.argsort(-s, kind="stable")[:k])

    def kept(g):
        return None if g is None or groups.find(g) not in keep else keep[groups.find(g)]

    def clone(layer):
        config = layer.get_config()
        k = kind(layer)
        sel = kept(out_group.get(layer.name))
        if sel is not None and k == "conv":
            config["filters"] = len(sel)
        elif sel is not None and k == "dense":
            config["units"] = len(sel)
        return layer.__class__.from_config(config)

    pruned = keras.models.clone_model(model, clone_function=clone)
    for layer in pruned.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        source = model.get_layer(layer.name)
        layer.set_weights(_sliced_weights(source, kept(in_group.get(source.name)),
                                          kept(out_group.get(source.name))))
    return pruned


def _sliced_weights(layer, in_keep, out_keep) -> list[np.ndarray]:
    weights = layer.get_weights()
    k = kind(layer)
    name = type(layer).__name__
    if k in ("conv", "dense"):
        w = weights[0]
        if in_keep is not None:
            rows = in_keep
            if k == "dense":
                rows = _flat_rows(layer, in_keep, w.shape[0])
            w = np.take(w, rows, axis=-2)
        if out_keep is not None:
            w = np.take(w, out_keep, axis=-1)
            weights = [w] + [b[out_keep] for b in weights[1:]]
        else:
            weights = [w] + weights[1:]
        return weights
    if k == "depthwise" and out_keep is not None:
        return [np.take(weights[0], out_keep, axis=-2)] + [b[out_keep] for b in weights[1:]]
    if out_keep is not None and name in ("BatchNormalization", "PReLU"):
        return [np.take(v, out_keep, axis=-1) for v in weights]
    return weights


def _flat_rows(dense, keep: np.ndarray, rows: int) -> np.ndarray:
    """The input rows of a Dense layer that a channel selection keeps: the channels themselves,
    or after a Flatten of [positions, channels], each position's kept channels."""
    src = producers(dense)[0]
    if type(src).__name__ != "Flatten":
        return keep
    channels = int(src.input.shape[-1])
    positions = rows // channels
    return (np.arange(positions)[:, None] * channels + keep[None, :]).reshape(-1)


def macs(model) -> int:
    """Multiply-accumulates of the Conv2D, DepthwiseConv2D and Dense layers for one input."""
    return sum(layer_macs(layer) for layer in model.layers)
