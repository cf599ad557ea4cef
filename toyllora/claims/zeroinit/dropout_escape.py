"""zeroinit.dropout-escape: dropout slows the escape from the zero-init start (B = 0)."""

from __future__ import annotations

import dataclasses

import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.claims.zeroinit._common import Toy, learned, run_methods, summary, toy_task
from toyllora.plotting import figure, legend
from toyllora.theory import dynamics

STATEMENT = "Dropout slows the escape from the zero-init start (B = 0)."
SOURCE = "paper"
SITE_CODES = {"input": 0.0, "bottleneck": 1.0}  # dynamics.Rule.site
MODES = {"sampled": 0.0, "expected": 1.0}        # dynamics.Rule.expected: sampled masks or the expected loss
SLOWDOWN = 1.1  # the verdict: dropout slows the escape in a cell if the slowdown is >= this


@dataclasses.dataclass(frozen=True)
class Params:
    toy: Toy = Toy()
    seeds: int = 5                     # optimization seeds master_seed, master_seed + 1, ...
    steps: int = 1000
    stride: int = 2
    lr: float = 0.03                   # SGD
    keeps: tuple = (1.0, 0.9, 0.8, 0.6)  # keep probabilities q (first: no dropout, last: the largest drop rate)
    level: float = 0.25                # escape: ||BA||_F first reaches level · ||ΔW||_F


SETUP = Setup(full=Params(), fast=Params(seeds=2, keeps=(1.0, 0.6)))


def _rate(q: float) -> str:
    return f"{1 - q:.1f}"


def rule(p: Params) -> str:
    return (f"Two-factor toy, kaiming A and B = 0, SGD lr {fmt(p.lr)}, {p.steps} steps, {p.seeds} seeds, drop rates "
            f"{fmt([round(1 - q, 2) for q in p.keeps])}. Escape step = first recorded step where ||BA||_F >= "
            f"{fmt(p.level)}·||ΔW||_F (an absolute level), median over seeds. For each of the "
            f"{len(SITE_CODES) * len(MODES)} cells ({' or '.join(SITE_CODES)} dropout) × (sampled masks or "
            "closed-form expected loss), slowdown = median escape at drop rate "
            f"{fmt(round(1 - p.keeps[-1], 2))} / median escape without dropout (a run that never escapes counts as "
            f"slower). Supported if slowdown >= {fmt(SLOWDOWN)} in all cells; partly supported if in some; not "
            "supported if in none; inconclusive if the no-dropout median never escapes.")


def measure(p: Params, seed: int) -> dict:
    task = toy_task(p.toy, seed)
    seeds = list(range(seed, seed + p.seeds))
    thr = p.level * float(np.linalg.norm(np.asarray(task.delta)))
    methods = [(f"{site}|{mode}|{q:g}", "init_a", dynamics.Rule(lr=p.lr, keep=q, site=code, expected=exp))
               for site, code in SITE_CODES.items() for mode, exp in MODES.items() for q in p.keeps]
    runs, steps = run_methods(task, methods, seeds, rank=p.toy.rank, steps=p.steps, stride=p.stride)
    out = {"threshold": thr, "steps": steps, "cells": {}}
    for site in SITE_CODES:
        for mode in MODES:
            cell = {}
            for q in p.keeps:
                norm = np.linalg.norm(learned(runs[f"{site}|{mode}|{q:g}"], task), axis=(-2, -1))
                esc = dynamics.escape_time(norm, thr, steps)
                cell[_rate(q)] = {"escape": summary(esc), "median_curve": np.median(norm, 0),
                                  "final_norm_BA": float(np.median(norm[:, -1]))}
            base, top = cell[_rate(p.keeps[0])]["escape"]["median"], cell[_rate(p.keeps[-1])]["escape"]["median"]
            cell["slowdown_at_max_drop"] = float(top / base) if np.isfinite(base) else float("nan")
            out["cells"][f"{site}|{mode}"] = cell
    return out


def _no_dropout(cell: dict) -> dict:
    """The cell's entry at the smallest drop rate (0: no dropout)."""
    return cell[min((k for k in cell if k != "slowdown_at_max_drop"), key=float)]


def verdict(m: dict) -> str:
    cells = m["cells"].values()
    # a recorded None is NaN when the no-dropout median never escapes (inconclusive) and inf when only the
    # dropout median never escapes (slower: a hit); the no-dropout median (None: never) tells them apart
    if any(_no_dropout(c)["escape"]["median"] is None for c in cells):
        return "inconclusive"
    hits = [c["slowdown_at_max_drop"] is None or c["slowdown_at_max_drop"] >= SLOWDOWN for c in cells]
    return "supported" if all(hits) else "partly supported" if any(hits) else "not supported"


def plot(record: dict):
    """Escape step against drop rate for each site and mode (median and interquartile range over seeds)."""
    data = record["measurements"]
    fig, ax = figure(1, 1, figsize=(8.5, 4.2))
    cells = data["cells"]
    for i, (key, cell) in enumerate(cells.items()):
        rates = sorted((k for k in cell if k != "slowdown_at_max_drop"), key=float)
        esc = [cell[k]["escape"] for k in rates]
        med = np.asarray([e["median"] for e in esc], float)  # None (never escaped) becomes NaN
        lo = med - np.asarray([e["q25"] for e in esc], float)
        hi = np.asarray([e["q75"] for e in esc], float) - med
        slow = cell["slowdown_at_max_drop"]
        slow = "∞" if slow is None else f"{slow:.2f}"  # None: only the dropout median never escaped
        dodge = 0.006 * (i - (len(cells) - 1) / 2)  # sampled and expected often coincide: shift them apart
        ax.errorbar([float(k) + dodge for k in rates], med, yerr=[lo, hi], marker="o", capsize=3,
                    ls="--" if key.endswith("expected") else "-", label=f"{key.replace('|', ', ')} (×{slow} at max)")
    ax.set_xlabel("drop rate 1 − q")
    ax.set_ylabel(f"steps until ||BA||_F ≥ {data['threshold']:.3g} (SGD)")
    ax.set_title("Does dropout slow the escape from B = 0? (points dodged sideways)")
    legend(ax)
    return fig


def _case(slowdowns, base=(50.0, 50.0, 50.0, 50.0)):
    keys = ("input|sampled", "input|expected", "bottleneck|sampled", "bottleneck|expected")
    return {"cells": {k: {"0.0": {"escape": {"median": b}}, "slowdown_at_max_drop": s}
                      for k, s, b in zip(keys, slowdowns, base)}}


VERDICT_EXAMPLES = [
    (_case([1.2, 1.1, 1.3, 2.0]), "supported"),               # 1.1 counts (>=)
    (_case([1.2, None, 1.3, 2.0]), "supported"),              # None with a finite base: never escaped with dropout
    (_case([1.2, 1.09, 1.0, 1.0]), "partly supported"),       # just below 1.1
    (_case([1.0, 1.0, 0.9, 1.09]), "not supported"),
    (_case([None, 1.0, 1.0, 1.0], base=(None, 50.0, 50.0, 50.0)), "inconclusive"),
]
