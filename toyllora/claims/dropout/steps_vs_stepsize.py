"""dropout.steps-vs-stepsize: at a constant step size sampled-dropout iterates never reach the expected-loss
minimizer (their distance floors ∝ √lr); iterate averaging or a decaying step size does."""

from __future__ import annotations

import numpy as np

from toyllora.claims import Setup
from toyllora.claims.dropout._common import (FAST_ITERATE_RUNS, IterateRuns, exp_interval, groups_of, iterate_runs,
                                             iterate_runs_text, one_sample, window_mean)
from toyllora.plotting import figure, legend

STATEMENT = ("Infinite steps do not give the expectation: at a constant step size the sampled-dropout iterates "
             "never reach the expected-loss minimizer — their distance floors at a level ∝ √lr — while iterate "
             "averaging or a decaying step size does reach it (Clara, Langer, Schmidt-Hieber 2023).")
SOURCE = "review"
SLOPE_BAND = (0.25, 0.75)  # the log–log slope of the floor against lr: closer to 1/2 than to 0 (no law) or 1
CLOSER = 0.5               # averaging / decay: at least twice as close as the constant-lr floor
CONTROL_SHARE = 0.1        # control: every expected-loss run ends within 0.1 × F of ΔW*

Params = IterateRuns       # the runs of dropout.iterates (one cached set per process)
SETUP = Setup(full=IterateRuns(), fast=FAST_ITERATE_RUNS)


def rule(p: Params) -> str:
    k = 1 + 2 * len(p.lrs)
    return (f"{iterate_runs_text(p)}. Floor F = mean distance of the constant-lr sampled iterates over the last "
            "quarter. (a) F ∝ √lr: per unit (draw × seed) the least-squares slope of log F against log lr; its "
            f"stratified t-interval inside [{SLOPE_BAND[0]:g}, {SLOPE_BAND[1]:g}] holds, wholly outside fails. (b) "
            "Averaging: the Polyak average of the second half of the sampled iterates, distance / F on log scale, "
            f"interval below {CLOSER:g} at every lr holds (above {CLOSER:g} at some lr fails). (c) Decaying step "
            f"size lr·min(1, {p.t0}/t): its mean distance over the last tenth of the budget / F, the same test. "
            f"Intervals are Bonferroni "
            f"over the {k} decisions ({100 * (1 - 0.05 / k):.1f} %). Control: every expected-loss run (no mask noise, "
            f"same constant lr and init) ends within {CONTROL_SHARE:g}·F of ΔW* at every lr, so the floor is the masks' "
            "and not slow optimization; else inconclusive. Supported if (a), (b), (c) hold; partly supported if one "
            "or two hold; not supported if none holds and one fails; inconclusive otherwise.")


def _decision(iv, below=None, band=None) -> int:
    lo, hi = iv["lo"], iv["hi"]
    if lo is None or hi is None:
        return 0
    if band is not None:
        return 1 if band[0] <= lo and hi <= band[1] else (-1 if hi < band[0] or lo > band[1] else 0)
    return 1 if hi < below else (-1 if lo > below else 0)


def measure(p: Params, seed: int) -> dict:
    raw = iterate_runs(p, seed)
    rec = raw["records"]
    U = p.draws * p.seeds
    g = groups_of(p.draws, p.seeds)
    alpha = 0.05 / (1 + 2 * len(p.lrs))
    F = np.stack([window_mean(raw["dist"][i, 0].reshape(U, -1), rec, 0.75, 1.0) for i in range(len(p.lrs))])
    x = np.log(np.asarray(p.lrs))
    xc = x - x.mean()
    slopes = (np.log(F) - np.log(F).mean(0)).T @ xc / (xc @ xc)        # per unit
    s = one_sample(slopes, g, "slope of log F against log lr", alpha=alpha)
    out = {"records": rec, "lrs": list(p.lrs), "slope": {"mean": s["mean"], "lo": s["lo"], "hi": s["hi"]},
           "per_lr": {}, "interval_level": 1 - alpha}
    for i, lr in enumerate(p.lrs):
        avg = raw["dist_avg"][i].reshape(U)
        dec = window_mean(raw["dist"][i, 2].reshape(U, -1), rec, 0.9, 1.0)
        exp_end = raw["dist"][i, 1].reshape(U, -1)[:, -1]
        out["per_lr"][str(lr)] = {
            "floor": exp_interval(one_sample(np.log(F[i]), g, "log F", alpha=alpha)),
            "averaged_over_floor": exp_interval(one_sample(np.log(avg / F[i]), g, "avg/F", alpha=alpha)),
            "decaying_over_floor": exp_interval(one_sample(np.log(dec / F[i]), g, "decay/F", alpha=alpha)),
            "control_end_distance_max": float(exp_end.max()),
            "control_ok": bool(exp_end.max() <= CONTROL_SHARE * np.exp(np.log(F[i]).mean())),
            "sampled_median_curve": np.median(raw["dist"][i, 0].reshape(U, -1), 0).tolist(),
            "decaying_median_curve": np.median(raw["dist"][i, 2].reshape(U, -1), 0).tolist(),
            "expected_median_curve": np.median(raw["dist"][i, 1].reshape(U, -1), 0).tolist(),
            "averaged_median": float(np.median(avg))}
    return out


