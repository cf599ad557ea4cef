"""The ripple claims' verdict rules and learning-rate selection (on synthetic measurements, so every branch
is reachable), and one claim's fast measurement and figure (NumPy only, about a second)."""

import numpy as np
import pytest

from toyllora.claims.allora import input_gradient
from toyllora.claims.ripple import _common, bound, coupling, normalization, performance


# -- verdict rules -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("violations, attained, frac, want", [
    (0, 1.0, 0.9, "supported"), (0, 1.0, 0.1, "partly supported"), (1, 1.0, 0.9, "not supported"),
    (0, 0.5, 0.9, "not supported")])
def test_bound_verdict(violations, attained, frac, want):
    m = {"violations": violations, "aligned_min_realized_over_bound": attained,
         "random_median_exponent_fraction": frac}
    assert bound.verdict(m) == want


@pytest.mark.parametrize("rms, layer, want", [
    (0.9, 0.8, "supported"), (0.01, 0.05, "not supported"), (0.9, 0.01, "partly supported"),
    (0.3, 0.3, "partly supported")])
def test_normalization_verdict(rms, layer, want):
    assert normalization.verdict({"aligned_median_exponent_rms": rms,
                                  "aligned_median_exponent_layer": layer}) == want


@pytest.mark.parametrize("with_s, with_L, want", [
    ({"2": 0.5, "4": 0.3}, 0.5, "supported"), ({"2": 0.5, "4": 0.1}, 0.5, "partly supported"),
    ({"2": 0.5, "4": 0.3}, 0.0, "partly supported"), ({"2": 0.0, "4": 0.1}, -0.2, "not supported")])
def test_coupling_verdict(with_s, with_L, want):
    assert coupling.verdict({"growth_with_s": with_s, "growth_with_L_at_max_s": with_L}) == want


@pytest.mark.parametrize("wins, losses, wins_at_max, cells_at_max, want", [
    (0, 0, 0, 4, "inconclusive"), (4, 0, 2, 4, "supported"), (3, 0, 1, 4, "partly supported"),
    (1, 1, 0, 4, "not supported"), (3, 1, 2, 4, "partly supported")])
def test_performance_verdict(wins, losses, wins_at_max, cells_at_max, want):
    m = {"wins": wins, "losses": losses, "wins_at_Lmax": wins_at_max, "cells_at_Lmax": cells_at_max}
    assert performance.verdict(m) == want


@pytest.mark.parametrize("mech_a, mech_s, wins, losses, want", [
    (0.0, 0.5, 4, 0, "supported"), (0.0, 0.5, 0, 0, "inconclusive"), (0.0, 0.5, 0, 2, "not supported"),
    (0.0, 0.5, 1, 0, "partly supported"), (0.1, 0.5, 6, 0, "not supported"), (0.0, 0.0, 6, 0, "not supported")])
def test_input_gradient_verdict(mech_a, mech_s, wins, losses, want):
    m = {"mechanism": {"allora_vs_lora_rel": mech_a, "scaled_vs_allora_rel": mech_s}, "wins": wins,
         "losses": losses, "n_cells": 6}
    assert input_gradient.verdict(m) == want


# -- learning-rate selection and comparison --------------------------------------------------------------
def _sweep(train, diverged):
    train = np.asarray(train, float)
    return {"train": train, "test": 2 * train, "steps": np.arange(train.shape[-1]) * 10,
            "diverged": np.asarray(diverged)}


def test_tuned_picks_the_best_never_diverged_lr():
    # (G=3 lrs, S=2 seeds, records at steps 0, 10, 20)
    train = [[[1, .5, .4], [1, .5, .4]], [[1, .1, .01], [1, .1, .03]], [[1, .0, .0], [1, .0, .0]]]
    sw = _sweep(train, [[-1, -1], [-1, -1], [-1, 15]])
    lrs = (0.1, 0.2, 0.4)
    short = _common.tuned(sw, 10, lrs)
    assert short["lr"] == 0.4                       # diverged only after step 10: still eligible at 10
    long = _common.tuned(sw, 20, lrs)
    assert long["lr"] == 0.2 and np.isclose(long["mean"], 0.02) and long["test_mean"] == pytest.approx(0.04)
    assert np.isclose(long["std"], np.std([0.01, 0.03], ddof=1)) and not long["edge_of_grid"]
    none = _common.tuned(_sweep(train, [[1, 1], [1, 1], [1, 1]]), 20, lrs)
    assert none["lr"] is None


def test_compare_sign_and_scale():
    a = {"mean": 1.0, "se": 0.1}
    b = {"mean": 2.0, "se": 0.1}
    assert _common.compare(a, b) == pytest.approx(1.0 / np.hypot(0.1, 0.1))
    assert _common.compare(b, a) < -2
    assert np.isnan(_common.compare({"mean": None}, b))


# -- one claim, fast: its measurement and its figure from the record -------------------------------------
def test_bound_figure_script_runs_fast(tmp_path):
    from toyllora.harness import registry

    rec = registry.run("ripple.bound", seeds=(0,), fast=True, out_dir=tmp_path)
    assert rec["measurements"]["violations"] == 0
    assert rec["measurements"]["aligned_min_realized_over_bound"] > 0.999
    assert (tmp_path / rec["figures"][0]).stat().st_size > 0
