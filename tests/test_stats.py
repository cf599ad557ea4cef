"""toyllora.protocol.stats: the head-to-head statistics keep their promises, measured by simulation.

* error rate: between identical methods, paired_difference declares a win or a loss in at most
  ``alpha`` of comparisons (+ 3 Monte-Carlo standard errors) at 8, 12 and 16 seeds, for normal,
  heavy-tailed (Student t, 2 df) and skewed (lognormal scores) data, with and without task draws;
* power against a shift of 1 SD, close to the t-test's (the optimal test for normal data);
* multiplicity: Holm keeps the family-wise error rate over 24 null comparisons, raw counting does not;
* reference implementations: the sign-flip test against scipy.stats.permutation_test, Holm against
  statsmodels, BH against scipy and statsmodels, the t-interval against scipy.stats.ttest_1samp;
* the reason for the change: the old percentile-bootstrap rule is anti-conservative at 8 seeds.

The measured rates are printed (``pytest -s``) with the prefix ``[stats]`` so they can be reported.
Every simulation is vectorized over replicates (:func:`stats.paired_difference_batch`, which the single
call uses) and seeded, so the file is deterministic and fast.
"""

import doctest
import itertools
import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from toyllora.protocol import stats

ALPHA = 0.05
R = 4000                                   # replicates of each null simulation


def _se(p, m):
    return math.sqrt(p * (1 - p) / m)


def _bound(m, alpha=ALPHA):
    """Nominal level + 3 binomial standard errors of a rate estimated from ``m`` replicates."""
    return alpha + 3 * _se(alpha, m)


def _report(what, rate, m):
    print(f"[stats] {what}: {rate:.4f} (± {_se(rate, m):.4f}, {m} replicates)")


def _null_arms(rng, dist, shape):
    """Scores of two identical methods on the same seeds: a shared seed effect plus independent noise."""
    shared = rng.normal(50.0, 5.0, shape)
    if dist == "normal":
        return shared + rng.normal(size=shape), shared + rng.normal(size=shape)
    if dist == "t2":  # heavy tails: infinite variance
        return shared + rng.standard_t(2, shape), shared + rng.standard_t(2, shape)
    if dist == "lognormal":  # skewed scores; their difference is symmetric because the arms are identical
        return shared + rng.lognormal(0.0, 1.0, shape), shared + rng.lognormal(0.0, 1.0, shape)
    raise AssertionError(dist)


DISTS = ["normal", "t2", "lognormal"]


# -- error rate under the null ---------------------------------------------------------------------------


@pytest.mark.parametrize("dist", DISTS)
@pytest.mark.parametrize("n", [8, 12, 16])
def test_false_win_rate_at_most_alpha(n, dist):
    a, b = _null_arms(np.random.default_rng(1000 + n), dist, (R, n))
    r = stats.paired_difference_batch(a, b, alpha=ALPHA)
    rate = float(np.mean(r["win"] != 0))
    _report(f"false win+loss rate, sign-flip, n={n}, {dist}", rate, R)
    assert rate <= _bound(R), rate
    assert rate >= 0.02, rate  # not absurdly conservative either (exact size at n=8: 12/256 = 0.047)
    # the interval is a t-interval: it excludes 0 about as often as the t-test rejects (≈ alpha for normal)
    excl = float(np.mean((r["lo"] > 0) | (r["hi"] < 0)))
    _report(f"t-interval excludes 0, n={n}, {dist}", excl, R)
    assert excl <= _bound(R), excl


def _null_draws(rng, dist, draws, seeds, reps):
    """Identical methods on ``draws`` task draws × ``seeds`` seeds, with draw-level random effects: every
    draw has its own level and its own noise scale (lognormal, a factor ~3 apart), shared by both arms."""
    level = rng.normal(0.0, 10.0, (reps, draws, 1))
    scale = np.exp(rng.normal(0.0, 1.0, (reps, draws, 1)))
    a, b = _null_arms(rng, dist, (reps, draws, seeds))
    groups = np.repeat(np.arange(draws), seeds)
    return (level + scale * a).reshape(reps, -1), (level + scale * b).reshape(reps, -1), groups


