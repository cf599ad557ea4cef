"""zeroinit.unfair-regularization: dropout decays B far more than A (across drop rates, Fig. 3)."""

from __future__ import annotations

import dataclasses

import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.claims.zeroinit._common import (BASE, SITE_CODES, DropoutRuns, Units, dropout_name, dropout_runs,
                                              interval_test)
from toyllora.plotting import figure, legend

STATEMENT = ("Dropout regularizes the two factors unfairly: its penalty decays A with the weight ||B_k||² (zero at "
             "the start) and B with ||X A_kᵀ||² (large), so across drop rates the final ||A|| moves by about 30 % "
             "while the final ||B|| moves by more than 500 % (Fig. 3).")
SOURCE = "paper"
PAPER = {"spread_A": 0.30, "spread_B": 5.0}   # the paper's Fig. 3, as relative spreads
UNFAIR_RATIO = 2.0   # unfair: across drop rates ||B||² moves by more than this × what ||A||² moves
UNFAIR = (UNFAIR_RATIO - 1.0) / (UNFAIR_RATIO + 1.0)   # the same threshold on D = (|ΔB²| − |ΔA²|)/(|ΔA²| + |ΔB²|)


@dataclasses.dataclass(frozen=True)
class Params:
    runs: DropoutRuns = DropoutRuns()


SETUP = Setup(full=Params(), fast=Params(runs=DropoutRuns(units=Units(draws=2, seeds=2), steps=400,
                                                          drop_rates=(0.4,))))


def _optimizers(r: DropoutRuns):
    """``(label, opt, lr, record index)``: SGD read at the same flow time lr·t = lr_half·steps, Adam at the end."""
    t_half = int(round(r.steps * r.lr_half / r.lr / r.stride))
    return (("SGD lr " + f"{r.lr:g}", "SGD", r.lr, t_half), ("SGD lr " + f"{r.lr_half:g}", "SGD", r.lr_half, -1),
            ("Adam lr " + f"{r.adam_lr:g}", "Adam", r.adam_lr, -1))


def rule(p: Params) -> str:
    r, u = p.runs, p.runs.units
    k = 3 * len(SITE_CODES)
    return (f"Base toy, LoRA (A random, B = 0), sampled inverted-dropout masks at the input (PEFT) and the "
            f"bottleneck, drop rates 0 (the control) and {fmt(r.drop_rates)}, {u.draws} task draws × {u.seeds} "
            f"seeds per master seed, {r.steps} steps; under SGD at lr {fmt(r.lr)} and {fmt(r.lr_half)} (read at "
            f"the same flow time lr·t = {fmt(r.lr_half * r.steps)}) and under Adam lr {fmt(r.adam_lr)} (the old "
            "record's optimizer; read at the end). The paper's mechanism (unequal decay weights) predicts that "
            "dropout shrinks ||B||² more than ||A||²; the gradient flow of any loss of BA whose dropout penalty is "
            "invariant under A_k → cA_k, B_k → B_k/c (input and bottleneck, sampled or expected) conserves "
            "diag(AAᵀ − BᵀB), i.e. Δ||A_k||² = Δ||B_k||² — the control is that law, whose discrete drift halves "
            f"with lr. Per unit, with ΔA² = ||A||²(rate {fmt(max(r.drop_rates))}) − ||A||²(0) and ΔB² likewise "
            "(Frobenius, paired by unit: same task, same A), the scale-free D = (|ΔB²| − |ΔA²|) / (|ΔA²| + |ΔB²|) "
            f"∈ [−1, 1] (0: the law; {UNFAIR:.3g}: B's squared norm moves {fmt(UNFAIR_RATIO)} × A's); its mean and "
            f"t-interval over units (draws as groups) at level 1 − 0.05/{k} (Bonferroni over the {k} cells, "
            f"optimizer × site). A cell is unfair if the interval's lower end is > {UNFAIR:.3g}, fair if its upper "
            f"end is < {UNFAIR:.3g}. "
            "The mechanism is a property of the penalty, so the SGD cells (the flow limit, at two step sizes) "
            "decide: supported if every SGD cell is unfair; partly supported if some SGD cell is, or if every "
            "SGD cell is fair but an Adam cell is unfair (an optimizer effect: Adam breaks the law); not "
            "supported if every SGD cell is fair and no Adam cell is unfair; inconclusive otherwise. The paper's statistic (relative spread of the final norms across "
            "drop rates) and the spread of ||B|| the law predicts from ||A|| are reported. Control: no dropout "
            "on the same unit (drop rate 0) and the conservation law's D = 0, whose drift halves with lr.")


