"""zeroinit.balance: gradient descent conserves its balance quantity up to a drift ∝ the step size; Adam breaks it."""

from __future__ import annotations

import dataclasses

import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.claims.zeroinit._common import (BASE, EscapeRuns, Units, escape_runs, interval_test, loglog_slope,
                                              lr_name)
from toyllora.plotting import figure, legend
from toyllora.theory import dynamics

STATEMENT = ("Gradient flow conserves AAᵀ − BᵀB (Du, Hu & Lee 2018, arXiv:1806.00900) — and LoRA+ the quantity "
             "AAᵀ/η_A − BᵀB/η_B, ALLoRA under SGD AAᵀ − BᵀB: gradient descent keeps each up to a drift that "
             "shrinks in proportion to the step size, while Adam breaks it (its drift does not shrink with the "
             "learning rate).")
SOURCE = "extension"
SGD_METHODS = ("LoRA", "LoRA+", "ALLoRA")   # judged: each with its own conserved quantity
ADAM_METHODS = ("LoRA", "ALLoRA")
SLOPE_RANGE = (0.5, 1.5)   # "drift ∝ lr": the log-log slope of the violation on lr lies in this range
ADAM_MAX_SLOPE = 0.5       # "does not shrink with lr": Adam's slope is below this
ADAM_MIN_LEVEL = 0.1       # ... and its violation at the smallest lr is at least this (O(1), not a drift)


@dataclasses.dataclass(frozen=True)
class Params:
    runs: EscapeRuns = EscapeRuns()  # the runs of zeroinit.escape-time (shared, run once per process)


SETUP = Setup(full=Params(), fast=Params(runs=EscapeRuns(units=Units(draws=2, seeds=2), steps=400)))


def method_names(r: EscapeRuns, method: str, opt: str):
    """The run names of ``method`` under ``opt`` at each learning rate of the grid (ascending)."""
    sq = float(np.sqrt(r.loraplus_ratio))
    lrs = r.sgd_lrs if opt == "SGD" else r.adam_lrs
    fmt_ = {"LoRA": lambda lr: f"LoRA {opt} lr={lr_name(lr)}",
            "ALLoRA": lambda lr: f"ALLoRA {opt} l_b={lr_name(lr / r.eta)}",
            "LoRA+": lambda lr: f"LoRA+ SGD lr_A={lr_name(lr / sq)}",
            "scaled GD": lambda lr: f"scaled GD SGD lr={lr_name(lr)}"}[method]
    return [fmt_(lr) for lr in lrs]


def quantity(method: str) -> str:
    return {"LoRA+": "AAᵀ/η_A − BᵀB/η_B", "scaled GD": "log det(AAᵀ+δ) − log det(BᵀB+δ)"}.get(method, "AAᵀ − BᵀB")


def violation(run, method: str, r: EscapeRuns):
    """The scale-free violation of the method's own conserved quantity (units, records)."""
    if method == "LoRA+":
        return dynamics.conservation_violation(run["A"], run["B"], lr_a=1.0, lr_b=r.loraplus_ratio)
    if method == "scaled GD":
        return dynamics.conservation_violation(run["A"], run["B"], scaled_delta=r.delta)
    return dynamics.conservation_violation(run["A"], run["B"])


def _k():
    return 2 * len(ADAM_METHODS) + len(SGD_METHODS)