@pytest.mark.parametrize("dist", ["normal", "t2"])
@pytest.mark.parametrize("seeds", [4, 5, 6])
def test_false_win_rate_with_task_draws(seeds, dist):
    a, b, groups = _null_draws(np.random.default_rng(2000 + seeds), dist, 3, seeds, R)
    r = stats.paired_difference_batch(a, b, groups=groups, alpha=ALPHA)
    rate = float(np.mean(r["win"] != 0))
    _report(f"false win+loss rate, sign-flip, 3 draws x {seeds} seeds, {dist}", rate, R)
    assert rate <= _bound(R), rate
    # consistency over draws only removes wins: the rate without it is higher or equal
    raw = float(np.mean(r["p"] <= ALPHA))
    assert rate <= raw <= _bound(R)


def test_method_by_draw_interaction_is_outside_the_null_but_bounded():
    """A method × draw interaction (each draw favours a side at random, zero on average over draws) is not
    the null the test is exact for: the test is conditional on the draws. The consistency requirement
    bounds the false-win rate by P(all G draw means share a sign) = 2^(1−G) = 0.25 for G = 3; the rate is
    recorded here, and the draw-level interval (draw_lo, draw_hi; G − 1 df) is the honest one for it."""
    rng = np.random.default_rng(7)
    a, b, groups = _null_draws(rng, "normal", 3, 5, R)
    # interaction SD 1; a paired difference's noise SD is sqrt(2) x its draw's lognormal scale (median 1.41)
    inter = rng.normal(0.0, 1.0, (R, 3, 1)) * np.ones((1, 1, 5))
    r = stats.paired_difference_batch(a + inter.reshape(R, -1), b, groups=groups, alpha=ALPHA)
    rate = float(np.mean(r["win"] != 0))
    draw_excl = float(np.mean((r["draw_lo"] > 0) | (r["draw_hi"] < 0)))
    _report("false win+loss rate under a method x draw interaction (SD 1), 3 x 5", rate, R)
    _report("draw-level t-interval excludes 0 under the same interaction", draw_excl, R)
    assert rate <= 0.25 + 3 * _se(0.25, R)
    assert draw_excl <= 0.05 + 3 * _se(0.05, R) + 0.03   # t over 3 heteroscedastic draw means: approximate


def test_monte_carlo_test_error_rate_beyond_max_exact():
    n, reps = 20, 2000
    a, b = _null_arms(np.random.default_rng(11), "t2", (reps, n))
    r = stats.paired_difference_batch(a, b, max_exact=16, n_resamples=999)
    assert r["test"].startswith("sign-flip, Monte Carlo")
    rate = float(np.mean(r["win"] != 0))
    _report(f"false win+loss rate, Monte-Carlo sign-flip (999), n={n}, t2", rate, reps)
    assert rate <= _bound(reps)


# -- power -----------------------------------------------------------------------------------------------


def _t_test_power(n, delta, alpha=ALPHA):
    crit = scipy.stats.t.ppf(1 - alpha / 2, n - 1)
    nct = scipy.stats.nct(n - 1, delta * math.sqrt(n))
    return float(nct.sf(crit) + nct.cdf(-crit))


def test_power_against_one_sd_shift():
    """Power against d ~ N(1, 1): close to the t-test's (which is optimal for normal data), rising with n."""
    reps, power = 2000, {}
    rng = np.random.default_rng(3)
    for n in (8, 12, 16):
        d = rng.normal(1.0, 1.0, (reps, n))
        w = stats.paired_difference_batch(d, np.zeros_like(d))["win"]
        power[n] = float(np.mean(w == 1))
        ref = _t_test_power(n, 1.0)
        _report(f"power, sign-flip, shift 1 SD, n={n}, normal (t-test: {ref:.3f})", power[n], reps)
        assert ref - 0.08 <= power[n] <= ref + 3 * _se(ref, reps), (n, power[n], ref)
        assert np.all(w >= 0)                               # never a loss against a positive shift
    assert power[8] < power[12] < power[16]


def test_power_with_task_draws():
    """Power against a shift of 1 SD of a paired difference with 3 draws: the draws' own levels cancel in
    the pairing; the consistency requirement costs a little power against the plain t-test on all pairs."""
    reps, rng = 2000, np.random.default_rng(4)
    for seeds in (4, 5, 6):
        groups = np.repeat(np.arange(3), seeds)
        level = rng.normal(0.0, 10.0, (reps, 3, 1)) * np.ones((1, 1, seeds))
        b = level.reshape(reps, -1) + rng.normal(size=(reps, 3 * seeds)) / math.sqrt(2)
        a = level.reshape(reps, -1) + rng.normal(size=(reps, 3 * seeds)) / math.sqrt(2) + 1.0
        p = float(np.mean(stats.paired_difference_batch(a, b, groups=groups)["win"] == 1))
        ref = _t_test_power(3 * seeds, 1.0)
        _report(f"power, sign-flip, shift 1 SD, 3 draws x {seeds} seeds, normal (t-test: {ref:.3f})", p, reps)
        assert ref - 0.12 <= p <= ref + 3 * _se(ref, reps)


