"""zeroinit.escape-time: ALLoRA at base lr l_b escapes B = 0 faster than LoRA at the matched lr eta·l_b."""

from __future__ import annotations

import dataclasses

import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.claims.zeroinit._common import (BASE, PLATEAU, EscapeRuns, Units, escape_runs, holm, log_ratio_test,
                                              lr_name, progress, summary)
from toyllora.plotting import figure, legend
from toyllora.theory import dynamics

STATEMENT = ("ALLoRA fixes the slow start of LoRA from B = 0: with its adaptive factor (c = eta at BA = 0) the "
             "escape from zero is faster than LoRA's at the paper's matched learning rate (LoRA at eta·l_b).")
SOURCE = "paper"
OPTIMIZERS = ("SGD", "Adam")
TOY_NAMES = (BASE.name, PLATEAU.name)
FIXED_RATIO = 0.5  # ALLoRA fixes the start in a cell if its escape step is at most this × LoRA's


@dataclasses.dataclass(frozen=True)
class Params:
    runs: EscapeRuns = EscapeRuns()
    threshold: float = 0.5     # escape: the learned fraction <ΔŴ, ΔW>/||ΔW||² first reaches this


SETUP = Setup(full=Params(), fast=Params(runs=EscapeRuns(units=Units(draws=2, seeds=2), steps=400)))


def _lrs(r: EscapeRuns, opt: str):
    return r.sgd_lrs if opt == "SGD" else r.adam_lrs


def names(r: EscapeRuns, opt: str):
    """``(ALLoRA at l_b, LoRA at eta·l_b, LoRA at l_b)`` method names under ``opt``."""
    top = _lrs(r, opt)[-1]
    return (f"ALLoRA {opt} l_b={lr_name(top / r.eta)}", f"LoRA {opt} lr={lr_name(top)}",
            f"LoRA {opt} lr={lr_name(top / r.eta)}")


def rule(p: Params) -> str:
    r, u = p.runs, p.runs.units
    pairs = "; ".join(f"{opt}: l_b = {lr_name(_lrs(r, opt)[-1] / r.eta)} vs LoRA at {lr_name(_lrs(r, opt)[-1])}"
                      for opt in OPTIMIZERS)
    k = len(TOY_NAMES) * len(OPTIMIZERS)
    return (f"Two toys (whitened X, d_in {BASE.d_in}, d_out {BASE.d_out}, n {BASE.n_train}, rank-2 shift, r 2, "
            f"s 1, A random and B = 0): the base toy (shift {fmt(BASE.spectrum)}, kaiming A: no plateau) and the "
            f"plateau toy (shift {fmt(PLATEAU.spectrum)}, A × {fmt(PLATEAU.init_scale)}: LoRA's escape takes a "
            f"sizeable part of the budget). {u.draws} task draws × {u.seeds} seeds per master seed, {r.steps} steps. "
            f"Escape step = first step (interpolated between records every {r.stride}) where the learned fraction "
            f"<ΔŴ, ΔW>/||ΔW||² reaches {fmt(p.threshold)}; a run that never does counts as escaping at the end "
            f"of the budget. ALLoRA (eta {fmt(r.eta)}) at base lr l_b against the control named by the paper, "
            f"LoRA at eta·l_b ({pairs}), under SGD and Adam (under Adam a constant factor on a gradient cancels). "
            f"Per cell (toy × optimizer, {k} cells): the geometric-mean ratio ALLoRA/LoRA of the escape steps "
            f"over the units, its t-interval at level 1 − 0.05/{k} (Bonferroni over the cells) and the sign-flip "
            f"test of the log ratio (draws as groups, Holm over the cells). A cell is fixed if the interval's "
            f"upper end is <= {fmt(FIXED_RATIO)}, not fixed if its lower end is > {fmt(FIXED_RATIO)}, undecided "
            "otherwise (or if a LoRA run never escapes, or an ALLoRA run never escapes while the interval would "
            "call the cell fixed). Supported if every cell is fixed; partly supported if some are; not supported "
            "if every cell is not fixed; inconclusive otherwise. ALLoRA against LoRA at l_b (the unmatched "
            "comparison) is reported alongside. Control: LoRA at the paper's matched rate eta·l_b, on the same "
            "units (same task, same A), which removes ALLoRA's adaptive factor and keeps its c = eta at BA = 0.")


def measure(p: Params, seed: int) -> dict:
    r = p.runs
    u = r.units
    runs, steps = escape_runs(r, seed)
    k = len(TOY_NAMES) * len(OPTIMIZERS)
    out = {"steps": steps, "budget": r.steps, "curves": {}, "cells": {}}
    family = {}
    for toy in TOY_NAMES:
        for opt in OPTIMIZERS:
            al, matched, same = names(r, opt)
            esc = {}
            for name in (al, matched, same):
                prog = progress(runs[(toy, name)])
                esc[name] = dynamics.escape_time(prog, p.threshold, steps, interpolate=True)
                out["curves"][f"{toy}|{name}"] = {"median": np.median(prog, 0), "escape": summary(esc[name]),
                                                  "diverged": int(np.sum(runs[(toy, name)]["diverged"] >= 0))}
            alpha = 0.05 / k
            cell = {"allora": al, "lora_matched": matched, "lora_same_lr": same,
                    "vs_matched": log_ratio_test(esc[al], esc[matched], u, budget=r.steps, alpha=alpha),
                    "vs_same_lr": log_ratio_test(esc[al], esc[same], u, budget=r.steps, alpha=alpha),
                    "never_allora": int(np.sum(~np.isfinite(esc[al]))),
                    "never_lora": int(np.sum(~np.isfinite(esc[matched])))}
            family[f"{toy}|{opt}"] = cell["vs_matched"]
            out["cells"][f"{toy}|{opt}"] = cell
    for key, d in holm(family).items():
        out["cells"][key]["vs_matched"] = d
    return out


