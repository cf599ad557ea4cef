"""allora.vs-plain-lora: ALLoRA-0 (no dropout, no scaling) against LoRA with s = 1 and no dropout — "why not
simply remove both?"."""

from __future__ import annotations

import dataclasses

from toyllora import protocol
from toyllora.claims import Setup, fmt
from toyllora.claims.allora._common import (ADVANTAGE_RULE, EFFECT, advantage_verdict, bounded_below,
                                            budget_rows, budget_table, collect, compare_methods, decide,
                                            diff_table, plot_forest, selected_lrs, tally, tally_example)

STATEMENT = ("ALLoRA is better than simply removing LoRA's dropout and scaling factor: ALLoRA-0 (eta² = 4, "
             "no dropout, s = 1) beats LoRA with s = 1 and no dropout (the reviewers' question 4).")
SOURCE = "review"
PAIR = ("allora", "lora-s1-d0")


@dataclasses.dataclass(frozen=True)
class Params:
    budget: protocol.Budget = protocol.FULL_BUDGET
    tasks: tuple[str, ...] = protocol.TASKS


SETUP = Setup(full=Params(), fast=Params(budget=protocol.FAST_BUDGET, tasks=protocol.FAST_TASKS))


def rule(p: Params) -> str:
    b = p.budget
    return (f"Same protocol on all the tasks {fmt(p.tasks)} (two methods: every task affordable). ALLoRA at "
            f"eta² = {protocol.ETA2['allora']:g} against LoRA with s = 1 and no dropout — the same forward "
            "function and init, so the only difference is ALLoRA's per-row factor on the gradient. Control: "
            "LoRA with both flaws removed (that is the comparison), under an equal tuning budget "
            f"({b.lr_points * b.tune_seeds * b.draws} base tuning runs per cell each, grid extended at an edge). "
            "Each cell (task × budget × optimizer): exact sign-flip test of ALLoRA − LoRA paired by draw and "
            "seed, Holm over all cells; reported per optimizer. " + ADVANTAGE_RULE.format(m=EFFECT))


def measure(p: Params, seed: int) -> dict:
    res = collect(PAIR, seed, p.budget, p.tasks)
    diffs = decide(compare_methods(res, [PAIR], p.tasks))
    return {"tally": tally(diffs), "bounded_below_margin": bounded_below(diffs),
            "per_optimizer": {o: tally([d for d in diffs if d["optimizer"] == o]) for o in protocol.OPTIMIZERS},
            "per_budget": {b: tally([d for d in diffs if d["budget"] == b]) for b in protocol.BUDGETS},
            "margin": EFFECT, "budget_md": budget_table(budget_rows(res, PAIR, p.tasks, p.budget)),
            "diffs": diffs, "table_md": diff_table(diffs), "selected_lr": selected_lrs(res)}


def verdict(m: dict) -> str:
    t = m["tally"]
    return advantage_verdict(t["n"], t["wins"], t["losses"], m["bounded_below_margin"])


def plot(record: dict):
    """Forest plot of ALLoRA − LoRA (s = 1, no dropout) per cell."""
    return plot_forest(record["measurements"]["diffs"], "ALLoRA-0 − LoRA (s = 1, no dropout), per cell")


def _case(wins, losses, bounded=0, n=24):
    return {"tally": tally_example(n, wins, losses), "bounded_below_margin": bounded}


VERDICT_EXAMPLES = [
    (_case(16, 2), "supported"),              # W = 2N/3, L = N/9 exactly
    (_case(15, 0), "partly supported"),       # W just below 2N/3
    (_case(16, 3), "partly supported"),       # L just above N/9
    (_case(6, 1, bounded=12), "partly supported"),   # W = N/4 exactly
    (_case(5, 1, bounded=12), "not supported"),      # W just below N/4, half the intervals below the margin
    (_case(0, 0, bounded=12), "not supported"),
    (_case(6, 6), "not supported"),                  # W = L
    (_case(0, 3), "not supported"),
    (_case(5, 1, bounded=11), "inconclusive"),       # W < N/4 and the intervals are wide
    (_case(1, 0), "inconclusive"),
]
