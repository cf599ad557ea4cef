"""allora.vs-baselines: ALLoRA (eta² = 4) against every LoRA-family baseline the reviewers listed."""

from __future__ import annotations

import dataclasses

from toyllora import protocol
from toyllora.claims import Setup, fmt
from toyllora.claims.allora._common import (ahead_of, diff_table, plot_tallies, run_protocol, summary_table,
                                            tally_example, tallies_by)

STATEMENT = ("ALLoRA outperforms the other LoRA-family baselines (the paper: +0.33 over DoRA; the reviewers' "
             "list: full fine-tuning, LoRA with and without dropout, rsLoRA, LoRA+, DoRA, PiSSA, Init[B], "
             "scaled GD/AdamW).")
SOURCE = "review"
BASELINES = ("full", "lora", "lora-d0", "rslora", "lora+16", "lora+tuned", "dora", "pissa", "init_b", "scaled")


@dataclasses.dataclass(frozen=True)
class Params:
    budget: protocol.Budget = protocol.FULL_BUDGET
    tasks: tuple[str, ...] = protocol.TASKS
    baselines: tuple[str, ...] = BASELINES   # protocol methods ALLoRA is compared with
    allora: str = "allora"                   # one setting, eta² = 4, no best-of-three


SETUP = Setup(full=Params(), fast=Params(budget=protocol.FAST_BUDGET, tasks=protocol.FAST_TASKS,
                                         baselines=("lora", "lora-d0", "lora+16", "scaled")))


def rule(p: Params) -> str:
    return (f"Same protocol on the tasks {fmt(p.tasks)}; ALLoRA at eta² = {protocol.ETA2[p.allora]:g} (one "
            f"setting, no best-of-three). Baselines: {fmt(p.baselines)}. Against each baseline, over all cells: "
            "ALLoRA is 'ahead' if its significant wins (95% bootstrap CI of the paired difference > 0) outnumber "
            "its significant losses. supported if ahead of every baseline; partly supported if ahead of at least "
            "half; otherwise not supported.")


def measure(p: Params, seed: int) -> dict:
    methods = p.baselines + (p.allora,)
    results = run_protocol(methods, seed, p.budget, p.tasks)
    table, diffs = diff_table(results, [(p.allora, b) for b in p.baselines], seed)
    return {"per_baseline": tallies_by(diffs, "b", p.baselines), "diffs": diffs, "table_md": table,
            "summary_md": summary_table(results, methods, seed=seed)}


def verdict(m: dict) -> str:
    ahead = [ahead_of(t) for t in m["per_baseline"].values()]
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
