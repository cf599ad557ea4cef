"""dropout.iterates: sampled-dropout iterates reach the expected-loss (Tikhonov) solution only after many steps —
or do more steps not help at all at a constant step size?"""

from __future__ import annotations

import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.claims.dropout._common import (FAST_ITERATE_RUNS, IterateRuns, band_decision, exp_interval, groups_of,
                                             iterate_runs, iterate_runs_text, one_sample, window_mean)
from toyllora.plotting import figure, legend

STATEMENT = ("Dropout acts as its expected (Tikhonov) regularizer only after many steps: within limited steps the "
             "sampled-mask iterates differ from the expected-loss iterates, and given enough steps they reach the "
             "expected-loss minimizer.")
SOURCE = "review"
FLOOR_BAND = (0.8, 1.25)   # late/early distance ratio: 'more steps do not bring the iterates closer'
SHRINK = 0.8               # ... at most this: more steps do
FLOOR_MIN = 0.01           # a floor: the late distance stays above 1 % of ||ΔW*||
CONTROL_SHARE = 0.25       # control: the expected-loss run's early-window distance <= this share of the sampled one's

Params = IterateRuns       # the runs are shared with dropout.steps-vs-stepsize (one cached set per process)
SETUP = Setup(full=IterateRuns(), fast=FAST_ITERATE_RUNS)


def rule(p: Params) -> str:
    k = len(p.lrs)
    return (f"{iterate_runs_text(p)}. Does the number of steps close the distance? Per unit (draw × seed) and "
            "constant lr, R = (mean distance of the sampled iterates over the last quarter of the budget) / (mean "
            "over the second quarter), on log scale, with its stratified t-interval (Bonferroni over the "
            f"{2 * k} interval decisions of this claim: {100 * (1 - 0.05 / (2 * k)):.1f} % intervals). Control: the "
            "expected-loss run from the same init (no mask noise) must have converged by the second quarter (its "
            f"mean distance there <= {CONTROL_SHARE:g} × the sampled run's), else the windows measure optimization, "
            f"not dropout, and the verdict is inconclusive. Supported if at every lr R's interval lies below "
            f"{SHRINK:g} (more steps keep bringing the iterates to ΔW*); not supported if at every lr R's interval "
            f"lies inside [{FLOOR_BAND[0]:g}, {FLOOR_BAND[1]:g}] and the late distance's interval lies above "
            f"{FLOOR_MIN:g} (a floor that more steps do not remove); partly supported if some lrs shrink and the "
            "others floor; inconclusive otherwise. Reported: the peak sampled–expected gap (the 'limited steps' "
            "difference) and the floor per lr (its step-size law is dropout.steps-vs-stepsize).")


def measure(p: Params, seed: int) -> dict:
    raw = iterate_runs(p, seed)
    rec = raw["records"]
    U = p.draws * p.seeds
    g = groups_of(p.draws, p.seeds)
    alpha = 0.05 / (2 * len(p.lrs))
    out = {"records": rec, "per_lr": {}, "interval_level": 1 - alpha}
    for i, lr in enumerate(p.lrs):
        ds = raw["dist"][i, 0].reshape(U, -1)
        de = raw["dist"][i, 1].reshape(U, -1)
        gap = raw["gap"][i].reshape(U, -1)
        early, late = window_mean(ds, rec, 0.25, 0.5), window_mean(ds, rec, 0.75, 1.0)
        ratio = one_sample(np.log(late / early), g, f"lr {lr:g}: log R", alpha=alpha)
        floor = one_sample(np.log(late), g, f"lr {lr:g}: log late distance", alpha=alpha)
        e_early = float(window_mean(de, rec, 0.25, 0.5).mean())
        out["per_lr"][str(lr)] = {
            "ratio_late_over_early": exp_interval(ratio), "late_distance": exp_interval(floor),
            "early_distance_mean": float(early.mean()), "control_early_distance_mean": e_early,
            "control_converged": bool(e_early <= CONTROL_SHARE * float(early.mean())),
            "peak_gap_median": float(np.median(gap.max(axis=1))),
            "step_of_peak_gap_median": float(np.median(np.asarray(rec)[gap.argmax(axis=1)])),
            "dist_sampled_median_curve": np.median(ds, 0).tolist(),
            "dist_sampled_q10": np.percentile(ds, 10, 0).tolist(), "dist_sampled_q90": np.percentile(ds, 90, 0).tolist(),
            "dist_expected_median_curve": np.median(de, 0).tolist(), "gap_median_curve": np.median(gap, 0).tolist(),
            "diverged": int((raw["diverged"][i] >= 0).sum())}
    return out