# -- why the change: the old percentile-bootstrap rule ---------------------------------------------------


def _old_rule(d, seed):
    """The old decision: win iff the 95 % percentile bootstrap CI (2000 resamples) excludes 0."""
    lo, hi = stats.bootstrap_ci(d, level=0.95, n_boot=2000, seed=seed)
    return 1 if lo > 0 else (-1 if hi < 0 else 0)


def test_old_percentile_bootstrap_is_anti_conservative_at_8_seeds():
    """Regression record of the reason for the change: between identical methods, the old rule declares a
    win or a loss in ~10 % of comparisons at 8 seeds (nominal 5 %); the sign-flip test on the same data
    stays at or below 5 %."""
    reps, n = 2000, 8
    a, b = _null_arms(np.random.default_rng(5), "normal", (reps, n))
    old = float(np.mean([_old_rule(a[i] - b[i], seed=i) != 0 for i in range(reps)]))
    new = float(np.mean(stats.paired_difference_batch(a, b)["win"] != 0))
    _report("false win+loss rate, OLD percentile bootstrap, n=8, normal", old, reps)
    assert old > _bound(reps), old
    assert new <= _bound(reps) < old


# -- multiplicity ----------------------------------------------------------------------------------------


def test_holm_keeps_family_wise_error_rate_raw_counting_does_not():
    families, m, n = 2000, 24, 12
    a, b = _null_arms(np.random.default_rng(6), "normal", (families * m, n))
    r = stats.paired_difference_batch(a, b)
    p = r["p"].reshape(families, m)
    raw = np.mean((p <= ALPHA).any(axis=1))
    holm = np.mean((stats.adjust(p, "holm") <= ALPHA).any(axis=1))
    bh = np.mean((stats.adjust(p, "bh") <= ALPHA).any(axis=1))
    np.testing.assert_array_equal(stats.adjust(p[:5], "holm")[3], stats.adjust(p[3], "holm"))   # a family a row
    for what, v in (("raw counting", raw), ("Holm", holm), ("BH", bh)):
        _report(f"family-wise error rate over {m} null comparisons at n={n}, {what}", float(v), families)
    assert raw > 0.5                     # ≈ 1 − 0.95^24 = 0.71: raw counting finds "wins" in most families
    assert holm <= _bound(families)
    assert bh <= _bound(families)        # under the global null, FDR = FWER


def test_bh_controls_false_discovery_rate_with_true_effects():
    families, m, true, n = 1000, 24, 8, 12
    rng = np.random.default_rng(8)
    d = rng.normal(size=(families, m, n))
    d[:, :true] += 1.5
    p = stats.paired_difference_batch(d.reshape(-1, n), np.zeros((families * m, n)))["p"].reshape(families, m)
    rej = stats.adjust(p, "bh") <= ALPHA
    fdp = rej[:, true:].sum(axis=1) / np.maximum(1, rej.sum(axis=1))
    found = {"bh": rej[:, :true].sum(), "holm": (stats.adjust(p, "holm") <= ALPHA)[:, :true].sum()}
    fdr, sd = float(np.mean(fdp)), float(np.std(fdp))
    print(f"[stats] BH false discovery rate, {true}/{m} true effects of 1.5 SD, n={n}: {fdr:.4f}; "
          f"power BH {found['bh'] / (families * true):.3f}, Holm {found['holm'] / (families * true):.3f}")
    assert fdr <= ALPHA * (m - true) / m + 3 * sd / math.sqrt(families)
    assert found["bh"] >= found["holm"]