def rule(p: Params) -> str:
    r, u = p.runs, p.runs.units
    return (f"On the base-toy runs of zeroinit.escape-time ({u.draws} task draws × {u.seeds} seeds per master "
            f"seed, {r.steps} steps, A random and B = 0), each method's own conserved quantity Φ (LoRA and ALLoRA: "
            "AAᵀ − BᵀB; LoRA+ (ratio " + fmt(r.loraplus_ratio) + "): AAᵀ/η_A − BᵀB/η_B; scaled GD: log det(AAᵀ+δ) − "
            f"log det(BᵀB+δ), δ {fmt(r.delta)}, reported only) and its scale-free violation "
            "||ΔΦ|| / (||Δ first term|| + ||Δ second term||) ∈ [0, 1] (0: kept; 1: only one factor moved), read at "
            f"the same flow time lr·t = {fmt(r.sgd_lrs[0])}·{r.steps} (SGD), {fmt(r.adam_lrs[0])}·{r.steps} (Adam) "
            f"for every lr of the grid (SGD {fmt(r.sgd_lrs)}, Adam {fmt(r.adam_lrs)}; ALLoRA at l_b = lr/"
            f"{fmt(r.eta)}, LoRA+ at lr_A = lr/√ratio). Per unit the slope of log violation on log lr; its "
            f"t-interval over units (draws as groups) at level 1 − 0.05/{_k()} (Bonferroni over the intervals). "
            f"(a) GD keeps it: for {', '.join(SGD_METHODS)} under SGD the slope interval lies in "
            f"[{SLOPE_RANGE[0]:g}, {SLOPE_RANGE[1]:g}] (drift ∝ lr); fails if one lies outside it or a run "
            f"diverged. (b) Adam breaks it: for {' and '.join(ADAM_METHODS)} under Adam the slope interval's "
            f"upper end is < {fmt(ADAM_MAX_SLOPE)} and the violation at the smallest lr has its lower end > "
            f"{fmt(ADAM_MIN_LEVEL)}; fails if a slope interval's lower end is > {fmt(ADAM_MAX_SLOPE)} (Adam's drift "
            "shrinks like GD's). Otherwise a part is undecided. Supported if (a) and (b) hold; partly supported "
            "if one holds; not supported if both fail; inconclusive otherwise. Control: the step size itself "
            "(halving it halves a discretization drift, not a flow that breaks the law) and the optimizer.")


def measure(p: Params, seed: int) -> dict:
    r = p.runs
    u = r.units
    runs, steps = escape_runs(r, seed)
    alpha = 0.05 / _k()
    out = {"steps": steps, "methods": {}}
    for opt, methods in (("SGD", SGD_METHODS + ("scaled GD",)), ("Adam", ADAM_METHODS)):
        lrs = np.asarray(r.sgd_lrs if opt == "SGD" else r.adam_lrs, float)
        idx = np.rint(r.steps * lrs[0] / lrs / r.stride).astype(int)       # records at the same flow time
        for method in methods:
            names = method_names(r, method, opt)
            v = [violation(runs[(BASE.name, n)], method, r) for n in names]
            at_tau = np.stack([vi[:, j] for vi, j in zip(v, idx)], axis=1)   # (units, lrs)
            q_plain = [dynamics.conservation_violation(runs[(BASE.name, n)]["A"], runs[(BASE.name, n)]["B"])
                       for n in names]
            slope = loglog_slope(lrs, at_tau)
            out["methods"][f"{method} {opt}"] = {
                "quantity": quantity(method), "lrs": lrs, "names": names, "flow_time_index": idx,
                "violation_at_tau": at_tau, "violation_at_tau_median": np.median(at_tau, 0),
                "plain_Q_violation_at_tau_median": np.median(np.stack([q[:, j] for q, j in zip(q_plain, idx)], 1), 0),
                "median_curves": [np.median(vi, 0) for vi in v],
                "slope": interval_test(slope, u, alpha=alpha),
                "level_at_smallest_lr": interval_test(at_tau[:, 0], u, alpha=alpha),
                "diverged": int(sum(np.sum(runs[(BASE.name, n)]["diverged"] >= 0) for n in names))}
    return out


def parts(m: dict) -> dict:
    ms = m["methods"]
    sgd = [ms[f"{x} SGD"] for x in SGD_METHODS]
    lo, hi = SLOPE_RANGE
    inside = [c["slope"]["lo"] >= lo and c["slope"]["hi"] <= hi for c in sgd]
    outside = [c["slope"]["hi"] < lo or c["slope"]["lo"] > hi for c in sgd]
    a = ("fails" if any(outside) or any(c["diverged"] > 0 for c in sgd) else
         "holds" if all(inside) else "undecided")
    adam = [ms[f"{x} Adam"] for x in ADAM_METHODS]
    breaks = [c["slope"]["hi"] < ADAM_MAX_SLOPE and c["level_at_smallest_lr"]["lo"] > ADAM_MIN_LEVEL for c in adam]
    shrinks = [c["slope"]["lo"] > ADAM_MAX_SLOPE for c in adam]
    b = "fails" if any(shrinks) else "holds" if all(breaks) else "undecided"
    return {"gd_keeps": a, "adam_breaks": b}


