"""ripple.performance: with tuned learning rates, ALLoRA fine-tunes a deep multilinear net at least as well as LoRA
at every s, and better at depth."""

from __future__ import annotations

import dataclasses

from toyllora.claims import Setup, fmt
from toyllora.claims.ripple._common import (ALLORA, FAST_TOY, Toy, compare_methods, count, diff_rows,
                                            holm_counting_edges, lora_name, plot_scores, points_table, toy_text)
from toyllora.conventions import DEFAULT_ETA

STATEMENT = ("ALLoRA fixes (mitigates) the ripple effect of the scaling factor: on a deep multilinear fine-tuning "
             "task, with every method's learning rate tuned, ALLoRA reaches a loss at least as low as LoRA at every "
             "alpha (and at s = 1), and beats it at depth.")
SOURCE = "paper"


@dataclasses.dataclass(frozen=True)
class Params:
    toy: Toy = Toy()


SETUP = Setup(full=Params(), fast=Params(toy=FAST_TOY))


def rule(p: Params) -> str:
    t = p.toy
    n = len(t.tasks) * len(t.depths) * 2 * 2 * len(t.scales)
    return (f"{toy_text(t)}. Methods: LoRA with s in {fmt(t.scales)} (no dropout) and ALLoRA (eta = "
            f"{fmt(DEFAULT_ETA)}, s = 1), the same tuning runs for each. Each (task, depth, optimizer, budget, LoRA "
            "s) cell: the paired difference of test points ALLoRA − LoRA (paired by draw and seed), exact sign-flip "
            f"test with draws as groups (a win needs every draw to agree), Holm over all {n} cells; a cell where "
            "either pick still sits at a grid edge counts for neither side. Control: LoRA at s = 1 (no scaling "
            "factor, so no ripple of s to fix) among the arms, the same tuning runs for every arm and fresh test "
            "seeds, so that an arm only luckier on its tuning seeds cannot win. "
            f"Two parts: (ii) better at depth — the ripple fixed: wins in at least half of the comparable cells at "
            f"the largest depth (L = {max(t.depths)}); (i) at least as good everywhere: no losses. supported: (ii) "
            "and (i); partly supported: (ii) with losses; not supported: not (ii); inconclusive: fewer than half of "
            "the cells at the largest depth are comparable (the rest at a grid edge).")


def measure(p: Params, seed: int) -> dict:
    t = p.toy
    methods = t.methods()
    diffs = []
    for s in t.scales:
        diffs += compare_methods(ALLORA, lora_name(s), seed, t)
    diffs = holm_counting_edges(diffs)
    Lmax = max(t.depths)
    out = {"depths": list(t.depths), "tasks": list(t.tasks), "scales": list(t.scales), "methods": list(methods),
           "diffs": diffs, **count(diffs), "at_Lmax": count(diffs, depth=Lmax),
           "per_s": {lora_name(s): count(diffs, b=lora_name(s)) for s in t.scales},
           "per_optimizer": {o: count(diffs, optimizer=o) for o in ("sgd", "adam")},
           "per_task": {k: count(diffs, task=k) for k in t.tasks}}
    out["points"], out["edge"] = points_table(methods, seed, t)
    out["table_md"] = diff_rows(diffs)
    return out


def verdict(m: dict) -> str:
    top = m["at_Lmax"]
    comparable = top["n"] - top["at_edge"]
    if 2 * comparable < top["n"]:
        return "inconclusive"
    if 2 * top["wins"] < comparable:
        return "not supported"
    return "supported" if m["losses"] == 0 else "partly supported"


def plot(record: dict):
    """Test loss left (100 − points) against depth, every LoRA s and ALLoRA, per task and budget."""
    d = record["measurements"]
    return plot_scores(d, d["methods"], "ALLoRA vs LoRA at every s: tuned on validation, scored on fresh seeds")


def _case(wins, losses, wins_top, n_top=16, edge_top=0):
    return {"wins": wins, "losses": losses, "at_Lmax": {"n": n_top, "wins": wins_top, "losses": 0,
                                                         "at_edge": edge_top}}


VERDICT_EXAMPLES = [
    (_case(8, 0, 8), "supported"),                   # exactly half of the cells at the largest depth, no loss
    (_case(8, 0, 6, edge_top=4), "supported"),       # half of the 12 comparable cells (4 at an edge)
    (_case(10, 1, 9), "partly supported"),           # better at depth, one loss
    (_case(7, 0, 7), "not supported"),               # no loss, just under half at depth
    (_case(0, 0, 0), "not supported"),               # at least as good, not better
    (_case(11, 9, 1), "not supported"),
    (_case(8, 0, 4, edge_top=9), "inconclusive"),    # 7 of 16 comparable: under half
    (_case(8, 0, 4, edge_top=8), "supported"),       # 8 of 16 comparable counts (4 wins = half)
]
