"""allora.dropout-neutral: putting dropout 0.05 back into ALLoRA (ALLoRA+D) changes little."""

from __future__ import annotations

import dataclasses

from toyllora import protocol
from toyllora.claims import Setup, fmt
from toyllora.claims.allora._common import (CORE_TASKS, EFFECT, PAPER, collect, compare_methods, decide,
                                            diff_table, negligible, plot_forest, tally)

STATEMENT = ("Putting dropout 0.05 back into ALLoRA (ALLoRA+D) changes little: the paper reports ALLoRA "
             "ahead of ALLoRA+D by only +0.06 on average.")
SOURCE = "paper"


@dataclasses.dataclass(frozen=True)
class Params:
    budget: protocol.Budget = protocol.FULL_BUDGET
    tasks: tuple[str, ...] = CORE_TASKS


SETUP = Setup(full=Params(), fast=Params(budget=protocol.FAST_BUDGET, tasks=protocol.FAST_TASKS))


def rule(p: Params) -> str:
    return (f"Same protocol on the tasks {fmt(p.tasks)}, eta² = {protocol.ETA2['allora']:g} for both, each with "
            "its own tuned lr. Paired differences ALLoRA − ALLoRA+D in every cell (task × budget × optimizer), "
            "paired by draw and seed. A 'negligible difference' is an equivalence statement, so it is decided "
            f"by the interval: a cell is negligible if the 95% t-interval lies inside ±{EFFECT:g} points (the "
            "paper's headline effect; two one-sided tests at 2.5% each), material if the sign-flip test is "
            f"significant after Holm over the cells and the interval lies entirely beyond ±{EFFECT:g}, "
            "undetermined otherwise (and so is a cell where either lr is still at a grid edge). Control: the same comparison "
            "under Adam and SGD and at both budgets (dropout noise matters more for short runs). With N cells, "
            "E negligible, M material: supported if M = 0 and E >= N/2; partly supported if 0 < M <= N/4 and "
            "E >= N/2; not supported if M > N/4; otherwise inconclusive.")


def classify(d: dict) -> str:
    if d["edge"]:
        return "undetermined"
    if negligible(d):
        return "negligible"
    if d["win"] != 0 and (d["lo"] > EFFECT or d["hi"] < -EFFECT):
        return "material"
    return "undetermined"


def measure(p: Params, seed: int) -> dict:
    res = collect(("allora", "allora+D"), seed, p.budget, p.tasks)
    diffs = decide(compare_methods(res, [("allora", "allora+D")], p.tasks))
    for d in diffs:
        d["class"] = classify(d)
    counts = {k: sum(d["class"] == k for d in diffs) for k in ("negligible", "material", "undetermined")}
    return {"n": len(diffs), **counts, "tally": tally(diffs), "margin": EFFECT,
            "paper_mean": PAPER["dropout_neutral"],
            "per_optimizer": {o: {k: sum(d["class"] == k for d in diffs if d["optimizer"] == o)
                                  for k in ("negligible", "material", "undetermined")} for o in protocol.OPTIMIZERS},
            "diffs": diffs, "table_md": diff_table(diffs)}


def verdict(m: dict) -> str:
    n, e, mat = m["n"], m["negligible"], m["material"]
    if mat > n / 4:
        return "not supported"
    if e >= n / 2:
        return "supported" if mat == 0 else "partly supported"
    return "inconclusive"


def plot(record: dict):
    """Forest plot of ALLoRA − ALLoRA+D per cell, with the ±margin band."""
    fig = plot_forest(record["measurements"]["diffs"], "ALLoRA − ALLoRA+D (dropout 0.05)")
    ax = fig.axes[0]
    m = record["measurements"]["margin"]
    ax.axvspan(-m, m, color="tab:blue", alpha=0.1, lw=0)
    return fig


def _case(negl, mat, n=12):
    return {"n": n, "negligible": negl, "material": mat, "undetermined": n - negl - mat}


VERDICT_EXAMPLES = [
    (_case(6, 0), "supported"),              # E = N/2 exactly
    (_case(12, 0), "supported"),
    (_case(6, 3), "partly supported"),       # M = N/4 exactly
    (_case(8, 1), "partly supported"),
    (_case(5, 0), "inconclusive"),           # E just below N/2, nothing material
    (_case(3, 2), "inconclusive"),
    (_case(8, 4), "not supported"),          # M just above N/4
    (_case(0, 12), "not supported"),
]
