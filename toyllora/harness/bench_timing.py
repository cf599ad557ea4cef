"""Timing for the bench on a shared machine: interleaved rounds, medians with distribution-free intervals.

Load from other jobs comes and goes; timing candidates one after another lets a burst hit one of them only.
:func:`interleaved` times every candidate once per round, round after round, so a burst hits all of them
alike, and a ratio is taken per round (same moment, same load) before the median over rounds.

Example:
    >>> import numpy as np
    >>> median_ci([3.0, 1.0, 2.0, 5.0, 4.0, 6.0, 7.0, 8.0, 9.0])
    {'median': 5.0, 'lo': 2.0, 'hi': 8.0, 'level': 0.95, 'n': 9}
    >>> r = interleaved({"a": lambda: None, "b": lambda: None}, repeats=3)
    >>> sorted(r["seconds"]), len(r["seconds"]["a"])
    (['a', 'b'], 3)
"""

from __future__ import annotations

import os
import time
from typing import Callable

import numpy as np
from scipy import stats


def median_ci(values, level: float = 0.95) -> dict:
    """Median of ``values`` with a distribution-free confidence interval (order statistics, binomial).

    The interval ``[x_(j), x_(k)]`` covers the true median with probability at least ``level`` for any
    continuous distribution (i.i.d. rounds); with fewer than 6 values it is the full range.
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = x.size
    if n == 0:
        raise ValueError("values: need at least one timing")
    j = int(stats.binom.ppf((1 - level) / 2, n, 0.5))   # P(Bin(n, 1/2) < j) <= (1 - level)/2
    j = max(j - 1, 0) if n >= 6 else 0
    k = n - 1 - j
    return {"median": float(np.median(x)), "lo": float(x[j]), "hi": float(x[k]), "level": level, "n": int(n)}


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, *, warm: int = 1,
                alternate: bool = False) -> dict:
    """Time each ``fn()`` (which must block until its result is ready) in ``repeats`` interleaved rounds.

    ``alternate``: every other round runs the candidates in reverse order (a drift within a round, or a
    cache left warm by the previous candidate, then favours none of them). Returns
    ``{"seconds": {name: [t per round]}, "median_s": {name: median_ci}}`` after ``warm`` untimed rounds.
    """
    if repeats < 1:
        raise ValueError(f"repeats: must be >= 1, got {repeats}")
    for _ in range(warm):
        for fn in fns.values():
            fn()
    seconds = {name: [] for name in fns}
    for i in range(repeats):
        order = list(fns.items())
        for name, fn in (order[::-1] if alternate and i % 2 else order):
            t0 = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - t0)
    return {"seconds": seconds, "median_s": {k: median_ci(v) for k, v in seconds.items()}}


def ratio(result: dict, num: str, den: str) -> dict:
    """``num``'s time over ``den``'s, per round, as a median with its interval (see :func:`median_ci`)."""
    a, b = np.asarray(result["seconds"][num]), np.asarray(result["seconds"][den])
    return median_ci(a / b)


def xla_cost(compiled) -> dict:
    """XLA's cost analysis of a compiled computation (``jax.jit(f).lower(...).compile()``): its ``flops``
    and ``bytes_accessed`` — deterministic for a given JAX version and backend, unlike a wall time.

    >>> import jax, jax.numpy as jnp
    >>> xla_cost(jax.jit(lambda a: a @ a).lower(jnp.ones((4, 4), jnp.float32)).compile())["flops"]
    128.0
    """
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    cost = cost or {}
    return {"flops": float(cost.get("flops", float("nan"))),
            "bytes_accessed": float(cost.get("bytes accessed", float("nan")))}


def load() -> dict:
    """The machine's load averages and core count (to print next to every timing)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:  # not available on this platform
        one = five = fifteen = float("nan")
    return {"load_1min": one, "load_5min": five, "load_15min": fifteen, "cores": os.cpu_count()}
