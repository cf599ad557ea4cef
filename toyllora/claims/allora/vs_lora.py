"""allora.vs-lora: ALLoRA (eta² = 1, 2, 4) against LoRA with dropout 0.05, cell by cell, on equal footing."""

from __future__ import annotations

import dataclasses

from toyllora import protocol
from toyllora.claims import Setup, fmt
from toyllora.claims.allora._common import (ALLORA_ETAS, PAPER, diff_table, eta2_text, plot_forest, run_protocol,
                                            tally_example, tallies_by)
from toyllora.protocol import stats

STATEMENT = ("ALLoRA beats LoRA (dropout 0.05): the paper reports a mean gain of +0.33 points with ALLoRA "
             "ahead in 18 of 27 (task × eta²) comparisons.")
SOURCE = "paper"


@dataclasses.dataclass(frozen=True)
class Params:
    budget: protocol.Budget = protocol.FULL_BUDGET
    tasks: tuple[str, ...] = protocol.TASKS
    etas: tuple[str, ...] = ALLORA_ETAS     # the ALLoRA methods compared with LoRA (eta² = 1, 2, 4)


SETUP = Setup(full=Params(), fast=Params(budget=protocol.FAST_BUDGET, tasks=protocol.FAST_TASKS))


def rule(p: Params) -> str:
    return (f"Protocol of toyllora.protocol on the tasks {fmt(p.tasks)} (lr tuned on validation for each method "
            f"over {p.budget.tune_seeds} seeds, {p.budget.final_seeds} fresh seeds on test). Comparisons: every "
            f"cell (task × budget × optimizer) × eta² ∈ {eta2_text(p.etas)}; a win (loss) is a bootstrap 95% CI "
            "of the paired difference ALLoRA − LoRA entirely above (below) 0. With N comparisons, W wins, "
            "L losses: supported if W >= 2N/3 (the paper's 18/27) and L <= N/9; not supported if W <= L; "
            "partly supported if W > L and W >= N/4; otherwise inconclusive.")


def measure(p: Params, seed: int) -> dict:
    results = run_protocol(("lora",) + p.etas, seed, p.budget, p.tasks)
    table, diffs = diff_table(results, [(m, "lora") for m in p.etas], seed)
    return {"tally": stats.tally(diffs), "per_eta2": tallies_by(diffs, "a", p.etas),
            "paper": {k: PAPER[k] for k in ("vs_lora_mean", "vs_lora_ahead", "vs_lora_n")},
            "diffs": diffs, "table_md": table,
            "selected_lr": {t: {m: {o: {b: results[t][m][o][b]["lr"] for b in protocol.BUDGETS}
                                    for o in protocol.OPTIMIZERS} for m in results[t]} for t in results}}


def verdict(m: dict) -> str:
    t = m["tally"]
    n, w, l = t["n"], t["wins"], t["losses"]
    if w >= 2 * n / 3 and l <= n / 9:
        return "supported"
    if w <= l:
        return "not supported"
    return "partly supported" if w >= n / 4 else "inconclusive"


def plot(record: dict):
    """Forest plot of ALLoRA − LoRA per cell and eta² (CI bars; wins green, losses red)."""
    return plot_forest(record["measurements"]["diffs"], "ALLoRA − LoRA (dropout 0.05), per cell and eta²")


def _case(wins, losses, n=18):
    return {"tally": tally_example(n, wins, losses)}


VERDICT_EXAMPLES = [
    (_case(12, 2), "supported"),            # W = 2N/3 exactly, L = N/9 exactly
    (_case(11, 0), "partly supported"),     # W just below 2N/3
    (_case(12, 3), "partly supported"),     # L just above N/9
    (_case(5, 0), "partly supported"),      # W = 5 >= N/4 = 4.5
    (_case(4, 1), "inconclusive"),          # W > L but W < N/4
    (_case(3, 3), "not supported"),         # W = L
    (_case(2, 6), "not supported"),
]
