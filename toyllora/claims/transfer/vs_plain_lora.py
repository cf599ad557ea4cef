"""transfer.vs-plain-lora: on the transformer, does ALLoRA beat LoRA with both flaws simply removed?"""

from __future__ import annotations

import dataclasses

import numpy as np

from toyllora.claims import Setup
from toyllora.claims.allora._common import ADVANTAGE_RULE, EFFECT, advantage_verdict, bounded_below
from toyllora.claims.transfer import _common as T
from toyllora.plotting import figure, legend
from toyllora.protocol import stats

STATEMENT = ("On a pre-trained transformer, ALLoRA (eta² = 4, no dropout, s = 1) beats LoRA with s = 1 and no "
             "dropout: the per-row adaptive factor, not merely the removal of dropout and of the scaling factor, "
             "is what helps (the reviewers' question 4, carried to the transformer rung).")
SOURCE = "review"
COUNTERPARTS = ("allora.vs-plain-lora",)
PAIR = ("allora", "lora-s1-d0")


@dataclasses.dataclass(frozen=True)
class Params:
    budget: T.Budget = T.Budget()
    cells: tuple = (("adam", "shifted"), ("sgd", "shifted"), ("adam", "agree"))
    records: tuple = (2, 4)          # the budgets compared: record indices (step = record · stride)


SETUP = Setup(full=Params(), fast=Params(budget=T.Budget(fast=True, steps=20, stride=10, batch=8, n_train=32,
                                                         n_val=16, n_test=16, draws=1, tune_seeds=1,
                                                         score_seeds=2, lr_points=2, max_extend=0),
                                         cells=(("adam", "shifted"),), records=(1, 2)))


def rule(p: Params) -> str:
    b = p.budget
    steps = ", ".join(str(k * b.stride) for k in p.records)
    cells = ", ".join(f"{o}/{t}" for o, t in p.cells)
    return (f"Protocol of the transformer rung ({T.budget_text(b)}). ALLoRA (eta² = 4, B = 0, s = 1, no dropout) "
            "against LoRA with s = 1 and no dropout — the same forward function and init, so the only difference "
            "is ALLoRA's per-row factor. Control: LoRA with both of the paper's flaws removed (that is the "
            f"comparison), under an equal tuning budget ({b.lr_points * b.tune_seeds * b.draws} base tuning runs "
            f"per cell each, grid extended at an edge). Each cell (optimizer/task in {cells}, budget in {steps} "
            "steps, the lr re-picked per budget): exact sign-flip test of ALLoRA − LoRA in test points, paired by "
            "draw and scoring seed, draws as groups, Holm over all cells; an edge pick is a tie. "
            + ADVANTAGE_RULE.format(m=EFFECT))


def measure(p: Params, seed: int) -> dict:
    b = p.budget
    diffs, scores = [], {}
    for opt, task in p.cells:
        res = {m: T.cell(m, opt, task, seed, b) for m in PAIR}
        scores[f"{opt}/{task}"] = {m: T.summary(r) for m, r in res.items()}
        for k in p.records:
            d = T.compare(res[PAIR[0]], res[PAIR[1]], b, record=k,
                          name=f"{opt}/{task} @ {k * b.stride}: allora − lora-s1-d0")
            d.update(optimizer=opt, task=task, step=k * b.stride)
            diffs.append(d)
    diffs = T.holm(diffs)
    return {"tally": stats.tally(diffs), "bounded_below_margin": bounded_below(diffs), "margin": EFFECT,
            "scores": scores,
            "diffs": [{k: d[k] for k in ("name", "optimizer", "task", "step", "mean", "lo", "hi", "p",
                                         "p_adjusted", "win", "edge", "lr_a", "lr_b", "n")} for d in diffs],
            "table_md": stats.markdown_table(["comparison", "mean [95% CI] (points)", "p (Holm)", "decision"],
                                             T.diff_rows(diffs)),
            "base": T.base_summary(b.fast)}


def verdict(m: dict) -> str:
    t = m["tally"]
    return advantage_verdict(t["n"], t["wins"], t["losses"], m["bounded_below_margin"])


def plot(record: dict):
    """Forest plot of ALLoRA − LoRA (s = 1, no dropout) per cell and budget, with the margin."""
    diffs = record["measurements"]["diffs"]
    fig, ax = figure(figsize=(8, 0.5 * len(diffs) + 1.6))
    y = np.arange(len(diffs))[::-1]
    for yi, d in zip(y, diffs):
        color = {1: "tab:green", -1: "tab:red", 0: "0.4"}[d["win"]]
        ax.errorbar(d["mean"], yi, xerr=[[d["mean"] - d["lo"]], [d["hi"] - d["mean"]]], fmt="o", color=color)
    ax.axvline(0, color="k", lw=0.8)
    ax.axvline(EFFECT, color="k", ls=":", lw=0.8, label=f"margin {EFFECT:g} points")
    ax.set_yticks(y, [d["name"] for d in diffs])
    ax.set_xlabel("ALLoRA − LoRA (s = 1, no dropout), test points, 95% interval")
    ax.set_title("transformer rung: ALLoRA against LoRA with both flaws removed")
    legend(ax)
    return fig


def _case(n, wins, losses, bounded=0):
    return {"tally": {"n": n, "wins": wins, "losses": losses}, "bounded_below_margin": bounded}


VERDICT_EXAMPLES = [
    (_case(6, 4, 0), "supported"),                 # W = 2N/3
    (_case(6, 3, 0), "partly supported"),
    (_case(6, 2, 1), "partly supported"),          # W = N/4 rounded up, W > L
    (_case(6, 1, 1), "not supported"),             # W = L
    (_case(6, 0, 0, bounded=3), "not supported"),  # B = N/2
    (_case(6, 1, 0, bounded=2), "inconclusive"),
]