def test_holm_matches_statsmodels_and_bh_matches_scipy(monkeypatch):
    import gc

    from statsmodels.stats import multitest

    monkeypatch.setattr(gc, "collect", lambda *args: 0)   # multipletests runs gc.collect per call: slow with JAX
    rng = np.random.default_rng(0)
    for m in (1, 2, 5, 24, 240):
        for p in (rng.uniform(size=m), rng.uniform(0, 0.01, size=m), np.round(rng.uniform(size=m), 2),
                  rng.choice([2 / 256, 4 / 256, 0.5, 1.0], size=m)):        # ties, as sign-flip p-values have
            np.testing.assert_array_equal(stats.adjust(p, "holm"), multitest.multipletests(p, method="holm")[1])
            np.testing.assert_allclose(stats.adjust(p, "bh"), multitest.multipletests(p, method="fdr_bh")[1],
                                       rtol=1e-13)
            np.testing.assert_array_equal(stats.adjust(p, "bh"), scipy.stats.false_discovery_control(p))
            np.testing.assert_array_equal(stats.adjust(p, "none"), p)


def test_compare_all_recomputes_wins_and_tally_counts_them():
    rng = np.random.default_rng(9)
    fam = [stats.paired_difference(rng.normal(0.0, 1.0, 12) + s, np.zeros(12)) for s in [3.0, -3.0] + [0.0] * 22]
    adj = stats.compare_all(fam, "holm")
    assert [d["win"] for d in adj[:2]] == [1, -1]
    assert all(d["p_adjusted"] >= d["p"] for d in adj)
    assert all(d["win"] == (np.sign(d["mean"]) if d["p_adjusted"] <= ALPHA else 0) for d in adj)
    assert all(d["win_unadjusted"] == f["win"] for d, f in zip(adj, fam))
    t = stats.tally(fam)                                   # Holm by default
    assert t == stats.tally(adj) and t["method"] == "holm"
    assert (t["wins"], t["losses"]) == (sum(d["win"] == 1 for d in adj), sum(d["win"] == -1 for d in adj))
    assert t["raw_wins"] == sum(f["win"] == 1 for f in fam) and t["raw_losses"] == sum(f["win"] == -1 for f in fam)
    assert stats.tally(fam, method="bh")["method"] == "bh"
    assert stats.tally(fam, method=None)["wins"] == t["raw_wins"]
    with pytest.raises(ValueError, match="^diffs:"):
        stats.tally(adj[:3] + fam[3:])
    # group consistency survives the adjustment: an inconsistent comparison is never a win
    g = np.repeat([0, 1, 2], 6)
    d = np.full(18, 1.0)
    d[:6] = -0.1
    inc = stats.paired_difference(d, np.zeros(18), groups=g)
    assert inc["p"] <= ALPHA and inc["consistent_over_groups"] is False and inc["win"] == 0
    assert stats.compare_all([inc], "none")[0]["win"] == 0


def test_min_p_value_and_how_many_seeds_holm_needs():
    for n in range(2, 25):
        p = stats.sign_flip_test(np.arange(1.0, n + 1))
        assert p == stats.min_p_value(n)
    need = {m: next(n for n in range(2, 40) if stats.min_p_value(n) <= ALPHA / m) for m in (1, 24, 240)}
    assert need == {1: 6, 24: 10, 240: 14}
    assert stats.min_p_value(60) == 2 / 20000 <= ALPHA / 240


# -- reference implementations ---------------------------------------------------------------------------


def _scipy_sign_flip(d, w):
    res = scipy.stats.permutation_test((d,), lambda x, axis: np.moveaxis(x, axis, -1) @ w,
                                       permutation_type="samples", vectorized=True, n_resamples=np.inf)
    return float(res.pvalue)


def _brute_force_sign_flip(d, w):
    """Every one of the 2^n sign patterns; ties within 100 eps · Σ|w d| count as reaching the observed value."""
    wd = np.asarray(w) * np.asarray(d)
    signs = np.array(list(itertools.product([1.0, -1.0], repeat=len(wd))))
    T, obs = signs @ wd, wd.sum()
    tol = 100 * np.finfo(np.float64).eps * np.abs(wd).sum()
    return min(1.0, 2.0 * min(np.sum(T <= obs + tol), np.sum(T >= obs - tol)) / 2 ** len(wd))


