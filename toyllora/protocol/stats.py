"""Honest statistics for the head-to-head: paired differences, exact sign-flip tests, multiplicity control.

A comparison of method ``a`` against method ``b`` pairs their scores by seed (and, optionally, by task
draw) and looks at the paired differences ``d = a − b``. :func:`paired_difference` reports

* the **effect**: the mean paired difference (with task draws: the mean of the per-draw means, every draw
  weighted equally);
* a **test** that decides the win: the two-sided sign-flip (randomization) test of "every paired
  difference is symmetric about 0" (Fisher 1935, §21; Good 2005). Under that null — which two
  identical methods satisfy exactly, whatever the shape of the score distribution — flipping the sign of
  any subset of the differences is as likely as the data observed, so the p-value is the share of the
  ``2^n`` sign patterns whose statistic is at least as far from 0 as the observed one. It is computed
  exactly up to ``max_exact`` pairs (all ``2^n`` patterns, by a meet-in-the-middle count) and by Monte
  Carlo with a fixed seed beyond (``n_resamples`` patterns, ``p = (1 + k)/(1 + n_resamples)`` on each
  side; Phipson & Smyth 2010). Its error rate is at most ``alpha`` at every ``n`` — the randomization
  distribution is exact, not asymptotic;
* an **interval**: the Student-t confidence interval of the mean difference (equal to
  ``scipy.stats.ttest_1samp(d).confidence_interval``; with task draws, the stratified t-interval with a
  Welch–Satterthwaite number of degrees of freedom), plus, with task draws, the t-interval over the
  per-draw means (``draw_lo``, ``draw_hi``; ``G − 1`` degrees of freedom), the only one of the two that
  covers the spread from one task draw to the next.

**The interval and the test are different procedures; the test alone decides** ``win``: ``+1`` when
``p <= alpha`` and the effect is positive, ``−1`` when ``p <= alpha`` and it is negative, ``0`` (a tie)
otherwise. With task draws a win further needs every draw's mean difference to have the winning sign
(``consistent_over_groups``), which can only remove wins, so the error rate stays at most ``alpha``. The
two can disagree near the edge (an interval that just excludes 0 with ``p`` just above ``alpha``, or the
reverse); read the interval as a description of the size of the effect.

Why not the percentile bootstrap that this module used before: at the 8–16 seeds the protocol runs, the
bootstrap distribution of the mean is too narrow (it uses the plug-in standard deviation, ``ddof=0``, and
ignores the t-quantile), so its 95 % interval misses 0 between two *identical* methods in 8–13 % of
comparisons rather than 5 % (measured in ``tests/test_stats.py``; Efron & Tibshirani 1993, ch. 13 and 22,
on the percentile interval's small-sample under-coverage). :func:`bootstrap_ci` stays for
descriptive use.

Many comparisons: a claim makes tens to hundreds of comparisons, and raw counting of wins then finds some
by chance. :func:`compare_all` adjusts the p-values of a family of comparisons (Holm 1979: family-wise
error rate; Benjamini & Hochberg 1995: false discovery rate) and recomputes the wins from the adjusted
p-values; :func:`tally` counts the adjusted wins. Note that a sign-flip p-value can never go below
``2 / 2^n`` (:func:`min_p_value`): with Holm over ``m`` comparisons a win needs ``2 / 2^n <= alpha / m``,
so at ``alpha = 0.05`` at least 6 pairs for one comparison, 10 pairs for 24 comparisons and 14 pairs for
240 comparisons. Benjamini–Hochberg is far less demanding when many comparisons are strong.

What the test does not cover: it is conditional on the task draws in the comparison. With one draw per
task, the seeds are the only replication and a win says nothing about other draws of the task. With
several draws (``groups``) the null is still "no difference *within* each draw"; a method × draw
interaction that averages to zero over draws is not part of that null, and the consistency requirement
only limits (it does not remove) the wins it can produce: at most ``2^(1−G)`` of comparisons (0.25 for
3 draws; 13 % measured in one such setting, 3 draws × 5 seeds, in ``tests/test_stats.py``). Use ``draw_lo``/``draw_hi``
for that question.

All randomness is NumPy's ``default_rng(seed)`` and every exact computation is deterministic, so tables are
reproducible.

Example:
    >>> import numpy as np
    >>> from toyllora.protocol import stats
    >>> a = np.array([1.0, 1.2, 0.9, 1.1, 1.3, 0.8, 1.0, 1.2])
    >>> b = a - np.array([0.5, 0.4, 0.6, 0.5, 0.7, 0.3, 0.5, 0.6])
    >>> d = stats.paired_difference(a, b, seed=0)
    >>> round(d["mean"], 4), d["win"], d["p"] == 2 / 2**8, d["lo"] > 0
    (0.5125, 1, True, True)
    >>> d["test"]
    'sign-flip, exact (256 patterns), two-sided'
    >>> stats.paired_difference(a[:4], b[:4])["win"]   # 4 pairs: p >= 2/16, never a win at alpha = 0.05
    0
    >>> stats.mean_std([1.0, 2.0, 3.0])
    '2 ± 1'

References:
  R. A. Fisher, "The Design of Experiments" (1935), §21 (the randomization test of paired differences).
  P. Good, "Permutation, Parametric and Bootstrap Tests of Hypotheses", 3rd ed. (2005).
  B. Efron & R. Tibshirani, "An Introduction to the Bootstrap" (1993), ch. 13 and 22 (percentile intervals).
  B. Phipson & G. K. Smyth, "Permutation p-values should never be zero", SAGMB 9 (2010).
  S. Holm, "A simple sequentially rejective multiple test procedure", Scand. J. Statist. 6 (1979).
  Y. Benjamini & Y. Hochberg, "Controlling the false discovery rate", JRSS B 57 (1995).
  F. E. Satterthwaite, "An approximate distribution of estimates of variance components" (1946).
"""

