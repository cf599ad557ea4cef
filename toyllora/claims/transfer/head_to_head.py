"""transfer.head-to-head: ALLoRA against the LoRA family on the pre-trained transformer, equal tuning budgets."""

from __future__ import annotations

import dataclasses

import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.claims.allora._common import ADVANTAGE_RULE, EFFECT, advantage_verdict, bounded_below
from toyllora.claims.transfer import _common as T
from toyllora.plotting import figure, legend
from toyllora.protocol import methods as methods_lib
from toyllora.protocol import stats

STATEMENT = ("On a pre-trained transformer, ALLoRA (eta² = 4, no dropout, no scaling) fine-tunes better than "
             "LoRA and its variants under an equal tuning budget, on a shifted next-token task and a GLUE-like "
             "classification task (the paper's head-to-head, carried to the transformer rung).")
SOURCE = "paper"
COUNTERPARTS = ("allora.vs-lora",)


@dataclasses.dataclass(frozen=True)
class Params:
    budget: T.Budget = T.Budget()
    # (optimizer, task) -> the methods run in that cell; ALLoRA is compared with every other one
    cells: tuple = (("adam", "shifted", ("allora", "lora", "lora-s1-d0", "dora", "pissa")),
                    ("adam", "agree", ("allora", "lora")),
                    ("sgd", "shifted", ("allora", "lora")))


SETUP = Setup(full=Params(), fast=Params(budget=T.Budget(fast=True, steps=20, stride=10, batch=8, n_train=32,
                                                         n_val=16, n_test=16, draws=1, tune_seeds=1,
                                                         score_seeds=2, lr_points=2, max_extend=0),
                                         cells=(("adam", "shifted", ("allora", "lora")),)))


def rule(p: Params) -> str:
    cells = "; ".join(f"{o}/{t}: {', '.join(ms)}" for o, t, ms in p.cells)
    return (f"Protocol of the transformer rung ({T.budget_text(p.budget)}). Methods per optimizer/task cell "
            f"({cells}); every method gets the same grid and the same {p.budget.lr_points * p.budget.tune_seeds * p.budget.draws} "
            "tuning runs per cell. The comparisons: ALLoRA − each other method of a cell at the full budget, "
            "paired by draw and scoring seed, exact sign-flip test with draws as groups, Holm over all of them; "
            "a comparison where either pick sits at a grid edge is a tie. Control: LoRA in its reference "
            f"form ({methods_lib.METHODS['lora']}) and with both of the paper's flaws removed (s = 1, no dropout). "
            + ADVANTAGE_RULE.format(m=EFFECT))


def measure(p: Params, seed: int) -> dict:
    b = p.budget
    diffs, scores = [], {}
    for opt, task, ms in p.cells:
        res = {m: T.cell(m, opt, task, seed, b) for m in ms}
        scores[f"{opt}/{task}"] = {m: T.summary(r) for m, r in res.items()}
        diffs += [T.compare(res["allora"], res[m], b, name=f"{opt}/{task}: allora − {m}") for m in ms if m != "allora"]
    diffs = T.holm(diffs)
    t = stats.tally(diffs)
    return {"tally": t, "bounded_below_margin": bounded_below(diffs), "margin": EFFECT, "scores": scores,
            "diffs": [{k: d[k] for k in ("name", "mean", "lo", "hi", "p", "p_adjusted", "win", "edge", "lr_a",
                                         "lr_b", "n")} for d in diffs],
            "table_md": stats.markdown_table(["comparison", "mean [95% CI] (points)", "p (Holm)", "decision"],
                                             T.diff_rows(diffs)),
            "base": T.base_summary(b.fast)}


def verdict(m: dict) -> str:
    t = m["tally"]
    return advantage_verdict(t["n"], t["wins"], t["losses"], m["bounded_below_margin"])


def plot(record: dict):
    """Forest plot of ALLoRA − each method, per cell, with the margin."""
    diffs = record["measurements"]["diffs"]
    fig, ax = figure(figsize=(8, 0.5 * len(diffs) + 1.6))
    y = np.arange(len(diffs))[::-1]
    for yi, d in zip(y, diffs):
        color = {1: "tab:green", -1: "tab:red", 0: "0.4"}[d["win"]]
        ax.errorbar(d["mean"], yi, xerr=[[d["mean"] - d["lo"]], [d["hi"] - d["mean"]]], fmt="o", color=color)
    ax.axvline(0, color="k", lw=0.8)
    ax.axvline(EFFECT, color="k", ls=":", lw=0.8, label=f"margin {EFFECT:g} points")
    ax.set_yticks(y, [d["name"] for d in diffs])
    ax.set_xlabel("ALLoRA − method (test points, 95% interval)")
    ax.set_title("transformer rung: ALLoRA against the LoRA family")
    legend(ax)
    return fig


def _case(n, wins, losses, bounded=0):
    return {"tally": {"n": n, "wins": wins, "losses": losses}, "bounded_below_margin": bounded}


VERDICT_EXAMPLES = [
    (_case(6, 4, 0), "supported"),               # W = 2N/3
    (_case(9, 6, 1), "supported"),               # L = N/9
    (_case(6, 3, 0), "partly supported"),        # W < 2N/3
    (_case(9, 6, 2), "partly supported"),        # L > N/9
    (_case(8, 2, 1), "partly supported"),        # W = N/4
    (_case(6, 1, 1), "not supported"),           # W = L
    (_case(6, 0, 0, bounded=3), "not supported"),  # B = N/2
    (_case(6, 1, 0, bounded=2), "inconclusive"),
    (_case(6, 0, 0, bounded=2), "not supported"),  # W = L = 0
]
