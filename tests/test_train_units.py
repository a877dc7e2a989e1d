"""edgekit.train's numerical parts without Keras: exact magnitude masks, pruning schedules,
1-D k-means, cluster constraints, the data checks (fast tier)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from edgekit.errors import EdgekitError
from edgekit.train.cluster import cluster_labels, kmeans_1d
from edgekit.train.constraints import Rule, centroids
from edgekit.train.data import check_data
from edgekit.train.prune import PolynomialDecay, StepSchedule, check_sparsity, magnitude_masks


@pytest.mark.parametrize("sparsity", [0.0, 0.13, 0.5, 0.8, 0.97])
def test_layer_masks_are_exact_and_drop_the_smallest(sparsity):
    rng = np.random.default_rng(1)
    kernels = [rng.normal(size=s).astype(np.float32) for s in [(3, 3, 1, 7), (3, 3, 7, 1), (1, 1, 7, 13), (13, 5)]]
    for w, m in zip(kernels, magnitude_masks(kernels, sparsity, "layer")):
        assert m.shape == w.shape
        assert int((~m).sum()) == int(round(sparsity * w.size))
        if m.any() and (~m).any():
            assert np.abs(w[~m]).max() <= np.abs(w[m]).min()


def test_ties_are_broken_by_position_to_hit_the_count():
    w = np.zeros((4, 5), np.float32)            # all equal: still exactly round(0.5 * 20) removed
    (m,) = magnitude_masks([w], 0.5)
    assert int((~m).sum()) == 10 and not m.reshape(-1)[:10].any()


def test_global_masks_use_one_threshold():
    rng = np.random.default_rng(2)
    big, small = rng.normal(size=(50,)) * 10, rng.normal(size=(150,)) * 0.1
    masks = magnitude_masks([big, small], 0.6, "global")
    assert sum(int((~m).sum()) for m in masks) == 120
    assert (~masks[1]).sum() > (~masks[0]).sum()        # the small layer loses more
    kept = np.concatenate([np.abs(big)[masks[0]], np.abs(small)[masks[1]]])
    gone = np.concatenate([np.abs(big)[~masks[0]], np.abs(small)[~masks[1]]])
    assert gone.max() <= kept.min()


def test_polynomial_schedule():
    s = PolynomialDecay(0.8, end_step=100, begin_step=10, frequency=10)
    assert s.at(5) is None and s.at(11) is None and s.at(101) is None
    assert s.at(10) == pytest.approx(0.0)
    assert s.at(100) == pytest.approx(0.8)
    values = [s.at(k) for k in range(10, 101, 10)]
    assert all(a < b for a, b in zip(values, values[1:]))     # rising to the target
    assert s.at(55) is None and PolynomialDecay(0.5, end_step=7, frequency=3).at(7) == pytest.approx(0.5)


def test_step_schedule_and_bad_schedules():
    s = StepSchedule(((0, 0.2), (50, 0.5), (80, 0.7)))
    assert (s.at(0), s.at(50), s.at(80), s.at(81), s.final, s.last_step) == (0.2, 0.5, 0.7, None, 0.7, 80)
    with pytest.raises(EdgekitError, match="increase"):
        StepSchedule(((10, 0.2), (5, 0.5)))
    with pytest.raises(EdgekitError, match="end_step"):
        PolynomialDecay(0.5, end_step=0)
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(EdgekitError, match="below 1"):
            check_sparsity(bad, "--prune")


def test_kmeans_linear_init_and_labels():
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(-1, 0.05, 300), rng.normal(0.5, 0.05, 300), [4.0]])
    c, labels = kmeans_1d(values, 3)
    assert len(c) == 3 and np.all(np.diff(c) > 0)
    assert c[-1] == pytest.approx(4.0)                 # linear init keeps the rare large weight
    assert np.allclose(c, [values[labels == i].mean() for i in range(3)])
    c1, l1 = kmeans_1d(np.full(10, 0.25), 16)          # fewer distinct values than clusters
    assert list(c1) == [0.25] and set(l1) == {0}


def test_cluster_labels_keep_pruned_weights_out():
    rng = np.random.default_rng(4)
    w = rng.normal(size=200)
    mask = rng.random(200) > 0.7
    labels = cluster_labels(w, 16, mask)
    assert np.all(labels[~mask] == -1)
    assert labels[mask].max() < 15                      # k - 1 values beside the zeros
    rule = Rule(layer=None, mask=mask, labels=labels)
    shared = rule.apply((w + rng.normal(size=200) * 0.01).astype(np.float32))
    assert np.all(shared[~mask] == 0.0)
    assert len(np.unique(shared)) <= 16
    again = rule.apply(shared)
    assert np.array_equal(again, shared)               # applying twice changes nothing


def test_centroids_are_cluster_means():
    w = np.array([1.0, 3.0, 10.0, 0.0], np.float32)
    labels = np.array([0, 0, 1, -1])
    assert np.allclose(centroids(w, labels), [2.0, 10.0])


def _model(in_shape, out_shape):
    t = lambda shape: SimpleNamespace(shape=(None, *shape))      # noqa: E731
    return SimpleNamespace(inputs=[t(in_shape)], outputs=[t(out_shape)])


def test_data_checks():
    m = _model((4, 4, 1), (3,))
    x = np.zeros((5, 4, 4, 1), np.float32)
    d = check_data(m, x, np.array([0, 1, 2, 1, 0]))
    assert d.classes == 3 and d.y.dtype == np.int64
    d = check_data(m, x, np.eye(3)[[0, 1, 2, 1, 0]])            # one-hot
    assert d.classes == 3 and list(d.y) == [0, 1, 2, 1, 0]
    cases = [
        (x[:, :3], np.zeros(5, int), "expects [N, 4, 4, 1]"),
        (x.astype(np.uint8), np.zeros(5, int), "uint8"),
        (x, np.zeros(4, int), "5 samples but y has 4"),
        (x, np.array([0, 1, 2, 3, 0]), "0 to 2"),
        (x, np.full(5, 0.5), "not class indices"),
        (np.full((5, 4, 4, 1), np.nan, np.float32), np.zeros(5, int), "NaN"),
    ]
    for xs, ys, words in cases:
        with pytest.raises(EdgekitError, match=words.replace("[", r"\[").replace("]", r"\]")):
            check_data(m, xs, ys, "--data d.npz")
    reg = check_data(_model((8,), (8,)), np.ones((3, 8), np.float32), np.ones((3, 8)))
    assert reg.classes == 0 and reg.y.dtype == np.float32      # an autoencoder's targets
