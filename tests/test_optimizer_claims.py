"""The helpers of the optimizer / scaling claims: cross-optimizer pairing, log-log slopes, LoRA+ grids, distances."""

from __future__ import annotations

import numpy as np
import pytest

from toyllora.claims.allora import _optimizers, adam_cancellation
from toyllora.claims.lora import lora_plus_width, rank_stability


def _entry(scores, groups, edge=False):
    return {"scores": list(scores), "groups": list(groups), "n_failed": 0, "at_edge": edge, "lr": 0.1}


def test_label_names_the_optimizer_and_refuses_unknown_ones():
    assert _optimizers.label("allora", "adafactor") == "allora·Adafactor"
    with pytest.raises(ValueError, match="optimizer"):
        _optimizers.label("allora", "lion")


def test_compare_arms_pairs_by_draw_and_seed():
    rng = np.random.default_rng(0)
    b = rng.normal(size=12)
    groups = np.repeat([0, 1, 2], 4)
    d = _optimizers.compare_arms(_entry(b + 1.0, groups), _entry(b, groups, edge=True), "t", "long", "x", "y")
    assert d["mean"] == pytest.approx(1.0) and d["edge"] and d["cell"] == "t/long"
    with pytest.raises(ValueError, match="groups"):
        _optimizers.compare_arms(_entry(b, groups), _entry(b, groups[::-1]), "t", "long", "x", "y")


def test_slopes_recover_a_power_law_and_flag_non_positive_values():
    ranks = [2, 4, 8, 16]
    y = np.array([[3.0 * r ** -0.5 for r in ranks], [r ** 1.0 for r in ranks]])
    assert rank_stability._slopes(ranks, y) == pytest.approx([-0.5, 1.0])
    bad = rank_stability._slopes(ranks, [[1.0, 0.0, 1.0, 1.0]])
    assert np.isnan(bad[0])
    assert rank_stability.slope_summary(bad)["lo"] is None


@pytest.mark.parametrize("lo, hi, stable, collapses", [(-0.19, 0.19, True, False), (-0.2, 0.1, False, False),
                                                       (-0.5, -0.21, False, True), (-0.5, -0.2, False, False)])
def test_stability_thresholds(lo, hi, stable, collapses):
    e = {"lo": lo, "hi": hi}
    assert rank_stability.stable(e) is stable and rank_stability.collapses(e) is collapses


def test_lora_plus_grid_keeps_b_learning_rate_on_the_common_grid():
    p = lora_plus_width.SETUP.fast
    g = lora_plus_width._grid(p)
    m = len(p.lr_b_log2)
    for j, lam in enumerate(p.ratios):
        rows = slice(j * m, (j + 1) * m)
        assert np.allclose(g["lr"][rows] * g["b_ratio"][rows], 2.0 ** np.asarray(p.lr_b_log2))
        assert np.all(g["b_ratio"][rows] == lam)
    assert lora_plus_width.helps({"win": 1, "mean": 0.33}) and not lora_plus_width.helps({"win": 1, "mean": 0.3})


def test_trajectory_distance_is_zero_for_identical_and_relative_to_the_reference():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(3, 5, 2, 4))
    assert np.allclose(adam_cancellation._distance(ref, ref), 0.0)
    d = adam_cancellation._distance(2 * ref, ref)
    assert np.allclose(d[:, -1], 1.0)   # ||2x − x|| / ||x|| at the last record
