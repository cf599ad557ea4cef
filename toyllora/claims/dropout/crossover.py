"""dropout.crossover: the step budget at which dropout starts to help, as a number with an interval, and how it
moves with the fine-tuning set size and the learning rate ("how is 'limited steps' defined?")."""

from __future__ import annotations

import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.claims.dropout._common import (FAST_BUDGET_RUNS, BudgetRuns, budget_runs, budget_runs_text,
                                             exp_interval, groups_of, holm, method_name, one_sample, paired)
from toyllora.plotting import figure, legend

STATEMENT = ("'Limited steps' has a size: LoRA with dropout overtakes LoRA without dropout after a finite budget "
             "T* (below it dropout hurts, above it helps), and T* comes earlier with a smaller fine-tuning set and "
             "with a larger learning rate — dropout helps once the model starts to fit its training set.")
SOURCE = "review"
MAX_CENSORED = 0.25     # at most this share of units may lack a crossing on either side

Params = BudgetRuns          # the runs of dropout.short-vs-long (one cached set per process)
SETUP = Setup(full=BudgetRuns(), fast=FAST_BUDGET_RUNS)


def conditions(p: Params) -> dict:
    lo, hi = p.crossover_lr_log2
    return {"base": (None, lo), "lr x2": (None, hi), f"n {p.small_n}": (p.small_n, lo)}


def rule(p: Params) -> str:
    lo, hi = p.crossover_lr_log2
    return (f"{budget_runs_text(p)}. Here at fixed learning rates (no selection, so every seed counts: "
            f"{p.tune_seeds + p.final_seeds} seeds × {p.draws} draws), LoRA at drop rate {fmt(p.crossover_rate)} "
            "against the control LoRA without dropout, same draw, seed and lr, under three conditions: base (256 "
            f"rows, lr 2^{int(lo)}), lr ×2 (2^{int(hi)}), and n {p.small_n} (the first {p.small_n} rows, lr "
            f"2^{int(lo)}). Per unit, the test cross-entropy difference d(T) = loss(rate 0) − loss(dropout) at every "
            f"record (every {p.stride} steps); T* = its first sign change from ≤ 0 to > 0, interpolated in log T "
            "(left-censored at the first record if d > 0 there; right-censored if d is never > 0). (a) A "
            f"crossover: at most {100 * MAX_CENSORED:g} % of the base units censored on either side and the 95 % "
            "t-interval of the geometric mean of T* (stratified over draws) inside (first record, long budget); "
            "(b) lr ×2 and (c) the smaller set move T* earlier: paired differences of log T* against base, exact "
            "sign-flip test, every draw agreeing, Holm over the two. Supported if (a), (b), (c); partly supported "
            "if (a) and not both shifts; not supported if more than half of the base units are censored (dropout "
            "never overtakes within the budget, or helps from the first record: no limited-steps regime); "
            "inconclusive otherwise.")


def crossing(d, steps):
    """``(T*, censoring)``: the first sign change of ``d`` from ≤ 0 to > 0 along ``steps``, interpolated in log T;
    censoring is ``"left"`` (``d > 0`` at the first step: T* = first step), ``"right"`` (``d`` never > 0: inf) or
    ``None``. (The first change, not the last: late dips of a noisy curve do not move the onset.)

    >>> t_star, censoring = crossing([-1.0, -0.5, 0.5, 1.0], [10, 20, 40, 80])
    >>> round(t_star, 9), censoring          # sqrt(20 · 40): halfway between 20 and 40 in log T
    (28.284271247, None)
    >>> crossing([1.0, 2.0], [10, 20]), crossing([-1.0, -1.0], [10, 20])
    ((10.0, 'left'), (inf, 'right'))
    """
    d, t = np.asarray(d, np.float64), np.asarray(steps, np.float64)
    if d[0] > 0:
        return float(t[0]), "left"
    pos = np.nonzero(d > 0)[0]
    if len(pos) == 0:
        return float("inf"), "right"
    k = int(pos[0]) - 1
    lt = np.log(t)
    frac = -d[k] / (d[k + 1] - d[k])
    return float(np.exp(lt[k] + frac * (lt[k + 1] - lt[k]))), None


