"""Honest statistics for the head-to-head: mean ± std, paired differences with bootstrap CIs, wins.

A "win" of method a over method b is counted only when the bootstrap 95 % confidence interval of the mean
paired difference ``a − b`` (paired by seed) lies entirely above 0; a "loss" when it lies entirely below 0;
otherwise the comparison is a tie. All randomness is NumPy's ``default_rng(seed)``, so tables are
reproducible.

Example:
    >>> import numpy as np
    >>> from toyllora.protocol import stats
    >>> a, b = np.array([1.0, 1.2, 0.9, 1.1]), np.array([0.5, 0.6, 0.4, 0.7])
    >>> d = stats.paired_difference(a, b, seed=0)
    >>> round(d["mean"], 3), d["win"], d["lo"] > 0
    (0.5, 1, True)
    >>> stats.mean_std([1.0, 2.0, 3.0])
    '2 ± 1'

References:
  Efron & Tibshirani, "An Introduction to the Bootstrap" (1993), ch. 13 (percentile intervals).
"""

from __future__ import annotations

import math

import numpy as np

LEVEL = 0.95
N_BOOT = 2000


def _finite_1d(name: str, x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError(f"{name}: needs at least one value")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: contains non-finite values (NaN or inf); count failures explicitly")
    return x


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
    """Percentile bootstrap confidence interval ``(lo, hi)`` of the mean of ``x``.

    >>> bootstrap_ci([2.0, 2.0, 2.0])
    (2.0, 2.0)
    """
    if not (isinstance(level, float) and 0.0 < level < 1.0):
        raise ValueError(f"level: must be a float in (0, 1), got {level!r}")
    means = bootstrap_means(x, n_boot=n_boot, seed=seed)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def paired_difference(a, b, *, level: float = LEVEL, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """Mean paired difference ``a − b`` (same seeds), its bootstrap CI and the win/tie/loss sign.

    Returns:
      ``{"mean", "std", "lo", "hi", "n", "win"}`` with ``win`` = +1 if ``lo > 0``, −1 if ``hi < 0``, else 0.
    """
    a, b = _finite_1d("a", a), _finite_1d("b", b)
    if a.shape != b.shape:
        raise ValueError(f"b: paired values need the same number of seeds as a ({a.size}), got {b.size}")
    d = a - b
    lo, hi = bootstrap_ci(d, level=level, n_boot=n_boot, seed=seed)
    win = 1 if lo > 0 else (-1 if hi < 0 else 0)
    return {**describe(d), "lo": lo, "hi": hi, "win": win}


def tally(diffs) -> dict:
    """Counts of significant wins, losses and ties, plus the count ahead on the mean, over comparisons."""
    diffs = list(diffs)
    wins = sum(d["win"] == 1 for d in diffs)
    losses = sum(d["win"] == -1 for d in diffs)
    ahead = sum(d["mean"] > 0 for d in diffs)
    mean = float(np.mean([d["mean"] for d in diffs])) if diffs else float("nan")
    return {"n": len(diffs), "wins": wins, "losses": losses, "ties": len(diffs) - wins - losses,
            "ahead": ahead, "mean_difference": mean}


def _g(v, digits=3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.{digits}g}"


def mean_std(x, digits: int = 3) -> str:
    """``"mean ± std"`` with ``digits`` significant digits."""
    d = describe(x)
    return f"{_g(d['mean'], digits)} ± {_g(d['std'], digits)}"


def ci_text(d: dict, digits: int = 3) -> str:
    """``"+0.12 [0.05, 0.20] win"`` for a :func:`paired_difference` result."""
    tag = {1: "win", -1: "loss", 0: "tie"}[d["win"]]
    return f"{d['mean']:+.{digits}g} [{_g(d['lo'], digits)}, {_g(d['hi'], digits)}] {tag}"


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
