"""k-means weight sharing (Deep Compression's clustering) for Conv2D, DepthwiseConv2D and Dense
kernels, for Keras 3.

Each layer's weights (scope 'layer') or each output channel's (scope 'channel') are clustered
into at most k centroids by one-dimensional k-means with linear initialization (centroids evenly
spaced between the smallest and largest weight, which Han et al. found best: it keeps the rare
large weights). Every weight is replaced by its centroid; afterwards the assignment is a
`Constraints` entry, so fine-tuning moves each centroid by the mean step of its members and the
weights stay shared. A pruned layer keeps its zeros: its masked weights form the k-th cluster,
held at 0.0, and the others share k-1 centroids.

The shared values survive int8 quantization: a channel's int8 values are a function of its float
values, so a channel with at most k distinct floats has at most k distinct int8 values, and
`edgekit export --weights lut4` (k <= 16) or Huffman over the indices takes every clustered layer.
"""
from __future__ import annotations

import numpy as np

from edgekit.errors import EdgekitError
from edgekit.train.constraints import Constraints
from edgekit.train.graph import channel_view, kernel, stage_layers


def kmeans_1d(values: np.ndarray, k: int, iterations: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """(centroids [<= k], labels) of 1-D k-means with linear initialization."""
    values = np.asarray(values, np.float64).reshape(-1)
    lo, hi = float(values.min()), float(values.max())
    if lo == hi or k == 1:
        c = np.array([values.mean()])
        return c, np.zeros(values.size, np.int64)
    c = np.linspace(lo, hi, k)
    for _ in range(iterations):
        labels = np.searchsorted((c[1:] + c[:-1]) / 2, values)
        counts = np.bincount(labels, minlength=len(c))
        sums = np.bincount(labels, weights=values, minlength=len(c))
        new = np.where(counts > 0, sums / np.maximum(counts, 1), c)
        if np.array_equal(new, c):
            break
        c = new
    labels = np.searchsorted((c[1:] + c[:-1]) / 2, values)
    used = np.unique(labels)                    # drop empty clusters, renumber 0..len(used)-1
    remap = np.full(len(c), -1, np.int64)
    remap[used] = np.arange(len(used))
    return c[used], remap[labels]


def cluster_labels(w: np.ndarray, k: int, mask: np.ndarray | None) -> np.ndarray:
    """Labels for one group of weights (a layer or a channel): -1 where masked, else 0..k'-1
    with k' <= k (k-1 when some weights are masked: the zeros are the k-th value)."""
    labels = np.full(w.shape, -1, np.int64)
    keep = np.ones(w.shape, bool) if mask is None else mask
    if keep.any():
        clusters = k - 1 if not keep.all() else k
        _, lab = kmeans_1d(w[keep], max(clusters, 1))
        labels[keep] = lab
    return labels


def cluster(model, clusters: int = 16, scope: str = "layer", skip=(),
            constraints: Constraints | None = None) -> Constraints:
    """Cluster every Conv2D / DepthwiseConv2D / Dense kernel of `model` to at most `clusters`
    values (per layer or per output channel), replacing the weights by their centroids now, and
    record the assignment in `constraints` (keeping any pruning mask there). Returns them."""
    if not 2 <= int(clusters) <= 256:
        raise EdgekitError(f"--clusters {clusters}: pass 2 to 256 (16 fits --weights lut4, 256 lut8)")
    if scope not in ("layer", "channel"):
        raise EdgekitError(f"clustering scope '{scope}': pass 'layer' or 'channel'")
    constraints = constraints if constraints is not None else Constraints()
    for layer in stage_layers(model, "clustering", skip):
        v = kernel(layer)
        w = np.asarray(v.numpy())
        rule = constraints.rule(layer)
        mask = rule.mask if rule.mask is not None else None
        if scope == "layer":
            labels = cluster_labels(w, clusters, mask)
        else:
            wc = channel_view(layer, w)
            mc = None if mask is None else channel_view(layer, mask)
            labels = np.empty(wc.shape, np.int64)
            for c in range(wc.shape[-1]):
                lab = cluster_labels(wc[..., c], clusters, None if mc is None else mc[..., c])
                labels[..., c] = np.where(lab >= 0, lab + c * clusters, -1)
            labels = labels.reshape(w.shape)
        rule.labels = labels
    constraints.apply()
    return constraints


def per_channel(constraints: Constraints) -> Constraints:
    """The same clusters split by output channel (label + channel * clusters): what a kernel needs
    once BatchNormalization's per-channel scale is folded into it, which gives each channel its
    own values."""
    out = Constraints()
    for name, r in constraints.rules.items():
        labels = r.labels
        if labels is not None:
            lc = channel_view(r.layer, labels)
            n = int(lc.max()) + 1 if (lc >= 0).any() else 1
            channel = np.arange(lc.shape[-1])
            lc = np.where(lc >= 0, lc + channel * n, -1)
            labels = lc.reshape(r.labels.shape)
        out.rules[name] = type(r)(r.layer, r.mask, labels)
    return out


def max_distinct_per_channel(layer, w: np.ndarray) -> int:
    """The largest number of distinct values in one output channel of `layer`'s kernel `w`."""
    wc = channel_view(layer, w)
    wc = wc.reshape(-1, wc.shape[-1])
    return max(len(np.unique(wc[:, c])) for c in range(wc.shape[1]))


def distinct_values(model) -> dict[str, int]:
    """max_distinct_per_channel of each compressed kernel."""
    from edgekit.train.graph import kind
    return {layer.name: max_distinct_per_channel(layer, np.asarray(kernel(layer).numpy()))
            for layer in model.layers if kind(layer) is not None}