from __future__ import annotations

import functools
import math
import numbers

import numpy as np
import scipy.special
import scipy.stats

LEVEL = 0.95
N_BOOT = 2000
ALPHA = 0.05
MAX_EXACT = 24          # exact sign-flip p-values up to this many pairs (2^24 patterns, counted in halves)
N_RESAMPLES = 19_999    # Monte-Carlo patterns beyond: p >= 2/20000 = 1e-4 <= 0.05/240 (Holm over 240)
ADJUST_METHODS = ("holm", "bh", "none")
_TOL = 100 * np.finfo(np.float64).eps   # ties: within _TOL · Σ|w_i d_i| of the observed statistic
_CHUNK = 1 << 22                        # elements per block in the vectorized computations


# -- validation -----------------------------------------------------------------------------------------


def _finite_1d(name: str, x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError(f"{name}: needs at least one value")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: contains non-finite values (NaN or inf); count failures explicitly")
    return x


def _finite_2d(name: str, x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"{name}: needs shape (n,) or (replicates, n), got {x.shape}")
    if x.shape[1] < 2:
        raise ValueError(f"{name}: needs at least 2 paired values, got {x.shape[1]}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: contains non-finite values (NaN or inf); count failures explicitly")
    return x


def _check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not (0.0 < float(alpha) < 1.0):
        raise ValueError(f"alpha: must be a number in (0, 1), got {alpha!r}")
    return float(alpha)


def _check_int(name: str, v, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
        raise ValueError(f"{name}: must be an integer >= {lo}, got {v!r}")
    return int(v)


def _group_index(groups, n: int):
    """``(labels, index, counts)`` of a per-pair group array of length ``n``."""
    g = np.asarray(groups)
    if g.ndim != 1 or g.size != n:
        raise ValueError(f"groups: needs one label per pair ({n}), got shape {g.shape}")
    if g.dtype.kind == "f" and not np.all(np.isfinite(g)):
        raise ValueError("groups: contains non-finite labels")
    if g.dtype.kind not in "biufUS":
        raise ValueError(f"groups: labels must be integers or strings, got dtype {g.dtype}")
    labels, index, counts = np.unique(g, return_inverse=True, return_counts=True)
    if np.any(counts < 2):
        raise ValueError(f"groups: every group needs at least 2 pairs, got counts {counts.tolist()}")
    return labels.tolist(), index.reshape(-1), counts


# -- the sign-flip test ----------------------------------------------------------------------------------


def _all_sums(x: np.ndarray) -> np.ndarray:
    """All ``2^k`` signed sums ``Σ ±x_j`` of each row of ``x`` (R × k), index 0 all plus; exactly symmetric."""
    s = np.zeros((x.shape[0], 1))
    for j in range(x.shape[1]):
        s = np.concatenate([s + x[:, j:j + 1], s - x[:, j:j + 1]], axis=1)
    return s


def _count_at_least(A: np.ndarray, B: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per row r: ``#{(i, j): A[r, i] + B[r, j] >= t[r]}``, counted as ``B >= t − A`` by one merge sort."""
    x = t[:, None] - A
    both = np.concatenate([x, B], axis=1)             # x first: a stable sort puts x before an equal B
    is_b = np.concatenate([np.zeros(x.shape, bool), np.ones(B.shape, bool)], axis=1)
    order = np.argsort(both, axis=1, kind="stable")
    is_b = np.take_along_axis(is_b, order, axis=1)
    b_before = np.cumsum(is_b, axis=1) - is_b            # B values strictly before each position
    return np.where(is_b, 0, B.shape[1] - b_before).sum(axis=1)


def _sign_flip_exact(wd: np.ndarray) -> np.ndarray:
    n = wd.shape[1]
    h = n // 2
    out = np.empty(wd.shape[0])
    rows = max(1, _CHUNK // (2 ** h + 2 ** (n - h)))
    for i in range(0, wd.shape[0], rows):
        A, B = _all_sums(wd[i:i + rows, :h]), _all_sums(wd[i:i + rows, h:])
        obs = A[:, 0] + B[:, 0]
        t = np.abs(obs) - _TOL * np.abs(wd[i:i + rows]).sum(axis=1)
        # the null is exactly symmetric, so min(P(T <= obs), P(T >= obs)) = P(T >= |obs|)
        out[i:i + rows] = np.minimum(1.0, 2.0 * _count_at_least(A, B, t) / 2.0 ** n)
    return out


def _draw_signs(n: int, n_resamples: int, seed: int) -> np.ndarray:
    signs = np.where(np.random.default_rng(seed).random((n_resamples, n)) < 0.5, -1.0, 1.0)
    signs.flags.writeable = False
    return signs


_cached_signs = functools.lru_cache(maxsize=4)(_draw_signs)   # a claim reuses one seed for many comparisons


def _sign_flip_mc(wd: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    n = wd.shape[1]
    signs = (_cached_signs if n * n_resamples <= _CHUNK else _draw_signs)(n, n_resamples, seed)
    obs = wd.sum(axis=1)
    gamma = _TOL * np.abs(wd).sum(axis=1)
    out = np.empty(wd.shape[0])
    rows = max(1, _CHUNK // n_resamples)
    for i in range(0, wd.shape[0], rows):
        null = signs @ wd[i:i + rows].T                        # n_resamples × rows
        o, g = obs[i:i + rows], gamma[i:i + rows]
        ge = (null >= o - g).sum(axis=0)
        le = (null <= o + g).sum(axis=0)
        out[i:i + rows] = np.minimum(1.0, 2.0 * (1 + np.minimum(ge, le)) / (1 + n_resamples))
    return out


def _weights(n: int, groups):
    if groups is None:
        return np.full(n, 1.0 / n), None
    labels, index, counts = _group_index(groups, n)
    return 1.0 / (len(labels) * counts[index]), (labels, index, counts)


def sign_flip_test(d, *, groups=None, n_resamples: int = N_RESAMPLES, max_exact: int = MAX_EXACT,
                   seed=0) -> float | np.ndarray:
    """Two-sided sign-flip p-values of the (group-weighted) mean of each row of ``d``.

    ``d`` has shape ``(n,)`` (returns a float) or ``(replicates, n)`` (an array); the statistic is
    ``Σ w_i d_i`` with ``w_i = 1/n``, or, with ``groups`` (one label per column), the mean of the per-group
    means. Each sign is flipped
    independently. Exact (all ``2^n`` patterns) for ``n <= max_exact``, else Monte Carlo with
    ``n_resamples`` patterns from ``default_rng(seed)``. The two-sided p-value is
    ``min(1, 2·min(p_less, p_greater))`` and values within ``100·eps·Σ|w_i d_i|`` of the observed one count
    as ties (as extreme): the definitions of ``scipy.stats.permutation_test(..., permutation_type="samples")``,
    which ``tests/test_stats.py`` checks it against, except that scipy's tie tolerance is relative to the
    observed value alone — which, when the statistic is 0 up to rounding, makes scipy's answer depend on
    rounding (its batched and single calls then disagree); the scale of the data does not.

    >>> sign_flip_test([1.0, 2.0, 3.0, 4.0])   # all positive: the 2 most extreme of 16 patterns
    0.125
    >>> sign_flip_test([[1.0, -1.0, 2.0], [3.0, 1.0, 2.0]]).tolist()
    [0.75, 0.25]
    """
    one = np.ndim(d) == 1
    d = _finite_2d("d", d)
    n_resamples = _check_int("n_resamples", n_resamples, 1)
    max_exact = _check_int("max_exact", max_exact, 0)
    seed = _check_int("seed", seed, 0)
    if max_exact > 32:
        raise ValueError(f"max_exact: at most 32 (2^16 patterns per half), got {max_exact}")
    w, _ = _weights(d.shape[1], groups)
    p = _sign_flip_exact(d * w) if d.shape[1] <= max_exact else _sign_flip_mc(d * w, n_resamples, seed)
    return float(p[0]) if one else p


def min_p_value(n: int, *, n_resamples: int = N_RESAMPLES, max_exact: int = MAX_EXACT) -> float:
    """The smallest p-value :func:`sign_flip_test` can return with ``n`` pairs.

    A comparison can only be a win at level ``alpha`` (after Holm over ``m`` comparisons: ``alpha / m``) if
    this is at most that level.

    >>> min_p_value(5), min_p_value(8), min_p_value(30)
    (0.0625, 0.0078125, 0.0001)
    """
    n = _check_int("n", n, 1)
    return min(1.0, 2.0 / 2.0 ** n) if n <= max_exact else min(1.0, 2.0 / (1 + n_resamples))


# -- paired differences ----------------------------------------------------------------------------------


def _t_quantile(alpha: float, df):
    """The ``1 − alpha/2`` quantile of Student's t (``scipy.stats.t.ppf``, via the faster ufunc)."""
    return scipy.special.stdtrit(df, 1.0 - alpha / 2.0)


def paired_difference_batch(a, b, *, groups=None, alpha: float = ALPHA, seed=0,
                            n_resamples: int = N_RESAMPLES, max_exact: int = MAX_EXACT) -> dict:
    """:func:`paired_difference` of each row of ``a`` and ``b`` (shape ``(replicates, n)``), vectorized.

    Returns a dict of arrays (one entry per row) with the same keys as :func:`paired_difference`, and
    ``group_means`` of shape ``(replicates, groups)`` with the group labels in ``group_labels``. Row ``r``
    equals ``paired_difference(a[r], b[r], ...)`` exactly (the same code computes both).

    >>> r = paired_difference_batch([[1.0, 2.0, 3.0], [0.5, 0.5, 0.5]], [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    >>> r["mean"].tolist(), r["p"].tolist(), r["win"].tolist()
    ([2.0, -0.5], [0.25, 0.25], [0, 0])
    """
    alpha = _check_alpha(alpha)
    a, b = _finite_2d("a", a), _finite_2d("b", b)
    if a.shape != b.shape:
        raise ValueError(f"b: paired values need the same shape as a {a.shape}, got {b.shape}")
    d = a - b
    R, n = d.shape
    _, grouping = _weights(n, groups)
    p = sign_flip_test(d, groups=groups, n_resamples=n_resamples, max_exact=max_exact, seed=seed)
    out = {"n": np.full(R, n), "std": d.std(axis=1, ddof=1), "p": p, "alpha": alpha}
    if n <= max_exact:
        out["test"] = f"sign-flip, exact ({2 ** n} patterns), two-sided"
    else:
        out["test"] = f"sign-flip, Monte Carlo ({n_resamples} patterns, seed {seed}), two-sided"
    if grouping is None:
        effect = d.mean(axis=1)
        se = out["std"] / math.sqrt(n)
        half = _t_quantile(alpha, n - 1) * se
        consistent = None
        out["ci_method"] = f"t-interval ({100 * (1 - alpha):g} %, {n - 1} df)"
    else:
        labels, index, counts = grouping
        G = len(labels)
        onehot = np.zeros((n, G))
        onehot[np.arange(n), index] = 1.0
        gmeans = (d @ onehot) / counts                                   # R × G
        gvar = ((d - gmeans[:, index]) ** 2 @ onehot) / (counts - 1)     # R × G, ddof=1
        effect = gmeans.mean(axis=1)
        v = gvar / (G ** 2 * counts)                                     # variance of each term of the mean
        se = np.sqrt(v.sum(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            df = v.sum(axis=1) ** 2 / (v ** 2 / (counts - 1)).sum(axis=1)   # Welch–Satterthwaite
        df = np.where(se > 0, df, n - G)
        half = _t_quantile(alpha, df) * se
        sign = np.sign(effect)[:, None]
        consistent = (sign != 0)[:, 0] & np.all(np.sign(gmeans) == sign, axis=1)
        if G >= 2:
            gsd = gmeans.std(axis=1, ddof=1)
            dhalf = _t_quantile(alpha, G - 1) * gsd / math.sqrt(G)
            out["draw_lo"], out["draw_hi"] = effect - dhalf, effect + dhalf
        else:
            out["draw_lo"] = out["draw_hi"] = np.full(R, np.nan)
        out.update(group_means=gmeans, group_labels=labels, n_groups=G)
        out["ci_method"] = (f"stratified t-interval ({100 * (1 - alpha):g} %, Welch-Satterthwaite df) of the "
                            f"mean of {G} group means; draw_lo/draw_hi: t-interval over groups ({G - 1} df)")
        out["test"] += f", statistic: mean of {G} group means; a win needs every group to agree"
    half = np.where(se > 0, half, 0.0)
    out["mean"] = out["effect"] = effect
    out["lo"], out["hi"] = effect - half, effect + half
    out["consistent_over_groups"] = consistent
    out["win"] = _decide(effect, p, alpha, consistent)
    return out


def _decide(effect, p, alpha, consistent):
    effect, p = np.asarray(effect, float), np.asarray(p, float)
    ok = p <= alpha
    if consistent is not None:
        ok = ok & np.asarray(consistent, bool)
    return np.where(ok, np.sign(effect), 0).astype(int)


def paired_difference(a, b, *, groups=None, alpha: float = ALPHA, seed=0, n_resamples: int = N_RESAMPLES,
                      max_exact: int = MAX_EXACT) -> dict:
    """Mean paired difference ``a − b``, its t-interval, and the win/tie/loss by an exact sign-flip test.

    ``a`` and ``b`` are paired position by position (same seed; with ``groups``, same task draw and seed).
    The test (not the interval) decides ``win``; see the module docstring for both procedures and why
    the percentile bootstrap is no longer used.

    Args:
      groups: optional label of each pair's task draw (e.g. ``np.repeat(range(3), 5)`` for 3 draws × 5
        seeds). The effect is then the mean of the per-draw mean differences (each draw weighs the same),
        signs are flipped independently per pair (valid under the null that every paired difference is
        symmetric about 0 given its draw), and a win also needs every draw's mean to have the winning
        sign (``consistent_over_groups``), which can only make the test more conservative.
      alpha: level of the test; the interval is a ``1 − alpha`` interval.
      seed: seed of the Monte-Carlo patterns when ``n > max_exact`` (unused for an exact test).
      n_resamples, max_exact: see :func:`sign_flip_test`.

    Returns:
      A dict of Python scalars: ``mean`` (= ``effect``), ``std`` (of the paired differences, ddof=1), ``lo``,
      ``hi``, ``n`` (pairs), ``win`` (+1, 0, −1), ``p`` (two-sided), ``alpha``, ``test``, ``ci_method``,
      ``consistent_over_groups`` (``None`` without groups) and, with groups, ``group_means`` (label → mean
      difference), ``n_groups``, ``draw_lo``, ``draw_hi`` (t-interval over the draw means).

    >>> rng = np.random.default_rng(0)
    >>> b = rng.normal(size=15)
    >>> a = b + 1.0 + 0.1 * rng.normal(size=15)
    >>> d = paired_difference(a, b, groups=np.repeat([0, 1, 2], 5))
    >>> d["win"], d["consistent_over_groups"], sorted(d["group_means"]), d["p"] == 2 / 2**15
    (1, True, [0, 1, 2], True)
    >>> paired_difference([1.0, 2.0], [1.0])
    Traceback (most recent call last):
    ...
    ValueError: b: paired values need as many pairs as a (2), got 1
    """
    for name, x in (("a", a), ("b", b)):
        if np.ndim(x) != 1:
            raise ValueError(f"{name}: needs one value per pair (1-D), got shape {np.shape(x)}")
    if np.size(a) != np.size(b):
        raise ValueError(f"b: paired values need as many pairs as a ({np.size(a)}), got {np.size(b)}")
    r = paired_difference_batch(a, b, groups=groups, alpha=alpha, seed=seed, n_resamples=n_resamples,
                                max_exact=max_exact)
    out = {k: float(r[k][0]) for k in ("mean", "std", "lo", "hi", "p", "effect")}
    out.update(n=int(r["n"][0]), win=int(r["win"][0]), alpha=r["alpha"], test=r["test"], ci_method=r["ci_method"])
    c = r["consistent_over_groups"]
    out["consistent_over_groups"] = None if c is None else bool(c[0])
    if groups is not None:
        out["group_means"] = dict(zip(r["group_labels"], r["group_means"][0].tolist()))
        out["n_groups"] = r["n_groups"]
        out["draw_lo"], out["draw_hi"] = float(r["draw_lo"][0]), float(r["draw_hi"][0])
    return out


# -- multiplicity ----------------------------------------------------------------------------------------


def adjust(p_values, method: str = "holm") -> np.ndarray:
    """Adjusted p-values of a family of comparisons (or of each row of a 2-D array: one family a row).

    ``"holm"``: Holm's step-down (family-wise error rate <= alpha under any dependence);
    ``"bh"``: Benjamini–Hochberg (false discovery rate <= alpha for independent or positively dependent
    tests; ``scipy.stats.false_discovery_control``); ``"none"``: unchanged.

    >>> adjust([0.01, 0.04, 0.03, 0.5], "holm").tolist()
    [0.04, 0.09, 0.09, 0.5]
    >>> [round(float(p), 4) for p in adjust([0.01, 0.04, 0.03, 0.5], "bh")]
    [0.04, 0.0533, 0.0533, 0.5]
    """
    if method not in ADJUST_METHODS:
        raise ValueError(f"method: must be one of {ADJUST_METHODS}, got {method!r}")
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim not in (1, 2):
        raise ValueError(f"p_values: needs a 1-D family of p-values (or 2-D, a family a row), got shape {p.shape}")
    if not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p_values: every p-value must be a finite number in [0, 1]")
    if p.shape[-1] == 0 or method == "none":
        return p.copy()
    if method == "bh":
        return scipy.stats.false_discovery_control(p, axis=-1, method="bh")
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    stepped = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * np.take_along_axis(p, order, -1)), axis=-1)
    out = np.empty_like(p)
    np.put_along_axis(out, order, stepped, axis=-1)
    return out


def compare_all(diffs, method: str = "holm", alpha: float | None = None) -> list[dict]:
    """The comparisons of one family with ``p_adjusted`` added and ``win`` recomputed from it.

    ``diffs`` are :func:`paired_difference` results (at least ``p`` and ``mean``; ``effect`` and
    ``consistent_over_groups`` are used when present). ``alpha`` defaults to the one the comparisons were
    made at (they must agree). Returns new dicts; the unadjusted decision stays in ``win_unadjusted``.

    >>> fam = [{"mean": 0.3, "p": 0.01, "win": 1}, {"mean": -0.2, "p": 0.03, "win": -1},
    ...        {"mean": 0.1, "p": 0.4, "win": 0}]
    >>> [(d["p_adjusted"], d["win"]) for d in compare_all(fam, "holm")]
    [(0.03, 1), (0.06, 0), (0.4, 0)]
    """
    diffs = list(diffs)
    if method not in ADJUST_METHODS:
        raise ValueError(f"method: must be one of {ADJUST_METHODS}, got {method!r}")
    for i, d in enumerate(diffs):
        if "p" not in d or ("mean" not in d and "effect" not in d):
            raise ValueError(f"diffs: comparison {i} lacks 'p' or 'mean'; pass paired_difference results")
    if alpha is None:
        alphas = {float(d.get("alpha", ALPHA)) for d in diffs}
        if len(alphas) > 1:
            raise ValueError(f"alpha: the comparisons were made at different levels {sorted(alphas)}; pass one")
        alpha = alphas.pop() if alphas else ALPHA
    alpha = _check_alpha(alpha)
    padj = adjust([d["p"] for d in diffs], method)
    out = []
    for d, q in zip(diffs, padj):
        effect = d.get("effect", d.get("mean"))
        c = d.get("consistent_over_groups")
        win = int(_decide(effect, q, alpha, None if c is None else c))
        out.append({**d, "p_adjusted": float(q), "adjust_method": method, "alpha": alpha,
                    "win_unadjusted": d.get("win_unadjusted", d.get("win")), "win": win})
    return out


def tally(diffs, *, method: str | None = "holm", alpha: float | None = None) -> dict:
    """Counts of significant wins, losses and ties over one family of comparisons, after multiplicity control.

    Comparisons that already carry ``p_adjusted`` (from :func:`compare_all`) are counted as they are;
    otherwise they are first adjusted with ``method`` (Holm by default; ``None`` counts the raw ``win``
    fields, for results that have no p-value). Also returns the number ahead on the mean, the mean
    difference and the raw (unadjusted) win and loss counts.

    >>> fam = [{"mean": 0.3, "p": 0.001, "win": 1}, {"mean": -0.2, "p": 0.03, "win": -1},
    ...        {"mean": 0.1, "p": 0.5, "win": 0}]
    >>> t = tally(fam)
    >>> t["wins"], t["losses"], t["raw_losses"], t["method"]
    (1, 0, 1, 'holm')
    """
    diffs = list(diffs)
    adjusted = [("p_adjusted" in d) for d in diffs]
    if any(adjusted) and not all(adjusted):
        raise ValueError("diffs: mixes adjusted and unadjusted comparisons; adjust one family at once")
    if all(adjusted) and diffs:
        used = diffs[0].get("adjust_method")
    elif method is None:
        used = None
    else:
        if any("p" not in d for d in diffs):
            raise ValueError("diffs: some comparisons lack 'p'; pass method=None to count their wins as they are")
        diffs = compare_all(diffs, method=method, alpha=alpha)
        used = method
    raw = [d.get("win_unadjusted", d["win"]) for d in diffs]
    wins = sum(d["win"] == 1 for d in diffs)
    losses = sum(d["win"] == -1 for d in diffs)
    ahead = sum(d["mean"] > 0 for d in diffs)
    mean = float(np.mean([d["mean"] for d in diffs])) if diffs else float("nan")
    return {"n": len(diffs), "wins": wins, "losses": losses, "ties": len(diffs) - wins - losses,
            "ahead": ahead, "mean_difference": mean, "method": used,
            "raw_wins": sum(w == 1 for w in raw), "raw_losses": sum(w == -1 for w in raw)}


# -- description -----------------------------------------------------------------------------------------


def describe(x) -> dict:
    """``{"mean", "std" (ddof=1, 0 for one value), "n"}`` of finite values.

    >>> describe([1.0, 3.0])
    {'mean': 2.0, 'std': 1.4142135623730951, 'n': 2}
    """
    x = _finite_1d("x", x)
    std = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
    return {"mean": float(np.mean(x)), "std": std, "n": int(x.size)}


def bootstrap_means(x, *, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """``n_boot`` means of resamples (with replacement) of ``x``; one vectorized draw."""
    x = _finite_1d("x", x)
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot: must be an integer >= 1, got {n_boot!r}")
    idx = np.random.default_rng(seed).integers(0, x.size, size=(int(n_boot), x.size))
    return x[idx].mean(axis=1)


def bootstrap_ci(x, *, level: float = LEVEL, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval ``(lo, hi)`` of the mean of ``x`` — descriptive only.

    Not used for decisions: below ~30 values it covers too rarely (see the module docstring).

    >>> bootstrap_ci([2.0, 2.0, 2.0])
    (2.0, 2.0)
    """
    if not (isinstance(level, float) and 0.0 < level < 1.0):
        raise ValueError(f"level: must be a float in (0, 1), got {level!r}")
    means = bootstrap_means(x, n_boot=n_boot, seed=seed)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _g(v, digits=3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.{digits}g}"


def mean_std(x, digits: int = 3) -> str:
    """``"mean ± std"`` with ``digits`` significant digits."""
    d = describe(x)
    return f"{_g(d['mean'], digits)} ± {_g(d['std'], digits)}"


def ci_text(d: dict, digits: int = 3) -> str:
    """``"+0.5 [0.3, 0.7] p=0.0078 win"`` for a :func:`paired_difference` result.

    Shows the adjusted p-value (``p_holm=…``, ``p_bh=…``) when there is one, and the interval over task
    draws when there are groups.

    >>> ci_text({"mean": 0.5, "lo": 0.3, "hi": 0.7, "p": 0.0078125, "win": 1})
    '+0.5 [0.3, 0.7] p=0.00781 win'
    """
    tag = {1: "win", -1: "loss", 0: "tie"}[d["win"]]
    parts = [f"{d['mean']:+.{digits}g} [{_g(d['lo'], digits)}, {_g(d['hi'], digits)}]"]
    if "draw_lo" in d:
        parts.append(f"draws [{_g(d['draw_lo'], digits)}, {_g(d['draw_hi'], digits)}]")
    if "p_adjusted" in d:
        parts.append(f"p_{d.get('adjust_method', 'adj')}={_g(d['p_adjusted'], digits)}")
    elif "p" in d:
        parts.append(f"p={_g(d['p'], digits)}")
    return " ".join(parts + [tag])


def markdown_table(headers, rows) -> str:
    """A Markdown table from a header list and rows of cells (converted with ``str``).

    >>> print(markdown_table(["a", "b"], [[1, "x"]]))
    | a | b |
    |---|---|
    | 1 | x |
    """
    headers = [str(h) for h in headers]
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in rows:
        if len(r) != len(headers):
            raise ValueError(f"rows: every row needs {len(headers)} cells, got {len(r)}")
        out.append("| " + " | ".join(str(c).replace("|", "/") for c in r) + " |")
    return "\n".join(out)
