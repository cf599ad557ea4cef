"""allora.family-ranking: ALLoRA against its own family (ALLoRA-OD, ASF-LoRA, LoRA×eta)."""

from __future__ import annotations

import dataclasses

from toyllora import protocol
from toyllora.claims import Setup, fmt
from toyllora.claims.allora._common import (CORE_TASKS, PAPER, ahead_of, collect, compare_methods, decide,
                                            diff_table, plot_tallies, tally_example, tallies_by)

STATEMENT = ("ALLoRA is the best of its family: ahead of ALLoRA-OD (+0.36), ASF-LoRA (+1.10) and LoRA×eta "
             "(+0.93) in the paper's ablation.")
SOURCE = "paper"
FAMILY = ("allora-OD", "asf", "lora-x-eta")


@dataclasses.dataclass(frozen=True)
class Params:
    budget: protocol.Budget = protocol.FULL_BUDGET
    tasks: tuple[str, ...] = CORE_TASKS


SETUP = Setup(full=Params(), fast=Params(budget=protocol.FAST_BUDGET, tasks=protocol.FAST_TASKS))


def rule(p: Params) -> str:
    return (f"Same protocol on the tasks {fmt(p.tasks)}, eta² = {protocol.ETA2['allora']:g} for all, each with its "
            "own tuned lr (equal tuning budgets). Each comparison ALLoRA − variant in a cell (task × budget × "
            "optimizer): exact sign-flip test paired by draw and seed (draws as groups), Holm over all 3 × cells "
            "comparisons; a cell with either lr still at a grid edge is a tie. Control: LoRA×eta, the fixed "
            "scale s = eta without the adaptive factor (does the factor matter, or only the step size it gives "
            "at B = 0?). ALLoRA is 'ahead' of a variant if its significant wins outnumber its significant "
            f"losses. supported if ahead of all three variants ({', '.join(FAMILY)}); partly supported if ahead "
            "of one or two; not supported if of none. The order of the mean gaps is compared with the paper's "
            "(ASF > LoRA×eta > OD) but not used in the verdict.")


def measure(p: Params, seed: int) -> dict:
    res = collect(("allora",) + FAMILY, seed, p.budget, p.tasks)
    diffs = decide(compare_methods(res, [("allora", m) for m in FAMILY], p.tasks))
    per = tallies_by(diffs, "b", FAMILY)
    order = sorted(FAMILY, key=lambda m: -per[m]["mean_difference"])
    paper_order = sorted(FAMILY, key=lambda m: -PAPER["family"][m])
    return {"per_variant": per,
            "per_optimizer": {o: tallies_by([d for d in diffs if d["optimizer"] == o], "b", FAMILY)
                              for o in protocol.OPTIMIZERS},
            "paper": PAPER["family"], "order_by_gap": order, "paper_order": paper_order,
            "same_order_as_paper": order == paper_order, "diffs": diffs, "table_md": diff_table(diffs)}


def verdict(m: dict) -> str:
    ahead = [ahead_of(t) for t in m["per_variant"].values()]
    if all(ahead):
        return "supported"
    return "partly supported" if any(ahead) else "not supported"


def plot(record: dict):
    """Significant wins / ties / losses of ALLoRA against each family member, and the mean difference."""
    return plot_tallies(record["measurements"]["per_variant"], "ALLoRA (eta² = 4) against its family",
                        names=FAMILY)


def _case(*wins_losses):
    return {"per_variant": {m: tally_example(8, w, l) for m, (w, l) in zip(FAMILY, wins_losses)}}


VERDICT_EXAMPLES = [
    (_case((3, 2), (5, 0), (4, 1)), "supported"),        # ahead of all three (3 > 2 is enough)
    (_case((2, 2), (5, 0), (4, 1)), "partly supported"),  # wins = losses against one: not ahead
    (_case((0, 3), (1, 0), (0, 0)), "partly supported"),  # ahead of one
    (_case((2, 2), (0, 0), (1, 2)), "not supported"),
]
