"""allora.dropout-neutral: putting dropout 0.05 back into ALLoRA (ALLoRA+D) changes little."""

from __future__ import annotations

import dataclasses

from toyllora import protocol
from toyllora.claims import Setup, fmt
from toyllora.claims.allora._common import EFFECT, PAPER, diff_table, plot_forest, run_protocol, tally_example
from toyllora.protocol import stats

STATEMENT = ("Putting dropout 0.05 back into ALLoRA (ALLoRA+D) changes little: the paper reports ALLoRA "
             "ahead of ALLoRA+D by only +0.06 on average.")
SOURCE = "paper"


@dataclasses.dataclass(frozen=True)
class Params:
    budget: protocol.Budget = protocol.FULL_BUDGET
    tasks: tuple[str, ...] = protocol.TASKS


SETUP = Setup(full=Params(), fast=Params(budget=protocol.FAST_BUDGET, tasks=protocol.FAST_TASKS))


def rule(p: Params) -> str:
    return (f"Same protocol on the tasks {fmt(p.tasks)}, eta² = {protocol.ETA2['allora']:g} for both. Paired "
            f"differences ALLoRA − ALLoRA+D in every cell. supported if |mean difference over cells| <= {EFFECT:g} "
            "points (the paper's headline effect) and at most 25% of cells show a significant difference (95% "
            f"bootstrap CI excludes 0); not supported if |mean| > {EFFECT:g} and more than 50% of cells are "
            "significant; otherwise partly supported.")


def measure(p: Params, seed: int) -> dict:
    results = run_protocol(("allora", "allora+D"), seed, p.budget, p.tasks)
    table, diffs = diff_table(results, [("allora", "allora+D")], seed)
    return {"tally": stats.tally(diffs), "paper_mean": PAPER["dropout_neutral"], "diffs": diffs, "table_md": table}


def verdict(m: dict) -> str:
    t = m["tally"]
    sig = (t["wins"] + t["losses"]) / t["n"]
    if abs(t["mean_difference"]) <= EFFECT and sig <= 0.25:
        return "supported"
    if abs(t["mean_difference"]) > EFFECT and sig > 0.5:
        return "not supported"
    return "partly supported"


def plot(record: dict):
    """Forest plot of ALLoRA − ALLoRA+D per cell (CI bars; wins green, losses red)."""
    return plot_forest(record["measurements"]["diffs"], "ALLoRA − ALLoRA+D (dropout 0.05)")


def _case(mean, wins, losses, n=8):
    return {"tally": tally_example(n, wins, losses, mean)}


VERDICT_EXAMPLES = [
    (_case(0.05, 1, 0), "supported"),
    (_case(-0.33, 2, 0), "supported"),          # |mean| = 0.33 and 25% significant: both limits included
    (_case(0.34, 1, 0), "partly supported"),    # |mean| just above 0.33, few significant
    (_case(0.1, 2, 1), "partly supported"),     # 37.5% significant (> 25%), small mean
    (_case(0.1, 6, 0), "partly supported"),     # many significant but a small mean
    (_case(1.0, 4, 0), "partly supported"),     # large mean, exactly 50% significant (not > 50%)
    (_case(1.0, 5, 0), "not supported"),        # large mean, 62.5% significant
    (_case(-0.34, 3, 2), "not supported"),
]
