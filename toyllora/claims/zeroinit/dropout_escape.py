"""zeroinit.dropout-escape: dropout slows the escape from the zero-init start (B = 0)."""

from __future__ import annotations

import dataclasses

import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.claims.zeroinit._common import (BASE, MODES, PLATEAU, SITE_CODES, DropoutRuns, Units, dropout_name,
                                              dropout_runs, holm, log_ratio_test, progress, summary)
from toyllora.plotting import figure, legend
from toyllora.theory import dynamics

STATEMENT = "Dropout slows the escape from the zero-init start (B = 0)."
SOURCE = "paper"
TOYS = (BASE, PLATEAU)
SLOWDOWN = 1.1  # a cell is "not slower" when its interval excludes a slowdown of this factor


@dataclasses.dataclass(frozen=True)
class Params:
    runs: DropoutRuns = DropoutRuns()
    level: float = 0.5   # escape: the learned fraction reaches level × (own fixed point | the full target)


SETUP = Setup(full=Params(), fast=Params(runs=DropoutRuns(units=Units(draws=2, seeds=2), steps=400,
                                                          drop_rates=(0.4,))))


def _cells(r: DropoutRuns):
    return [(toy, site, mode, d) for toy in TOYS for site in SITE_CODES for mode in MODES for d in r.drop_rates]


def _key(toy, site, mode, d):
    return f"{toy.name}|{site}|{mode}|{d:g}"


def rule(p: Params) -> str:
    r, u = p.runs, p.runs.units
    k = len(_cells(r)) // len(TOYS)
    return (f"LoRA (A random, B = 0) under SGD lr {fmt(r.lr)} for {r.steps} steps on the base toy (no plateau) "
            f"and the plateau toy (shift {fmt(PLATEAU.spectrum)}, A × {fmt(PLATEAU.init_scale)}), {u.draws} task "
            f"draws × {u.seeds} seeds per master seed; drop rates {fmt(r.drop_rates)} at the input (PEFT) and the "
            "bottleneck, with sampled masks and with the closed-form expected loss. Control: no dropout, paired "
            "by unit (same task and same A). Escape step = first step (interpolated) where the learned fraction "
            f"<ΔŴ, ΔW>/||ΔW||² reaches {fmt(p.level)} × p*(q), p*(q) the learned fraction at the minimizer of the "
            "expected-dropout loss (input: q; bottleneck: the Mianjy–Arora–Vidal shrinkage) — the run's own "
            "target, so that dropout's shrinkage of the target is not counted as a slower start; the same level "
            "of the full target (absolute, the old statistic) is reported beside it. Per cell (site × mode × "
            f"rate, {k} cells per toy) the geometric-mean ratio of escape steps with/without dropout, its t-interval at "
            f"level 1 − 0.05/{k} (Bonferroni) and the sign-flip test of the log ratio (draws as groups, Holm over "
            f"the toy's {k} cells); a run that never escapes counts as escaping at the end of the budget. A cell "
            f"is slower if its test is a Holm win with ratio > 1; not slower if the interval's upper end is < "
            f"{fmt(SLOWDOWN)}. The plateau toy decides (the base toy has no slow start to slow down; its cells "
            "are reported): supported if every plateau cell at the largest drop rate is slower; partly "
            "supported if some plateau cell is slower; not supported if no plateau cell is slower and every one "
            "is not slower; inconclusive otherwise.")