def measure(p: Params, seed: int) -> dict:
    raw = budget_runs(p, seed)
    steps = np.asarray(raw["records"])[1:]
    S = p.tune_seeds + p.final_seeds
    g = groups_of(p.draws, S)
    out = {"conditions": {}, "records": steps.tolist()}
    logs = {}
    for cname, (n, e) in conditions(p).items():
        c0 = raw["runs"][method_name(0.0, n=n)][float(e)]["test_loss"][:, :, 1:]
        c1 = raw["runs"][method_name(p.crossover_rate, n=n)][float(e)]["test_loss"][:, :, 1:]
        d = (c0 - c1).reshape(p.draws * S, -1)
        ts, cens = zip(*[crossing(row, steps) for row in d])
        ts = np.asarray(ts)
        logs[cname] = np.log(ts)
        n_rows = n or 256
        row = {"lr": 2.0 ** e, "n": n_rows, "T_star": [None if not np.isfinite(v) else float(v) for v in ts],
               "left_censored": int(sum(c == "left" for c in cens)),
               "right_censored": int(sum(c == "right" for c in cens)),
               "mean_difference_curve": d.mean(0).tolist(),
               "diff_q10": np.percentile(d, 10, axis=0).tolist(), "diff_q90": np.percentile(d, 90, axis=0).tolist()}
        if np.all(np.isfinite(ts)):
            iv = one_sample(np.log(ts), g, f"{cname}: log T*")
            row["T_star_interval"] = exp_interval(iv)
            row["T_star_interval_epochs"] = {k: (None if v is None else v * p.batch_size / n_rows)
                                             for k, v in exp_interval(iv).items()}
        else:
            row["T_star_interval"] = row["T_star_interval_epochs"] = None
        out["conditions"][cname] = row
    fam = []
    for cname in list(conditions(p))[1:]:
        ok = np.isfinite(logs[cname]) & np.isfinite(logs["base"])
        if ok.sum() >= 2 and len(set(g[ok])) == p.draws and min(np.bincount(g[ok])) >= 2:
            d = paired(logs[cname][ok], logs["base"][ok], g[ok], f"{cname} − base: log T*")
        else:
            d = {"name": f"{cname} − base: log T*", "mean": None, "lo": None, "hi": None, "p": 1.0, "win": 0}
        d["units"] = int(ok.sum())
        fam.append(d)
    out["shifts"] = holm(fam)
    out["first_record"], out["long_budget"] = int(steps[0]), int(p.long)
    return out


def verdict(m: dict) -> str:
    base = m["conditions"]["base"]
    units = len(base["T_star"])
    if base["left_censored"] > units / 2 or base["right_censored"] > units / 2:
        return "not supported"
    iv = base["T_star_interval"]
    a = (base["left_censored"] <= MAX_CENSORED * units and base["right_censored"] <= MAX_CENSORED * units
         and iv is not None and iv["lo"] > m["first_record"] and iv["hi"] < m["long_budget"])
    if not a:
        return "inconclusive"
    earlier = [d["win"] == -1 for d in m["shifts"]]
    return "supported" if all(earlier) else "partly supported"


def plot(record: dict):
    """Left: the mean difference loss(rate 0) − loss(dropout) over training per condition (10–90 % band over
    units), with the T* intervals; right: T* per unit and condition."""
    m = record["measurements"]
    fig, axes = figure(1, 2, figsize=(13, 4.6))
    t = np.asarray(m["records"])
    for i, (cname, c) in enumerate(m["conditions"].items()):
        axes[0].plot(t, c["mean_difference_curve"], color=f"C{i}", label=f"{cname} (lr {c['lr']:.3g}, n {c['n']})")
        axes[0].fill_between(t, c["diff_q10"], c["diff_q90"], color=f"C{i}", alpha=0.12)
        iv = c["T_star_interval"]
        if iv is not None:
            axes[0].axvspan(iv["lo"], iv["hi"], color=f"C{i}", alpha=0.15)
        ts = [v for v in c["T_star"] if v is not None]
        axes[1].plot(ts, np.full(len(ts), i) + np.linspace(-0.2, 0.2, len(ts)), "o", color=f"C{i}", alpha=0.6)
        if iv is not None:
            axes[1].errorbar([iv["geo_mean"]], [i], xerr=[[iv["geo_mean"] - iv["lo"]], [iv["hi"] - iv["geo_mean"]]],
                             fmt="s", color="k", capsize=4)
    axes[0].axhline(0, color="k", lw=0.8)
    axes[0].set_xscale("log")
    axes[0].set_yscale("symlog", linthresh=0.05)
    axes[0].set_xlabel("training budget (optimizer steps)")
    axes[0].set_ylabel("test cross-entropy: rate 0 − dropout\n(> 0: dropout helps)")
    axes[0].set_title("When does dropout start to help? (shaded: T* interval)")
    legend(axes[0], "below", ncol=3)
    axes[1].set_xscale("log")
    axes[1].set_yticks(range(len(m["conditions"])), list(m["conditions"]))
    axes[1].set_xlabel("crossover T* (steps; per unit, and geometric mean ± 95 % t-interval)")
    axes[1].set_title("T* per condition")
    return fig


def _case(left=0, right=0, lo=60.0, hi=150.0, shifts=(-1, -1), units=12):
    return {"conditions": {"base": {"T_star": [100.0] * units, "left_censored": left, "right_censored": right,
                                    "T_star_interval": None if lo is None else {"geo_mean": 100.0, "lo": lo, "hi": hi}}},
            "shifts": [{"name": "lr x2 − base", "win": shifts[0]}, {"name": "n − base", "win": shifts[1]}],
            "first_record": 25, "long_budget": 600}


VERDICT_EXAMPLES = [
    (_case(), "supported"),
    (_case(shifts=(-1, 0)), "partly supported"),
    (_case(shifts=(1, -1)), "partly supported"),
    (_case(left=3), "supported"),                    # 3 of 12 censored: at the 25 % limit
    (_case(left=4), "inconclusive"),                 # just over it
    (_case(right=7, lo=None), "not supported"),      # dropout never overtakes in most units
    (_case(left=7), "not supported"),                # dropout helps from the first record in most units
    (_case(lo=20.0), "inconclusive"),                # interval reaches below the first record
    (_case(hi=700.0), "inconclusive"),               # ... or beyond the budget
]
