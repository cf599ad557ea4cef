"""The ripple claims' verdict rules (on synthetic measurements, so every branch is reachable), the shared
protocol helpers (LoRA at any s as one compiled program, Holm with grid edges counting for neither side), and
one claim's fast measurement and figure (NumPy only, about a second)."""

import dataclasses

import numpy as np
import pytest

from toyllora import protocol
from toyllora.claims.allora import input_gradient
from toyllora.claims.ripple import _common, bound, coupling, hurts, normalization, performance
from toyllora.testing import tol


# -- verdict rules -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("violations, attained, lo, hi, want", [
    (0, 1.0, 0.6, 0.9, "supported"), (0, 1.0, 0.0, 0.2, "partly supported"), (0, 1.0, 0.4, 0.6, "inconclusive"),
    (1, 1.0, 0.6, 0.9, "not supported"), (0, 0.5, 0.6, 0.9, "not supported")])
def test_bound_verdict(violations, attained, lo, hi, want):
    m = {"violations": violations, "aligned_min_realized_over_bound": attained,
         "random_exponent_fraction_lo": lo, "random_exponent_fraction_hi": hi}
    assert bound.verdict(m) == want


@pytest.mark.parametrize("compounds, like, below, control, want", [
    (8, 8, 0, 0.0, "supported"), (8, 6, 2, 0.0, "partly supported"), (5, 8, 0, 0.0, "partly supported"),
    (0, 0, 8, 0.0, "not supported"), (8, 7, 0, 0.0, "inconclusive"), (8, 8, 0, 0.5, "inconclusive")])
def test_normalization_verdict(compounds, like, below, control, want):
    m = {"compounds": compounds, "like_no_norm": like, "below_no_norm": below, "n_cells": 8,
         "control_max_abs_fraction": control}
    assert normalization.verdict(m) == want


def _intervals(*pairs):
    return {f"c{i}": {"lo": lo, "hi": hi} for i, (lo, hi) in enumerate(pairs)}


@pytest.mark.parametrize("with_s, with_L, want", [
    (((0.3, 0.5),), ((0.3, 0.5),), "supported"),
    (((0.0, 0.0),), ((-0.5, -0.1),), "not supported"),         # invariant at a fixed function, falls with depth
    (((0.3, 0.5),), ((-0.5, -0.1),), "partly supported"),
    (((0.0, 0.0),), ((0.3, 0.5), (0.1, 0.4)), "inconclusive"),  # depth: one interval straddles log 1.2
    (((0.0, 0.0),), ((0.3, 0.5), (-0.2, 0.1)), "not supported"),  # depth: one decided counterexample
])
def test_coupling_verdict(with_s, with_L, want):
    assert coupling.verdict({"with_s_fixed_function": _intervals(*with_s),
                             "with_depth": _intervals(*with_L)}) == want


@pytest.mark.parametrize("inc, dec, edge, want", [
    (8, 0, 0, "supported"), (7, 0, 1, "partly supported"), (2, 1, 0, "partly supported"),
    (0, 2, 0, "not supported"), (0, 0, 0, "inconclusive")])
def test_hurts_verdict(inc, dec, edge, want):
    assert hurts.verdict({"increases": inc, "decreases": dec, "n_cells": 8, "at_edge": edge}) == want


@pytest.mark.parametrize("wins, losses, wins_top, edge_top, want", [
    (8, 0, 8, 0, "supported"), (8, 0, 7, 0, "not supported"), (9, 1, 8, 0, "partly supported"),
    (11, 9, 1, 0, "not supported"), (8, 0, 4, 9, "inconclusive")])
def test_performance_verdict(wins, losses, wins_top, edge_top, want):
    m = {"wins": wins, "losses": losses, "at_Lmax": {"n": 16, "wins": wins_top, "at_edge": edge_top}}
    assert performance.verdict(m) == want


@pytest.mark.parametrize("mech_a, mech_s, wins, losses, edge, want", [
    (0.0, 0.5, 3, 0, 0, "supported"), (0.0, 0.5, 0, 0, 0, "partly supported"), (0.0, 0.5, 0, 3, 0, "not supported"),
    (0.0, 0.5, 1, 0, 0, "partly supported"), (0.1, 0.5, 6, 0, 0, "not supported"),
    (0.0, 0.0, 6, 0, 0, "not supported"), (0.0, 0.5, 1, 0, 4, "inconclusive")])
def test_input_gradient_verdict(mech_a, mech_s, wins, losses, edge, want):
    m = {"mechanism": {"allora_vs_lora_rel": mech_a, "scaled_vs_allora_rel": mech_s}, "wins": wins,
         "losses": losses, "n_cells": 6, "at_edge": edge}
    assert input_gradient.verdict(m) == want


