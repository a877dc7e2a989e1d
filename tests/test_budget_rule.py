"""The budget rule and its calibration (edgekit.budget), on synthetic confidences: pure numpy,
no model. The C's side of the same rule is checked against it in test_budget.py."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edgekit.budget import (ALWAYS, NEVER, BudgetSpec, calibrate, confidence, decide, default_battery_mv,
                            default_losses, exit_costs, level_cost)
from edgekit.errors import EdgekitError
from edgekit.lower.exits import ExitSchedule, ExitStage


def test_confidence_is_integer_margin_or_top_score():
    s = np.array([[5, 5, -128], [127, -128, 0], [-3, -2, -1]], np.int8)
    assert confidence(s, "margin").tolist() == [0, 127, 1]      # equal maxima: no margin
    assert confidence(s, "max").tolist() == [5, 127, -1]
    with pytest.raises(EdgekitError, match="--exit-rule"):
        confidence(s, "entropy")


def test_decide_takes_the_first_confident_exit_and_skips_never():
    conf = np.array([[10, 0, 0], [3, 50, 0], [3, 3, 0], [200, 200, 0]])
    assert decide(conf, [5, 40, ALWAYS]).tolist() == [0, 1, 2, 0]
    assert decide(conf, [NEVER, 40, ALWAYS]).tolist() == [2, 1, 2, 1]
    assert decide(conf, [ALWAYS, NEVER, NEVER]).tolist() == [0, 0, 0, 0]


def _schedule():
    return ExitSchedule(stages=(ExitStage(0, (0, 1), (2, 3), 100, 10), ExitStage(1, (4, 5), (6, 7), 200, 20),
                                ExitStage(2, (8, 9), (10, 10), 300, 5)), classes=10)


def test_cost_counts_only_the_heads_a_level_runs():
    s = _schedule()
    taken = np.array([0, 1, 2])
    assert level_cost(s, taken, [5, 7, ALWAYS]).tolist() == [110, 330, 635]
    assert level_cost(s, taken, [NEVER, 7, ALWAYS]).tolist() == [110, 320, 625]   # head 0 skipped
    assert exit_costs([100, 200, 300], [10, 20, 5], [NEVER] * 3)[2] == 605     # the model without its exits


def test_calibration_meets_each_levels_loss_at_falling_cost():
    rng = np.random.default_rng(0)
    n = 2000
    conf = rng.integers(0, 256, size=(n, 3))
    # an exit is right more often when it is confident; the final exit 90 %
    correct = np.stack([rng.random(n) < 0.3 + 0.6 * conf[:, 0] / 255,
                        rng.random(n) < 0.5 + 0.45 * conf[:, 1] / 255, rng.random(n) < 0.9], axis=1)
    losses = default_losses(4)
    assert losses[0] == math.inf and losses[-1] == 0.0 and losses[1:3] == [2.0, 1.0]
    levels = calibrate(_schedule(), conf, correct, losses)
    full = correct[:, 2].mean()
    assert levels[0].thresholds == [ALWAYS, NEVER, NEVER] and levels[0].mean_macs == 110
    costs = [lv.mean_macs for lv in levels]
    assert costs == sorted(costs) and costs[0] < costs[-1]
    for lv, loss in zip(levels[1:], losses[1:]):
        assert lv.accuracy >= full - loss / 100 - 1e-12
        taken = decide(conf, lv.thresholds)
        assert lv.accuracy == pytest.approx(correct[np.arange(n), taken].mean())
        assert lv.mean_macs == pytest.approx(level_cost(_schedule(), taken, lv.thresholds).mean())
    assert levels[1].exits[0] + levels[1].exits[1] > 0.1       # the middle levels do exit early


@pytest.mark.parametrize("spec, words", [
    (BudgetSpec(1, "v.npz"), ["--budgets 1"]),
    (BudgetSpec(3, "v.npz", losses=[1, 0]), ["--budget-loss", "3 levels"]),
    (BudgetSpec(3, "v.npz", losses=[0, 1, 2]), ["--budget-loss", "grow"]),
    (BudgetSpec(3, "v.npz", rule="top"), ["--exit-rule"]),
    (BudgetSpec(3, "v.npz", battery_mv=[3500, 3700]), ["--battery-mv", "falling"]),
    (BudgetSpec(3, "v.npz", battery_mv=[3500]), ["--battery-mv", "2 millivolt"]),
])
def test_bad_budget_options_are_one_sentence(spec, words):
    with pytest.raises(EdgekitError) as e:
        spec.check()
    for w in words:
        assert w in str(e.value)


def test_default_battery_floors_fall():
    for levels in (2, 3, 4, 6):
        mv = default_battery_mv(levels)
        assert len(mv) == levels - 1 and mv == sorted(mv, reverse=True) and len(set(mv)) == len(mv)