@pytest.mark.parametrize("n", [2, 3, 6, 9, 12])
def test_sign_flip_matches_scipy_permutation_test(n):
    """Exact agreement with scipy on continuous data, and on integer data (where scipy's arithmetic is
    exact, with integer weights) also when our copy is scaled by 0.1 (ties broken by rounding)."""
    rng = np.random.default_rng(n)
    groups = np.arange(n) % 2 if n >= 4 else None
    for g in (None, groups):
        if g is None:
            w_int = np.ones(n)
        else:
            counts = np.bincount(g)
            w_int = (math.lcm(*counts.tolist()) // counts)[g].astype(float)
        w = w_int / w_int.sum()
        for d in rng.normal(size=(4, n)):
            p = stats.sign_flip_test(d, groups=g)
            assert p == _brute_force_sign_flip(d, w)
            # scipy's tie tolerance is relative to |observed|: when the observed statistic is near 0 its
            # mirror pattern can fall on either side by rounding (CPU-dependent), so allow one pattern a side
            assert abs(p - _scipy_sign_flip(d, w)) <= 2.0 / 2 ** n + 1e-12
        for k in rng.integers(-3, 4, size=(4, n)).astype(float):
            ref = _scipy_sign_flip(k, w_int)
            assert stats.sign_flip_test(k, groups=g) == ref
            assert stats.sign_flip_test(0.1 * k, groups=g) == ref
            assert stats.sign_flip_test(1e6 * k + 0.0, groups=g) == ref


def test_meet_in_the_middle_matches_brute_force_at_18():
    """Beyond what scipy enumerates quickly: the half-and-half count against all 2^18 sums, row by row."""
    rng = np.random.default_rng(18)
    d = np.concatenate([rng.normal(size=(3, 18)), rng.integers(-2, 3, size=(3, 18)) * 0.3])
    w = 1.0 / 18
    for row, p in zip(d, stats.sign_flip_test(d)):
        s = np.array([0.0])
        for x in row * w:
            s = np.concatenate([s + x, s - x])
        tol = 100 * np.finfo(float).eps * np.abs(row * w).sum()
        obs = s[0]
        ref = min(1.0, 2 * min(np.sum(s >= obs - tol), np.sum(s <= obs + tol)) / s.size)
        assert p == ref


def test_monte_carlo_matches_exact_within_its_error():
    rng = np.random.default_rng(12)
    d = rng.normal(0.5, 1.0, (30, 14))
    exact = stats.sign_flip_test(d)
    B = 19_999
    mc = stats.sign_flip_test(d, max_exact=10, n_resamples=B, seed=3)
    assert np.all(mc >= 2 / (B + 1))
    side = exact / 2
    assert np.all(np.abs(mc - exact) <= 2 * 4 * np.sqrt(side * (1 - side) / B) + 2 / (B + 1))
    assert np.array_equal(mc, stats.sign_flip_test(d, max_exact=10, n_resamples=B, seed=3))   # seeded


def test_t_interval_matches_scipy_ttest_1samp():
    rng = np.random.default_rng(13)
    for n in (2, 5, 8, 16, 48):
        for alpha in (0.05, 0.1):
            a, b = rng.normal(size=n), rng.normal(size=n)
            r = stats.paired_difference(a, b, alpha=alpha)
            ci = scipy.stats.ttest_1samp(a - b, 0.0).confidence_interval(1 - alpha)
            assert r["lo"] == pytest.approx(ci.low, rel=1e-12, abs=1e-14)
            assert r["hi"] == pytest.approx(ci.high, rel=1e-12, abs=1e-14)
    # groups: one group is the plain t-interval; the draw interval is the t-interval of the draw means
    a, b = rng.normal(size=15), rng.normal(size=15)
    plain = stats.paired_difference(a, b)
    one = stats.paired_difference(a, b, groups=np.zeros(15, int))
    assert (one["lo"], one["hi"]) == pytest.approx((plain["lo"], plain["hi"]), rel=1e-12)
    g = np.repeat([0, 1, 2], 5)
    r = stats.paired_difference(a, b, groups=g)
    means = [(a - b)[g == k].mean() for k in range(3)]
    ci = scipy.stats.ttest_1samp(means, 0.0).confidence_interval(0.95)
    assert (r["draw_lo"], r["draw_hi"]) == pytest.approx((ci.low, ci.high), rel=1e-12)
    assert r["group_means"] == pytest.approx(dict(enumerate(means)))
    assert r["mean"] == pytest.approx(np.mean(means))


def test_stratified_interval_covers_with_heteroscedastic_draws():
    reps, rng = 4000, np.random.default_rng(14)
    a, b, g = _null_draws(rng, "normal", 3, 5, reps)
    r = stats.paired_difference_batch(a + 0.3, b, groups=g)
    cov = float(np.mean((r["lo"] <= 0.3) & (0.3 <= r["hi"])))
    _report("coverage of the stratified 95 % t-interval, 3 draws x 5 seeds, heteroscedastic", cov, reps)
    assert cov >= 0.95 - 3 * _se(0.95, reps)


def test_batch_rows_equal_single_calls():
    rng = np.random.default_rng(15)
    for n, g, kw in ((8, None, {}), (15, np.repeat([0, 1, 2], 5), {}), (30, None, {"seed": 4})):
        a, b = rng.normal(size=(5, n)) + 0.5, rng.normal(size=(5, n))
        r = stats.paired_difference_batch(a, b, groups=g, **kw)
        for i in range(5):
            one = stats.paired_difference(a[i], b[i], groups=g, **kw)
            for k in ("mean", "std", "lo", "hi", "p", "win", "n"):
                assert one[k] == r[k][i], k


# -- properties ------------------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 28), st.floats(-3, 3))
def test_constant_difference_is_exact(seed, n, shift):
    b = np.random.default_rng(seed).normal(size=n)
    d = stats.paired_difference(np.full(n, shift), np.zeros(n), seed=seed % 4)
    for k in ("mean", "lo", "hi"):
        assert d[k] == pytest.approx(shift, abs=1e-12)
    pmin = stats.min_p_value(n)
    assert d["p"] == (1.0 if shift == 0 else pmin)
    assert d["win"] == (int(np.sign(shift)) if pmin <= ALPHA else 0)
    e = stats.paired_difference(b + shift, b, seed=seed % 4)     # the same up to rounding
    assert e["mean"] == pytest.approx(shift, abs=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([4, 10, 16, 25]))
def test_antisymmetric_and_invariant_to_order(seed, n):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n)
    d1, d2 = stats.paired_difference(a, b, seed=3), stats.paired_difference(b, a, seed=3)
    assert d1["mean"] == pytest.approx(-d2["mean"]) and d1["p"] == d2["p"] and d1["win"] == -d2["win"]
    assert (d1["lo"], d1["hi"]) == pytest.approx((-d2["hi"], -d2["lo"]))
    assert d1["lo"] <= d1["mean"] <= d1["hi"]
    assert d1["win"] == (int(np.sign(d1["mean"])) if d1["p"] <= ALPHA else 0)
    perm = rng.permutation(n)
    if n <= stats.MAX_EXACT:  # the exact p-value does not depend on the order of the pairs
        assert stats.paired_difference(a[perm], b[perm])["p"] == d1["p"]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_groups_relabeling_and_balanced_equivalence(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=12) + 0.8, rng.normal(size=12)
    g = np.repeat([0, 1, 2], 4)
    r1 = stats.paired_difference(a, b, groups=g)
    r2 = stats.paired_difference(a, b, groups=np.array(["z", "y", "x"])[g])
    assert r1["p"] == r2["p"] and r1["win"] == r2["win"] and r1["lo"] == pytest.approx(r2["lo"], rel=1e-12)
    # balanced groups: same statistic as without groups (a win may still be removed by inconsistency)
    plain = stats.paired_difference(a, b)
    assert r1["p"] == plain["p"] and r1["mean"] == pytest.approx(plain["mean"])
    assert r1["win"] in (0, plain["win"])