# -- the shared protocol helpers -------------------------------------------------------------------------
def _diff(p, mean, edge=False):
    return {"p": p, "mean": mean, "effect": mean, "win": int(np.sign(mean)) if p <= 0.05 else 0, "alpha": 0.05,
            "consistent_over_groups": True, "at_edge": edge, "optimizer": "sgd"}


def test_holm_counts_edge_cells_for_neither_side():
    diffs = [_diff(0.001, 1.0), _diff(0.001, -1.0, edge=True), _diff(0.02, 1.0), _diff(0.5, -1.0)]
    out = _common.holm_counting_edges(diffs)
    assert [d["win"] for d in out] == [1, 0, 1, 0]
    assert out[1]["p_adjusted"] is None and out[1]["win_unadjusted"] == -1
    # Holm over the 3 interior comparisons only: 3 × 0.001, 2 × 0.02, 1 × 0.5
    assert [out[i]["p_adjusted"] for i in (0, 2, 3)] == pytest.approx([0.003, 0.04, 0.5])
    assert _common.count(out) == {"n": 4, "wins": 2, "losses": 0, "at_edge": 1, "ties": 1}


def test_selected_val_score_is_the_selected_points_score():
    res = {"grid": {"lr": [0.1, 0.2, 0.4], "b_ratio": [1.0, 1.0, 1.0]},
           "long": {"lr": 0.2, "b_ratio": 1.0, "val_scores": [10.0, 30.0, 20.0]}}
    assert _common.selected_val_score(res, "long") == 30.0


def test_lora_lr_undoes_the_grid_placement():
    assert _common.lora_lr(1.0, 4.0, "sgd") == 1 / 16 and _common.lora_lr(1.0, 4.0, "adam") == 1 / 4


@pytest.mark.parametrize("s", [0.25, 4.0])
def test_lora_at_scale_runs_lora_at_s(s):
    """LoRA(s) as LoRA(1) with B' = sB: SGD at the same A rate is the same run (to rounding); Adam to its ε."""
    t = _common.Toy(budget=dataclasses.replace(protocol.FAST_BUDGET, short=10, long=20, stride=10, batch_size=8), d=4,
                    n_train=16, n_test=8)
    task = _common.toy_tasks("plain", 2, 0, t)[0]
    direct = protocol.make_trainer(task, "lora", t.budget, cfg=_common.method_config(_common.lora_name(s), t.rank))
    wrapped = _common.trainer("plain", 2, _common.lora_name(s), t)
    assert isinstance(wrapped, _common.LoraAtScale) and wrapped.s == s
    for opt in ("sgd", "adam"):
        grid_lr = np.array([2.0 ** -4, 2.0 ** -2])
        hp = {"lr": grid_lr, "b_ratio": np.ones(2), "adam": np.full(2, float(opt == "adam"))}
        own = dict(hp, lr=np.array([_common.lora_lr(g, s, opt) for g in grid_lr]))
        a = np.asarray(direct.sweep(task.base, task.data, own, [0, 1]).metrics["train_loss"], np.float64)
        b = np.asarray(wrapped.sweep(task.base, task.data, hp, [0, 1]).metrics["train_loss"], np.float64)
        assert np.max(np.abs(a - b) / np.abs(a)) < (tol(f32=1e-4, f64=1e-9) if opt == "sgd" else 1e-3)


def test_toy_results_share_runs_across_toys_that_differ_only_in_what_they_list():
    t = _common.Toy()
    assert dataclasses.replace(t, depths=(), tasks=(), scales=()) == \
        dataclasses.replace(_common.Toy(depths=(2,), scales=(1.0,)), depths=(), tasks=(), scales=())


def test_plateau_task_starts_a_at_a_small_multiple_of_the_peft_init():
    t = _common.Toy(d=4, n_train=8, n_test=4)
    plain, plateau = _common.toy_tasks("plain", 2, 0, t)[0], _common.toy_tasks("plateau", 2, 0, t)[0]
    cfg = _common.method_config("LoRA s=1", 2)
    import jax
    _, p0 = plain.model_fn(cfg).init(jax.random.key(0), plain.base)
    _, p1 = plateau.model_fn(cfg).init(jax.random.key(0), plateau.base)
    assert np.allclose(np.asarray(p1[0].A), t.plateau_init * np.asarray(p0[0].A))
    assert not np.any(np.asarray(p1[0].B))
    with pytest.raises(ValueError, match=r"^kind: "):
        _common.toy_tasks("flat", 2, 0, t)


# -- one claim, fast: its measurement and its figure from the record -------------------------------------
def test_bound_figure_script_runs_fast(tmp_path):
    from toyllora.harness import registry

    rec = registry.run("ripple.bound", seeds=(0,), fast=True, out_dir=tmp_path)
    assert rec["measurements"]["violations"] == 0
    assert rec["measurements"]["aligned_min_realized_over_bound"] > 0.999
    assert (tmp_path / rec["figures"][0]).stat().st_size > 0