def _norms(run, t):
    return np.sum(run["A"][:, t] ** 2, axis=(-2, -1)), np.sum(run["B"][:, t] ** 2, axis=(-2, -1))


def measure(p: Params, seed: int) -> dict:
    r = p.runs
    u = r.units
    runs, steps = dropout_runs(r, seed)
    k = 3 * len(SITE_CODES)
    top = max(r.drop_rates)
    out = {"drop_rates": [0.0] + list(r.drop_rates), "cells": {}, "paper": dict(PAPER)}
    for label, opt, lr, t in _optimizers(r):
        run0 = runs[(BASE.name, dropout_name(opt, lr))]
        a0, b0 = _norms(run0, t)
        astart = np.sum(run0["A"][:, 0] ** 2, axis=(-2, -1))
        for site in SITE_CODES:
            a, b = _norms(runs[(BASE.name, dropout_name(opt, lr, site, top))], t)
            dA2, dB2 = np.abs(a - a0), np.abs(b - b0)
            D = (dB2 - dA2) / (dA2 + dB2)
            R = (b - b0) / (a - a0)
            # the old statistic: relative spread of the mean final norm over drop rates (0, rates)
            nA, nB, law = [], [], []
            for d in [0.0] + list(r.drop_rates):
                run = runs[(BASE.name, dropout_name(opt, lr, site, d))]
                ad, bd = _norms(run, t)
                nA.append(float(np.mean(np.sqrt(ad)))), nB.append(float(np.mean(np.sqrt(bd))))
                law.append(float(np.mean(np.sqrt(np.maximum(ad - astart, 0.0)))))   # ||B||² = ||A||² − ||A0||²
            spread = lambda v: float((max(v) - min(v)) / min(v))
            out["cells"][f"{label}|{site}"] = {
                "optimizer": opt, "lr": lr, "record": t, "site": site,
                "delta_A2": a - a0, "delta_B2": b - b0, "D": interval_test(D, u, alpha=0.05 / k),
                "R_median": float(np.median(R)),
                "law_violation": float(np.median(np.abs((b - b0) - (a - a0)) / (np.abs(a - a0) + np.abs(b - b0)))),
                "norm_A_mean": nA, "norm_B_mean": nB, "norm_B_law": law,
                "spread_A": spread(nA), "spread_B": spread(nB), "spread_B_law": spread(law)}
    return out


def cell_outcome(c: dict) -> str:
    d = c["D"]
    if d["lo"] is not None and d["lo"] > UNFAIR:
        return "unfair"
    return "fair" if d["hi"] is not None and d["hi"] < UNFAIR else "undecided"


def verdict(m: dict) -> str:
    out = {k: cell_outcome(c) for k, c in m["cells"].items()}
    sgd = [o for k, o in out.items() if m["cells"][k]["optimizer"] == "SGD"]
    adam = [o for k, o in out.items() if m["cells"][k]["optimizer"] != "SGD"]
    if sgd and all(o == "unfair" for o in sgd):
        return "supported"
    all_fair = bool(sgd) and all(o == "fair" for o in sgd)
    if "unfair" in sgd or (all_fair and "unfair" in adam):
        return "partly supported"
    return "not supported" if all_fair else "inconclusive"