def verdict(m: dict) -> str:
    rows = list(m["per_lr"].values())
    if not all(r["control_ok"] for r in rows):
        return "inconclusive"
    a = _decision(m["slope"], band=SLOPE_BAND)
    parts = [a]
    for key in ("averaged_over_floor", "decaying_over_floor"):
        d = [_decision(r[key], below=CLOSER) for r in rows]
        parts.append(1 if all(x == 1 for x in d) else (-1 if any(x == -1 for x in d) else 0))
    held = sum(x == 1 for x in parts)
    if held == 3:
        return "supported"
    if held:
        return "partly supported"
    return "not supported" if any(x == -1 for x in parts) else "inconclusive"


def plot(record: dict):
    """Left: distance to ΔW* over training per lr — constant lr, decaying lr, expected-loss control; right: the
    floor against lr (log–log) with the √lr reference, and the averaged iterates."""
    m = record["measurements"]
    fig, axes = figure(1, 2, figsize=(13, 4.8))
    t = np.asarray(m["records"])
    for i, (lr, r) in enumerate(m["per_lr"].items()):
        axes[0].plot(t[1:], np.asarray(r["sampled_median_curve"])[1:], color=f"C{i}", label=f"lr {lr}: constant")
        axes[0].plot(t[1:], np.asarray(r["decaying_median_curve"])[1:], "--", color=f"C{i}", label=f"lr {lr}: decaying")
        axes[0].plot(t[1:], np.maximum(np.asarray(r["expected_median_curve"])[1:], 1e-7), ":", color=f"C{i}",
                     label=f"lr {lr}: expected loss")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("SGD step")
    axes[0].set_ylabel("||ΔW − ΔW*|| / ||ΔW*|| (median over units)")
    axes[0].set_title("Constant vs decaying step size")
    legend(axes[0], "below", ncol=3)
    lrs = np.asarray(m["lrs"])
    fl = [m["per_lr"][str(lr)]["floor"] for lr in m["lrs"]]
    av = [m["per_lr"][str(lr)]["averaged_median"] for lr in m["lrs"]]
    gm = np.asarray([f["geo_mean"] for f in fl])
    axes[1].errorbar(lrs, gm, yerr=[gm - [f["lo"] for f in fl], [f["hi"] for f in fl] - gm], fmt="o-", capsize=4,
                     label=f"floor F (slope {m['slope']['mean']:.2f} [{m['slope']['lo']:.2f}, {m['slope']['hi']:.2f}])")
    axes[1].plot(lrs, gm[0] * np.sqrt(lrs / lrs[0]), "k--", lw=0.8, label="∝ √lr")
    axes[1].plot(lrs, av, "s-", label="averaged iterates (median)")
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("constant learning rate")
    axes[1].set_ylabel("distance to ΔW*")
    axes[1].set_title("The floor is the step size's, not the number of steps'")
    legend(axes[1], "below")
    return fig


def _case(slope=(0.4, 0.6), avg=(0.1, 0.3), dec=(0.2, 0.45), control=True):
    row = {"averaged_over_floor": {"lo": avg[0], "hi": avg[1]}, "decaying_over_floor": {"lo": dec[0], "hi": dec[1]},
           "control_ok": control}
    return {"slope": {"lo": slope[0], "hi": slope[1]}, "per_lr": {"0.1": row, "0.2": row}}


VERDICT_EXAMPLES = [
    (_case(), "supported"),
    (_case(slope=(0.26, 0.74)), "supported"),        # just inside [0.25, 0.75]
    (_case(slope=(0.24, 0.6)), "partly supported"),  # straddles 0.25
    (_case(slope=(0.6, 0.76)), "partly supported"),  # straddles 0.75
    (_case(slope=(0.8, 0.9)), "partly supported"),   # outside: not √lr
    (_case(dec=(0.3, 0.51)), "partly supported"),    # decay not clearly twice as close
    (_case(avg=(0.51, 0.8), dec=(0.6, 0.9), slope=(0.0, 0.2)), "not supported"),
    (_case(avg=(0.4, 0.8), dec=(0.4, 0.9), slope=(0.2, 0.6)), "inconclusive"),
    (_case(control=False), "inconclusive"),          # the expected-loss control did not converge
]