def measure(p: Params, seed: int) -> dict:
    r = p.runs
    u = r.units
    runs, steps = dropout_runs(r, seed)
    k = len(_cells(r)) // len(TOYS)
    out = {"steps": steps, "budget": r.steps, "cells": {}, "controls": {}}
    esc0 = {}
    for toy in TOYS:
        prog = progress(runs[(toy.name, dropout_name("SGD", r.lr))])
        esc0[toy.name] = dynamics.escape_time(prog, p.level, steps, interpolate=True)
        out["controls"][toy.name] = {"escape": summary(esc0[toy.name]), "median_curve": np.median(prog, 0),
                                     "escape_share_of_budget": float(np.median(esc0[toy.name]) / r.steps)}
    own, absolute = {t.name: {} for t in TOYS}, {t.name: {} for t in TOYS}
    for toy, site, mode, d in _cells(r):
        prog = progress(runs[(toy.name, dropout_name("SGD", r.lr, site, d, mode))])
        pstar = dynamics.fixed_point_progress(toy.spectrum, 1.0 - d, site, toy.rank)
        e_own = dynamics.escape_time(prog, p.level * pstar, steps, interpolate=True)
        e_abs = dynamics.escape_time(prog, p.level, steps, interpolate=True)
        key = _key(toy, site, mode, d)
        own[toy.name][key] = log_ratio_test(e_own, esc0[toy.name], u, budget=r.steps, alpha=0.05 / k)
        absolute[toy.name][key] = log_ratio_test(e_abs, esc0[toy.name], u, budget=r.steps, alpha=0.05 / k)
        tail = max(1, len(steps) // 10)
        out["cells"][key] = {"fixed_point_progress": pstar, "end_progress_mean": float(prog[:, -tail:].mean()),
                             "escape_own": summary(e_own), "escape_absolute": summary(e_abs),
                             "median_curve": np.median(prog, 0)}
    for fams, name in ((own, "own"), (absolute, "absolute")):
        for fam in fams.values():
            for key, d in holm(fam).items():
                out["cells"][key][f"ratio_{name}"] = d
    out["max_drop_rate"] = max(r.drop_rates)
    return out


def cell_outcome(c: dict) -> str:
    d = c["ratio_own"]
    if d["win"] == 1:
        return "slower"
    return "not slower" if d["ratio_hi"] is not None and d["ratio_hi"] < SLOWDOWN else "undecided"


def verdict(m: dict) -> str:
    top = float(m["max_drop_rate"])
    out = {k: cell_outcome(c) for k, c in m["cells"].items() if k.split("|")[0] == PLATEAU.name}
    at_top = [o for k, o in out.items() if float(k.split("|")[-1]) == top]
    if at_top and all(o == "slower" for o in at_top):
        return "supported"
    if any(o == "slower" for o in out.values()):
        return "partly supported"
    return "not supported" if all(o == "not slower" for o in out.values()) else "inconclusive"


def plot(record: dict):
    """Escape ratios (own target and absolute level) per cell, and the learned fraction on the plateau toy."""
    data = record["measurements"]
    fig, axes = figure(1, 2, figsize=(14, 6.2))
    ax = axes[0]
    keys = list(data["cells"])
    for i, key in enumerate(keys):
        for j, (which, col, lab) in enumerate((("ratio_own", "tab:blue", "own target (the rule)"),
                                               ("ratio_absolute", "tab:gray", "absolute level (old statistic)"))):
            d = data["cells"][key][which]
            ax.errorbar([d["ratio"]], [i + 0.18 * (j - 0.5)], xerr=[[d["ratio"] - d["ratio_lo"]],
                                                                     [d["ratio_hi"] - d["ratio"]]],
                        fmt="o", color=col, capsize=2, ms=4, label=lab if i == 0 else None)
    ax.axvline(1.0, color="k", lw=0.6)
    ax.axvline(SLOWDOWN, color="k", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_yticks(range(len(keys)), [k.replace("|", ", ") for k in keys], fontsize=7)
    ax.set_xlabel("escape step with / without dropout (Bonferroni interval)")
    ax.set_title("> 1: dropout slows the escape", fontsize=9)
    legend(ax, "below", fontsize=8)
    ax = axes[1]
    x = np.maximum(np.asarray(data["steps"], float), 1)
    c0 = data["controls"][PLATEAU.name]
    ax.plot(x, np.asarray(c0["median_curve"], float), "k", label="no dropout")
    for key, c in data["cells"].items():
        toy, site, mode, d = key.split("|")
        if toy == PLATEAU.name and mode == "expected":
            line, = ax.plot(x, np.asarray(c["median_curve"], float), label=f"{site} dropout {d} (expected loss)")
            ax.axhline(c["fixed_point_progress"], color=line.get_color(), ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("learned fraction <ΔŴ,ΔW>/||ΔW||² (median)")
    ax.set_title("plateau toy, SGD; dotted: the expected-loss fixed point p*(q)", fontsize=9)
    legend(ax, "below", fontsize=8)
    fig.suptitle("Dropout and the escape from B = 0: against its own target dropout does not slow the start",
                 fontsize=10)
    return fig


def _c(win=0, hi=1.0):
    return {"ratio_own": {"win": win, "ratio_hi": hi}}


def _case(top=(1, 1), low=(0, 0), hi=1.0, base=(0, 1.5)):
    cells = {f"plateau|input|sampled|{d}": _c(w, hi) for d, w in (("0.4", top[0]), ("0.2", low[0]))}
    cells.update({f"plateau|bottleneck|expected|{d}": _c(w, hi) for d, w in (("0.4", top[1]), ("0.2", low[1]))})
    cells["base|input|sampled|0.4"] = _c(*base)      # the base toy is reported, never decides
    return {"max_drop_rate": 0.4, "cells": cells}


VERDICT_EXAMPLES = [
    (_case(top=(1, 1), low=(0, 0), hi=1.5), "supported"),          # every cell at the largest rate slower
    (_case(top=(1, 0), low=(0, 0), hi=1.5), "partly supported"),
    (_case(top=(0, 0), low=(1, 0), hi=1.0), "partly supported"),   # slower at a smaller rate only
    (_case(top=(0, -1), low=(0, 0), hi=1.09), "not supported"),    # faster or within 10 %
    (_case(top=(0, -1), low=(0, 0), hi=1.09, base=(1, 2.0)), "not supported"),   # a base-toy cell cannot decide
    (_case(top=(0, 0), low=(0, 0), hi=1.1), "inconclusive"),       # the interval reaches 1.1
]