def plot(record: dict):
    """D per cell (the law: 0), and the final norms across drop rates with the law's ||B||."""
    data = record["measurements"]
    fig, axes = figure(1, 3, figsize=(16, 5.0))
    ax = axes[0]
    keys = list(data["cells"])
    for i, key in enumerate(keys):
        d = data["cells"][key]["D"]
        ax.errorbar([d["mean"]], [i], xerr=[[d["mean"] - d["lo"]], [d["hi"] - d["mean"]]], fmt="o", capsize=3,
                    color="tab:purple" if key.startswith("Adam") else "tab:blue")
    ax.axvline(0.0, color="k", lw=0.6, label="conservation law: |ΔB²| = |ΔA²|")
    ax.axvline(UNFAIR, color="k", ls=":", lw=0.8, label=f"'unfair': |ΔB²| = {UNFAIR_RATIO:g} |ΔA²|")
    ax.set_yticks(range(len(keys)), [k.replace("|", ", ") for k in keys], fontsize=8)
    ax.set_xlabel("D = (|Δ||B||²| − |Δ||A||²|) / (|Δ||A||²| + |Δ||B||²|), largest drop rate vs none")
    legend(ax, "below", fontsize=8)
    rates = np.asarray(data["drop_rates"], float)
    for ax, site in zip(axes[1:], SITE_CODES):
        for key, c in data["cells"].items():
            if c["site"] != site or c["record"] != -1:   # final norms only (SGD at lr_half, Adam)
                continue
            lab = key.split("|")[0]
            line, = ax.plot(rates, c["norm_A_mean"], "o-", label=f"||A|| {lab} (spread {100 * c['spread_A']:.0f} %)")
            ax.plot(rates, c["norm_B_mean"], "s--", color=line.get_color(),
                    label=f"||B|| {lab} (spread {100 * c['spread_B']:.0f} %)")
            ax.plot(rates, c["norm_B_law"], "x:", color=line.get_color(), label=f"law's ||B|| {lab}")
        ax.set_xlabel("drop rate")
        ax.set_ylabel("final Frobenius norm (mean over units)")
        ax.set_title(f"{site} dropout", fontsize=9)
        legend(ax, "below", fontsize=7)
    paper = data["paper"]
    fig.suptitle(f"Does dropout decay B more than A? (paper, Fig. 3: spreads ~{100 * paper['spread_A']:.0f} % for "
                 f"A, > {100 * paper['spread_B']:.0f} % for B)", fontsize=10)
    return fig


def _cell(opt, lo, hi):
    return {"optimizer": opt, "D": {"lo": lo, "hi": hi, "mean": (lo + hi) / 2}}


def _case(sgd=(-0.05, 0.05), adam=(-0.05, 0.05)):
    return {"cells": {"SGD lr 0.1|input": _cell("SGD", *sgd), "SGD lr 0.05|bottleneck": _cell("SGD", *sgd),
                      "Adam lr 0.01|input": _cell("Adam", *adam)}}


VERDICT_EXAMPLES = [
    (_case(sgd=(0.4, 0.6)), "supported"),
    (_case(adam=(0.34, 0.5)), "partly supported"),                   # unfair under Adam only
    ({"cells": {"SGD lr 0.1|input": _cell("SGD", 0.4, 0.5), "SGD lr 0.1|bottleneck": _cell("SGD", 0.0, 0.1)}},
     "partly supported"),                                            # unfair at one site only
    (_case(adam=(-0.5, 0.33)), "not supported"),
    (_case(adam=(-0.5, 0.9)), "not supported"),                      # an undecided Adam cell cannot upgrade
    (_case(sgd=(0.2, 1.0 / 3.0)), "inconclusive"),                   # 1/3 is not below 1/3
    (_case(sgd=(0.2, 0.5), adam=(0.4, 0.6)), "inconclusive"),        # SGD undecided: Adam cannot decide
    (_case(sgd=(1.0 / 3.0, 0.5)), "inconclusive"),                   # 1/3 is not above 1/3
]
