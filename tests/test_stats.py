"""toyllora.stats: bootstrap CIs checked against known distributions, paired differences, tables."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from toyllora.protocol import stats


def _plugin_coverage(sampler, mu, n, datasets=100_000, seed=123):
    """Coverage of x̄ ± 1.96·σ̂_ML/√n (the interval the percentile bootstrap approximates), by Monte Carlo."""
    x = sampler(np.random.default_rng(seed), (datasets, n))
    half = 1.959963984540054 * x.std(axis=1) / math.sqrt(n)
    cov = float(np.mean(np.abs(x.mean(axis=1) - mu) <= half))
    return cov, math.sqrt(cov * (1 - cov) / datasets)


SAMPLERS = {"normal": (lambda rng, size: rng.normal(1.5, 2.0, size), 1.5),
            "exponential": (lambda rng, size: rng.exponential(1.0, size), 1.0)}


@pytest.mark.parametrize("dist", list(SAMPLERS))
def test_bootstrap_ci_coverage_on_known_distributions(dist):
    """Coverage of the 95 % percentile CI over M datasets with known mean, against the plug-in normal interval.

    Tolerance: 4 binomial standard errors of both Monte-Carlo estimates, plus (skewed data only) the
    O(1/n) two-sided coverage difference between percentile and normal intervals (Hall 1992, ch. 3).
    """
    sampler, mu = SAMPLERS[dist]
    n, M = 40, 600
    xs = sampler(np.random.default_rng(7), (M, n))
    hits = sum(lo <= mu <= hi for lo, hi in (stats.bootstrap_ci(x, n_boot=1000, seed=i) for i, x in enumerate(xs)))
    cov = hits / M
    expected, mc_se = _plugin_coverage(sampler, mu, n)
    se = math.sqrt(expected * (1 - expected) / M)
    slack = 4 * se + 4 * mc_se + (0.0 if dist == "normal" else 1.0 / n)
    assert abs(cov - expected) <= slack, (cov, expected, slack)
    assert abs(cov - 0.95) <= slack + abs(expected - 0.95)


def test_bootstrap_ci_matches_normal_theory_width():
    """For a large normal sample the percentile CI ≈ x̄ ± 1.96 σ̂/√n (bootstrap MC error ~ 1/sqrt(n_boot))."""
    x = np.random.default_rng(0).normal(0.0, 1.0, 400)
    lo, hi = stats.bootstrap_ci(x, n_boot=4000, seed=1)
    half = 1.96 * x.std() / math.sqrt(x.size)
    assert abs((hi - lo) / 2 - half) <= 4 * half / math.sqrt(2 * 4000) + 0.05 * half


@given(st.integers(0, 2**31 - 1), st.sampled_from([5, 12, 30]), st.floats(-3, 3))
def test_paired_difference_of_shifted_copy_is_exact(seed, n, shift):
    b = np.random.default_rng(seed).normal(size=n)
    d = stats.paired_difference(b + shift, b, seed=seed)
    assert d["mean"] == pytest.approx(shift, abs=1e-12)
    assert d["lo"] == pytest.approx(shift, abs=1e-12) and d["hi"] == pytest.approx(shift, abs=1e-12)
    assert d["win"] == (1 if shift > 1e-12 else (-1 if shift < -1e-12 else 0))


@given(st.integers(0, 2**31 - 1), st.sampled_from([4, 10, 25]))
def test_paired_difference_antisymmetric_and_ci_contains_mean(seed, n):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    d1, d2 = stats.paired_difference(a, b, seed=3), stats.paired_difference(b, a, seed=3)
    assert d1["mean"] == pytest.approx(-d2["mean"])
    assert d1["win"] == -d2["win"]
    assert d1["lo"] <= d1["mean"] <= d1["hi"]
    assert d1["win"] == (1 if d1["lo"] > 0 else (-1 if d1["hi"] < 0 else 0))


def test_win_only_when_interval_excludes_zero():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=16)
    assert stats.paired_difference(noise + 5.0, np.zeros(16))["win"] == 1
    assert stats.paired_difference(noise - 5.0, np.zeros(16))["win"] == -1
    tie = stats.paired_difference(noise - noise.mean(), np.zeros(16))
    assert tie["win"] == 0 and tie["lo"] < 0 < tie["hi"]


def test_seeded_and_reproducible():
    x = np.random.default_rng(1).normal(size=20)
    assert stats.bootstrap_ci(x, seed=5) == stats.bootstrap_ci(x, seed=5)


def test_tally_counts():
    ds = [{"mean": 1.0, "win": 1}, {"mean": -0.5, "win": 0}, {"mean": -2.0, "win": -1}, {"mean": 0.2, "win": 0}]
    t = stats.tally(ds)
    assert (t["n"], t["wins"], t["losses"], t["ties"], t["ahead"]) == (4, 1, 1, 2, 2)
    assert t["mean_difference"] == pytest.approx(-1.3 / 4)


def test_markdown_table_and_text():
    md = stats.markdown_table(["a", "b"], [[1, "x|y"]])
    assert md.splitlines() == ["| a | b |", "|---|---|", "| 1 | x/y |"]
    assert stats.mean_std([1.0, 3.0]) == "2 ± 1.41"
    d = stats.paired_difference([1.0, 1.1, 0.9], [0.0, 0.0, 0.0])
    assert stats.ci_text(d).endswith("win")


@pytest.mark.parametrize("bad, field", [
    (lambda: stats.describe([]), "x:"),
    (lambda: stats.describe([1.0, float("nan")]), "x:"),
    (lambda: stats.paired_difference([1.0, 2.0], [1.0]), "b:"),
    (lambda: stats.bootstrap_ci([1.0], level=95), "level:"),
    (lambda: stats.bootstrap_means([1.0], n_boot=0), "n_boot:"),
    (lambda: stats.markdown_table(["a"], [[1, 2]]), "rows:"),
])
def test_bad_input(bad, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        bad()