def verdict(m: dict) -> str:
    rows = list(m["per_lr"].values())
    if not all(r["control_converged"] for r in rows):
        return "inconclusive"
    shrink = [r["ratio_late_over_early"]["hi"] is not None and r["ratio_late_over_early"]["hi"] < SHRINK for r in rows]
    floor = [band_decision(r["ratio_late_over_early"]["lo"], r["ratio_late_over_early"]["hi"], *FLOOR_BAND) == 1
             and r["late_distance"]["lo"] is not None and r["late_distance"]["lo"] > FLOOR_MIN for r in rows]
    if all(shrink):
        return "supported"
    if all(floor):
        return "not supported"
    if any(shrink) and all(s or f for s, f in zip(shrink, floor)):
        return "partly supported"
    return "inconclusive"


def plot(record: dict):
    """Distance to ΔW* over training: sampled iterates (median, 10–90 % band) and the expected-loss control, per
    lr; the two windows of R shaded."""
    m = record["measurements"]
    fig, ax = figure(1, 1, figsize=(9, 4.8))
    t = np.asarray(m["records"])
    for i, (lr, r) in enumerate(m["per_lr"].items()):
        ax.plot(t[1:], np.asarray(r["dist_sampled_median_curve"])[1:], color=f"C{i}", label=f"lr {lr}: sampled")
        ax.fill_between(t[1:], np.asarray(r["dist_sampled_q10"])[1:], np.asarray(r["dist_sampled_q90"])[1:],
                        color=f"C{i}", alpha=0.12)
        ax.plot(t[1:], np.maximum(np.asarray(r["dist_expected_median_curve"])[1:], 1e-7), ":", color=f"C{i}",
                label=f"lr {lr}: expected loss (control)")
    T = t[-1]
    ax.axvspan(0.25 * T, 0.5 * T, color="0.9", zorder=0)
    ax.axvspan(0.75 * T, T, color="0.8", zorder=0)
    ax.set_yscale("log")
    ax.set_xlabel("SGD step (shaded: the windows of R)")
    ax.set_ylabel("||ΔW − ΔW*|| / ||ΔW*||")
    ax.set_title("Do more steps bring sampled-dropout iterates to the expected-loss minimizer?")
    legend(ax, "below", ncol=3)
    return fig


def _case(ratios=((0.9, 1.1), (0.85, 1.2)), floor_lo=0.03, control=True):
    per = {str(0.1 * (i + 1)): {"ratio_late_over_early": {"lo": lo, "hi": hi}, "late_distance": {"lo": floor_lo},
                                "control_converged": control} for i, (lo, hi) in enumerate(ratios)}
    return {"per_lr": per}


VERDICT_EXAMPLES = [
    (_case(), "not supported"),                                  # a floor at every lr
    (_case(ratios=((0.81, 1.1), (0.85, 1.24))), "not supported"),  # just inside [0.8, 1.25]
    (_case(ratios=((0.79, 1.1), (0.85, 1.2))), "inconclusive"),  # one interval crosses 0.8
    (_case(ratios=((0.9, 1.26), (0.85, 1.2))), "inconclusive"),  # ... or 1.25
    (_case(floor_lo=0.009), "inconclusive"),                     # the floor is within 1 % of ΔW*
    (_case(ratios=((0.5, 0.79), (0.4, 0.6))), "supported"),      # more steps keep helping
    (_case(ratios=((0.5, 0.81), (0.4, 0.6))), "inconclusive"),
    (_case(ratios=((0.5, 0.7), (0.9, 1.1))), "partly supported"),
    (_case(control=False), "inconclusive"),                      # the expected-loss control has not converged
]
