"""allora.vs-baselines: ALLoRA (eta² = 4) against every LoRA-family baseline the reviewers listed."""

from __future__ import annotations

import dataclasses

from toyllora import protocol
from toyllora.claims import Setup, fmt
from toyllora.claims.allora._common import (CORE_TASKS, ahead_of, budget_rows, budget_table, collect,
                                            compare_methods, decide, diff_table, plot_tallies, selected_lrs,
                                            tally_example, tallies_by)

STATEMENT = ("ALLoRA outperforms the other LoRA-family baselines (the paper: +0.33 over DoRA; the reviewers' "
             "list: full fine-tuning, LoRA with and without dropout, rsLoRA, LoRA+, DoRA, PiSSA, MiLoRA, "
             "LoRA-GA, Init[B], scaled GD/AdamW, AdaLoRA, MoRA).")
SOURCE = "review"
BASELINES = ("full", "lora", "lora-d0", "rslora", "lora+16", "lora+tuned", "dora", "pissa", "milora", "lora-ga",
             "init_b", "scaled", "adalora", "mora")


@dataclasses.dataclass(frozen=True)
class Params:
    budget: protocol.Budget = protocol.FULL_BUDGET
    tasks: tuple[str, ...] = CORE_TASKS
    baselines: tuple[str, ...] = BASELINES   # protocol methods ALLoRA is compared with
    allora: str = "allora"                   # one setting, eta² = 4, no best-of-three


SETUP = Setup(full=Params(), fast=Params(budget=protocol.FAST_BUDGET, tasks=protocol.FAST_TASKS,
                                         baselines=("lora", "lora-d0", "adalora")))


def rule(p: Params) -> str:
    b = p.budget
    return (f"Same protocol on the tasks {fmt(p.tasks)}; ALLoRA at eta² = {protocol.ETA2[p.allora]:g} (one "
            f"setting, no best-of-three). Baselines: {fmt(p.baselines)} (a baseline that cannot be built on a "
            "task's layers is left out of that task's cells and listed). Equal tuning budgets: every method "
            f"gets {b.lr_points * b.tune_seeds * b.draws} base tuning runs per cell ({b.lr_points} learning "
            f"rates × {b.tune_seeds} seeds × {b.draws} draws; lora+tuned spreads them over lr × ratio), plus "
            f"one log2 step per extension while its pick sits at an edge (at most {b.max_extension} per side); "
            "the budget table reports each method's runs and whether its selected lr was interior. Each "
            "comparison ALLoRA − baseline in a cell: exact sign-flip test paired by draw and seed, Holm over "
            "all comparisons of the claim, a cell with either lr still at an edge a tie. Control: the "
            "baselines themselves (LoRA without dropout and with each published fix) under the same budget. "
            "Against each baseline ALLoRA is 'ahead' if its significant wins outnumber its significant losses. "
            "supported if ahead of every baseline; partly supported if ahead of at least half; otherwise not "
            "supported.")


def measure(p: Params, seed: int) -> dict:
    methods = p.baselines + (p.allora,)
    res = collect(methods, seed, p.budget, p.tasks)
    diffs = decide(compare_methods(res, [(p.allora, b) for b in p.baselines], p.tasks))
    rows = budget_rows(res, methods, p.tasks, p.budget)
    return {"per_baseline": tallies_by(diffs, "b", p.baselines),
            "per_optimizer": {o: tallies_by([d for d in diffs if d["optimizer"] == o], "b", p.baselines)
                              for o in protocol.OPTIMIZERS},
            "not_applicable": {r["method"]: r.get("not_applicable", list(p.tasks)) for r in rows
                               if r.get("not_applicable", list(p.tasks))},
            "budget_md": budget_table(rows), "tuning_budget": rows, "diffs": diffs, "table_md": diff_table(diffs),
            "selected_lr": selected_lrs(res)}


def verdict(m: dict) -> str:
    ahead = [ahead_of(t) for t in m["per_baseline"].values() if t["n"] > 0]
    if all(ahead):
        return "supported"
    return "partly supported" if sum(ahead) >= len(ahead) / 2 else "not supported"


def plot(record: dict):
    """Significant wins / ties / losses of ALLoRA against each baseline, and the mean paired difference."""
    return plot_tallies(record["measurements"]["per_baseline"], "ALLoRA (eta² = 4) against each baseline",
                        names=record["config"]["setup"]["baselines"])


def _case(*ahead):
    """One baseline per flag: ALLoRA ahead (3 wins, 1 loss) or not (1 win, 1 loss: a tie of counts)."""
    return {"per_baseline": {f"b{i}": tally_example(8, 3 if a else 1, 1, 0.5 if a else 0.0)
                             for i, a in enumerate(ahead)}}


VERDICT_EXAMPLES = [
    (_case(True, True, True, True), "supported"),
    (_case(True, True, False, False), "partly supported"),   # exactly half
    (_case(True, True, True, False), "partly supported"),
    (_case(True, False, False, False), "not supported"),     # just below half
    (_case(False, False, False, False), "not supported"),
]