def cell_outcome(c: dict) -> str:
    """``"fixed"``, ``"not fixed"`` or ``"undecided"`` for one cell as recorded."""
    d = c["vs_matched"]
    if c["never_lora"] > 0 or d["ratio_lo"] is None or d["ratio_hi"] is None:
        return "undecided"
    if d["ratio_hi"] <= FIXED_RATIO:
        return "undecided" if c["never_allora"] > 0 else "fixed"
    return "not fixed" if d["ratio_lo"] > FIXED_RATIO else "undecided"


def verdict(m: dict) -> str:
    out = [cell_outcome(c) for c in m["cells"].values()]
    if all(o == "fixed" for o in out):
        return "supported"
    if any(o == "fixed" for o in out):
        return "partly supported"
    return "not supported" if all(o == "not fixed" for o in out) else "inconclusive"


def plot(record: dict):
    """Learned fraction against steps per toy and optimizer (median over units), and the escape ratios."""
    data = record["measurements"]
    thr = record["config"]["setup"]["threshold"]
    fig, axes = figure(1, 5, figsize=(21, 5.2))
    x = np.maximum(np.asarray(data["steps"], float), 1)
    colors = {"ALLoRA": "tab:red", "matched": "tab:blue", "same": "tab:gray"}
    panel = 0
    for toy in TOY_NAMES:
        for opt in OPTIMIZERS:
            ax = axes[panel]
            c = data["cells"][f"{toy}|{opt}"]
            for role, name in (("ALLoRA", c["allora"]), ("matched", c["lora_matched"]), ("same", c["lora_same_lr"])):
                v = data["curves"][f"{toy}|{name}"]
                med = v["escape"]["median"]
                ax.plot(x, np.asarray(v["median"], float), color=colors[role],
                        label=f"{name} (median escape {'never' if med is None else f'{med:.0f}'})")
            ax.axhline(thr, color="k", lw=0.6, ls=":")
            ax.set_xscale("log")
            ax.set_xlabel("step")
            ax.set_title(f"{toy} toy, {opt}: {cell_outcome(c)}", fontsize=9)
            legend(ax, "below", fontsize=7)
            panel += 1
    axes[0].set_ylabel("learned fraction <ΔŴ,ΔW>/||ΔW||²")
    ax = axes[4]
    keys = list(data["cells"])
    for i, key in enumerate(keys):
        for j, (which, col) in enumerate((("vs_matched", "tab:blue"), ("vs_same_lr", "tab:gray"))):
            d = data["cells"][key][which]
            ax.errorbar([d["ratio"]], [i + 0.15 * (j - 0.5)], xerr=[[d["ratio"] - d["ratio_lo"]],
                                                                     [d["ratio_hi"] - d["ratio"]]],
                        fmt="o", color=col, capsize=3, label=("vs LoRA at eta·l_b" if which == "vs_matched"
                                                              else "vs LoRA at l_b") if i == 0 else None)
    ax.axvline(FIXED_RATIO, color="k", ls=":", lw=0.8)
    ax.axvline(1.0, color="k", lw=0.5)
    ax.set_xscale("log")
    ax.set_yticks(range(len(keys)), [k.replace("|", ", ") for k in keys])
    ax.set_xlabel("escape ratio ALLoRA / LoRA (Bonferroni interval)")
    ax.set_title("dotted: 'fixes' threshold", fontsize=9)
    legend(ax, "below", fontsize=7)
    fig.suptitle("Escape from B = 0: ALLoRA at l_b against LoRA at the matched eta·l_b (and at l_b); "
                 "under Adam the factor c = eta cancels", fontsize=10)
    return fig


def _cell(lo, hi, never_allora=0, never_lora=0):
    return {"vs_matched": {"ratio": (lo + hi) / 2, "ratio_lo": lo, "ratio_hi": hi},
            "never_allora": never_allora, "never_lora": never_lora}


def _case(*cells):
    keys = [f"{t}|{o}" for t in TOY_NAMES for o in OPTIMIZERS]
    return {"cells": dict(zip(keys, cells))}


VERDICT_EXAMPLES = [
    (_case(_cell(0.3, 0.5), _cell(0.2, 0.4), _cell(0.3, 0.45), _cell(0.1, 0.2)), "supported"),  # 0.5 counts
    (_case(_cell(0.3, 0.5), _cell(1.2, 1.3), _cell(1.0, 1.1), _cell(1.8, 2.0)), "partly supported"),
    (_case(_cell(0.51, 0.6), _cell(1.2, 1.3), _cell(1.0, 1.1), _cell(1.8, 2.0)), "not supported"),  # lo > 0.5
    (_case(_cell(0.5, 0.6), _cell(1.2, 1.3), _cell(1.0, 1.1), _cell(1.8, 2.0)), "inconclusive"),   # lo = 0.5
    (_case(_cell(0.3, 0.4, never_lora=1), _cell(1.2, 1.3), _cell(1.0, 1.1), _cell(1.8, 2.0)), "inconclusive"),
    (_case(_cell(0.3, 0.4, never_allora=1), _cell(1.2, 1.3), _cell(1.0, 1.1), _cell(1.8, 2.0)),
     "inconclusive"),                                                   # ALLoRA censored: cannot call it fixed
    (_case(_cell(0.6, 0.7, never_allora=2), _cell(1.2, 1.3), _cell(1.0, 1.1), _cell(1.8, 2.0)),
     "not supported"),                                                  # censoring only understates ALLoRA
]