def test_win_only_when_test_rejects():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=16)
    assert stats.paired_difference(noise + 5.0, np.zeros(16))["win"] == 1
    assert stats.paired_difference(noise - 5.0, np.zeros(16))["win"] == -1
    tie = stats.paired_difference(noise - noise.mean(), np.zeros(16))
    assert tie["win"] == 0 and tie["lo"] < 0 < tie["hi"] and tie["p"] > 0.9
    few = stats.paired_difference(np.full(5, 9.0), np.zeros(5))      # 5 pairs: p >= 1/16
    assert few["win"] == 0 and few["p"] == 1 / 16 and few["lo"] > 0   # the interval excludes 0, no win


# -- the descriptive bootstrap, kept ---------------------------------------------------------------------


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
    expected, mc_se = _plugin_coverage(sampler, mu, n, datasets=40_000)
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
    assert stats.bootstrap_ci(x, seed=5) == stats.bootstrap_ci(x, seed=5)


# -- small helpers, errors, doctests ---------------------------------------------------------------------


def test_tally_counts_raw_wins_without_p_values():
    ds = [{"mean": 1.0, "win": 1}, {"mean": -0.5, "win": 0}, {"mean": -2.0, "win": -1}, {"mean": 0.2, "win": 0}]
    t = stats.tally(ds, method=None)
    assert (t["n"], t["wins"], t["losses"], t["ties"], t["ahead"]) == (4, 1, 1, 2, 2)
    assert t["mean_difference"] == pytest.approx(-1.3 / 4)
    with pytest.raises(ValueError, match="^diffs:"):
        stats.tally(ds)                                    # Holm needs p-values