def verdict(m: dict) -> str:
    pt = list(parts(m).values())
    if all(v == "holds" for v in pt):
        return "supported"
    if any(v == "holds" for v in pt):
        return "partly supported"
    return "not supported" if all(v == "fails" for v in pt) else "inconclusive"


COLORS = {"LoRA SGD": "tab:blue", "LoRA+ SGD": "tab:green", "ALLoRA SGD": "tab:red", "scaled GD SGD": "tab:purple",
          "LoRA Adam": "tab:cyan", "ALLoRA Adam": "tab:orange"}


def plot(record: dict):
    """Violation of each method's own conserved quantity against flow time, and at equal flow time against lr."""
    data = record["measurements"]
    fig, axes = figure(1, 2, figsize=(13, 5.2))
    steps = np.asarray(data["steps"], float)
    for key, c in data["methods"].items():
        col = COLORS.get(key, "k")
        for j, (lr, curve) in enumerate(zip(c["lrs"], c["median_curves"])):
            y = np.asarray(curve, float)[1:]
            axes[0].plot(lr * steps[1:], np.maximum(y, 1e-8), color=col, alpha=0.35 + 0.3 * j,
                         label=f"{key}: {c['quantity']}" if j == len(c["lrs"]) - 1 else None)
        sl = c["slope"]
        axes[1].plot(c["lrs"], np.asarray(c["violation_at_tau_median"], float), "o-", color=col,
                     label=f"{key}: slope {sl['mean']:.2f} [{sl['lo']:.2f}, {sl['hi']:.2f}]")
    axes[0].set_xscale("log")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("flow time lr·t (lr of the grid)")
    axes[0].set_ylabel("violation of the method's own invariant")
    axes[0].set_title("median over units; darker = larger lr", fontsize=9)
    axes[1].set_xscale("log")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("learning rate of the grid (ALLoRA runs at lr/eta, LoRA+ at lr_A = lr/√ratio)")
    axes[1].set_ylabel("violation at equal flow time (median)")
    pt = parts(data)
    axes[1].set_title(f"GD keeps: {pt['gd_keeps']}; Adam breaks: {pt['adam_breaks']}", fontsize=9)
    legend(axes[0], "below", fontsize=7)
    legend(axes[1], "below", fontsize=7)
    fig.suptitle("What each update rule conserves (base toy, B = 0 start): a drift ∝ lr is discretization, "
                 "a drift that does not shrink is the optimizer", fontsize=10)
    return fig


def _m(slope, level=(0.4, 0.5), diverged=0):
    return {"slope": {"lo": slope[0], "hi": slope[1], "mean": sum(slope) / 2},
            "level_at_smallest_lr": {"lo": level[0], "hi": level[1]}, "diverged": diverged}


def _case(sgd=((0.9, 1.1),) * 3, adam=((-0.1, 0.1),) * 2, level=(0.4, 0.5), diverged=0):
    ms = {f"{x} SGD": _m(s, diverged=diverged) for x, s in zip(SGD_METHODS, sgd)}
    ms.update({f"{x} Adam": _m(s, level) for x, s in zip(ADAM_METHODS, adam)})
    return {"methods": ms}


VERDICT_EXAMPLES = [
    (_case(), "supported"),
    (_case(sgd=((0.5, 1.5),) * 3, adam=((-0.5, 0.49),) * 2, level=(0.11, 0.2)), "supported"),   # edges count
    (_case(adam=((0.6, 0.9),) * 2), "partly supported"),          # Adam's drift shrinks: (b) fails
    (_case(sgd=((1.6, 2.0),) * 3), "partly supported"),           # drift faster than ∝ lr: (a) fails
    (_case(diverged=1), "partly supported"),                      # a diverged SGD run: (a) fails
    (_case(sgd=((1.6, 2.0),) * 3, adam=((0.6, 0.9),) * 2), "not supported"),
    (_case(sgd=((0.4, 1.1),) * 3, adam=((0.6, 0.9),) * 2), "inconclusive"),    # (a) undecided
    (_case(sgd=((1.6, 2.0),) * 3, level=(0.05, 0.5)), "inconclusive"),         # Adam's level undecided
]