def test_markdown_table_and_text():
    md = stats.markdown_table(["a", "b"], [[1, "x|y"]])
    assert md.splitlines() == ["| a | b |", "|---|---|", "| 1 | x/y |"]
    assert stats.mean_std([1.0, 3.0]) == "2 ± 1.41"
    d = stats.paired_difference(np.linspace(0.9, 1.1, 8), np.zeros(8))
    assert stats.ci_text(d).endswith("p=0.00781 win")
    assert "p_holm=" in stats.ci_text(stats.compare_all([d, d])[0])
    g = stats.paired_difference(np.linspace(0.9, 1.1, 8), np.zeros(8), groups=np.repeat([0, 1], 4))
    assert "draws [" in stats.ci_text(g)


@pytest.mark.parametrize("bad, field", [
    (lambda: stats.describe([]), "x:"),
    (lambda: stats.describe([1.0, float("nan")]), "x:"),
    (lambda: stats.paired_difference([1.0, 2.0], [1.0]), "b:"),
    (lambda: stats.paired_difference([1.0, float("inf")], [1.0, 2.0]), "a:"),
    (lambda: stats.paired_difference([1.0, 2.0], [1.0, float("nan")]), "b:"),
    (lambda: stats.paired_difference([1.0], [1.0]), "a:"),
    (lambda: stats.paired_difference([[1.0, 2.0]], [[1.0, 2.0]]), "a:"),
    (lambda: stats.paired_difference([1.0, 2.0], [1.0, 2.0], alpha=5), "alpha:"),
    (lambda: stats.paired_difference([1.0, 2.0], [1.0, 2.0], alpha=0.0), "alpha:"),
    (lambda: stats.paired_difference([1.0, 2.0], [1.0, 2.0], alpha=float("nan")), "alpha:"),
    (lambda: stats.paired_difference([1.0, 2.0], [1.0, 2.0], alpha=True), "alpha:"),
    (lambda: stats.paired_difference([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], groups=[0, 0]), "groups:"),
    (lambda: stats.paired_difference([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], groups=[0, 0, 1]), "groups:"),
    (lambda: stats.paired_difference([1.0, 2.0], [1.0, 2.0], groups=[0.0, float("nan")]), "groups:"),
    (lambda: stats.paired_difference([1.0, 2.0], [1.0, 2.0], seed=-1), "seed:"),
    (lambda: stats.paired_difference([1.0, 2.0], [1.0, 2.0], n_resamples=0), "n_resamples:"),
    (lambda: stats.paired_difference([1.0, 2.0], [1.0, 2.0], max_exact=99), "max_exact:"),
    (lambda: stats.adjust([0.1, 0.2], "bonferroni"), "method:"),
    (lambda: stats.adjust([0.1, 1.2], "holm"), "p_values:"),
    (lambda: stats.adjust([0.1, float("nan")], "bh"), "p_values:"),
    (lambda: stats.compare_all([{"p": 0.1, "mean": 1.0}], method="sidak"), "method:"),
    (lambda: stats.compare_all([{"mean": 1.0, "win": 1}]), "diffs:"),
    (lambda: stats.compare_all([{"p": 0.1, "mean": 1.0}], alpha=1.5), "alpha:"),
    (lambda: stats.bootstrap_ci([1.0], level=95), "level:"),
    (lambda: stats.bootstrap_means([1.0], n_boot=0), "n_boot:"),
    (lambda: stats.markdown_table(["a"], [[1, 2]]), "rows:"),
])
def test_bad_input(bad, field):
    with pytest.raises(ValueError, match=f"^{field}"):
        bad()


def test_doctests():
    res = doctest.testmod(stats, optionflags=doctest.ELLIPSIS)
    assert res.attempted > 10 and res.failed == 0
