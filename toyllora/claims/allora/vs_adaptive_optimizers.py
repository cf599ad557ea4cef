"""allora.vs-adaptive-optimizers: ALLoRA's per-row factor against adaptive optimizers, alone and composed —
"what is the difference to an adaptive optimizer?"."""

from __future__ import annotations

import dataclasses

from toyllora import protocol
from toyllora.claims import Setup, fmt
from toyllora.claims.allora._common import (ADVANTAGE_RULE, CORE_TASKS, EFFECT, advantage_verdict, bounded_below,
                                            decide, diff_table, plot_forest, tally, tally_example)
from toyllora.claims.allora._optimizers import arm_results, compare_arms, label
from toyllora.protocol import tuning

STATEMENT = ("ALLoRA is more than an adaptive optimizer (the reviewers' question): composed with Adam, Adafactor "
             "or per-row-normalized SGD, ALLoRA still beats LoRA under the same optimizer; reported beside it, "
             "ALLoRA under plain SGD against LoRA under each adaptive optimizer.")
SOURCE = "review"
ADAPTIVE = ("adam",) + tuning.ADAPTIVE_OPTIMIZERS     # Adam, Adafactor, row-normalized SGD
FAMILIES = ("composed", "substitute")


@dataclasses.dataclass(frozen=True)
class Params:
    budget: protocol.Budget = protocol.FULL_BUDGET
    tasks: tuple[str, ...] = CORE_TASKS
    optimizers: tuple[str, ...] = ADAPTIVE


SETUP = Setup(full=Params(), fast=Params(budget=protocol.FAST_BUDGET, tasks=protocol.FAST_TASKS))


def rule(p: Params) -> str:
    b = p.budget
    names = ", ".join(tuning.OPTIMIZER_NAMES[o] for o in p.optimizers)
    return (f"Protocol of toyllora.protocol on the tasks {fmt(p.tasks)}, each drawn {b.draws} times; ALLoRA "
            f"(eta² = {protocol.ETA2['allora']:g}) and LoRA (dropout 0.05, s = 4) under SGD and under each of "
            f"{names} (optax.adafactor with a fixed lr, factored second moments, no momentum; row-normalized "
            "SGD divides every gradient row by its norm). Every (method, optimizer) arm gets the same budget: "
            f"the protocol's log2 lr grid of {b.lr_points} points ({b.lr_points * b.tune_seeds * b.draws} tuning "
            f"runs per cell), extended by up to {b.max_extension} steps while the pick sits at an edge, tuned on "
            f"validation, then {b.final_seeds} fresh seeds per draw scored on test (the same seeds for every "
            "arm, so scores pair by draw and seed). Two families per cell (task × budget) and optimizer O: "
            "'composed' ALLoRA·O − LoRA·O (does the factor add anything an adaptive optimizer does not?) and "
            "'substitute' ALLoRA·SGD − LoRA·O (is the factor alone as good as the optimizer?); exact sign-flip "
            "tests with the draws as groups, Holm over all the comparisons of both families, a selected lr still "
            "at an edge a tie. Control: LoRA under the same adaptive optimizer — if ALLoRA is only an adaptive "
            "learning rate, composing it with one adds nothing and the composed family ties. The verdict is the "
            "composed family's (N its comparisons): " + ADVANTAGE_RULE.format(m=EFFECT) +
            " The substitute family is reported with the same rule, not deciding.")


def collect(p: Params, seed: int) -> dict:
    """``res[task][(method, optimizer)]`` = the tune_and_test result of each arm."""
    arms = [("allora", "sgd")] + [(m, o) for o in p.optimizers for m in ("allora", "lora")]
    return {t: {(m, o): arm_results(t, m, o, seed, p.budget) for m, o in arms} for t in p.tasks}


def comparisons(res: dict, p: Params) -> list[dict]:
    """Both families' comparisons, unadjusted, in table order."""
    out = []
    for family in FAMILIES:
        for o in p.optimizers:
            a = ("allora", o if family == "composed" else "sgd")
            for t in p.tasks:
                for b in protocol.BUDGETS:
                    out.append(compare_arms(res[t][a][b], res[t]["lora", o][b], t, b, label(*a), label("lora", o),
                                            family=family, optimizer=o, optimizer_a=a[1]))
    return out


def measure(p: Params, seed: int) -> dict:
    res = collect(p, seed)
    diffs = decide(comparisons(res, p))
    out = {"diffs": diffs, "table_md": diff_table(diffs), "margin": EFFECT}
    for family in FAMILIES:
        fam = [d for d in diffs if d["family"] == family]
        t = tally(fam)
        out[family] = {"tally": t, "bounded_below_margin": bounded_below(fam),
                       "per_optimizer": {o: tally([d for d in fam if d["optimizer"] == o]) for o in p.optimizers},
                       "verdict": advantage_verdict(t["n"], t["wins"], t["losses"], bounded_below(fam))}
    out["selected_lr"] = {t: {label(m, o): {b: r[b]["lr"] for b in protocol.BUDGETS} for (m, o), r in res[t].items()}
                          for t in res}
    return out


def verdict(m: dict) -> str:
    c = m["composed"]
    t = c["tally"]
    return advantage_verdict(t["n"], t["wins"], t["losses"], c["bounded_below_margin"])


def plot(record: dict):
    """Forest plot of every comparison: composed (ALLoRA·O − LoRA·O) and substitute (ALLoRA·SGD − LoRA·O)."""
    return plot_forest(record["measurements"]["diffs"],
                       "ALLoRA against LoRA under adaptive optimizers (composed, then ALLoRA·SGD as substitute)")


def _case(wins, losses, bounded=0, n=18):
    return {"composed": {"tally": tally_example(n, wins, losses), "bounded_below_margin": bounded}}


VERDICT_EXAMPLES = [
    (_case(12, 2), "supported"),                     # W = 2N/3, L = N/9 exactly
    (_case(11, 0), "partly supported"),              # W just below 2N/3
    (_case(12, 3), "partly supported"),              # L just above N/9
    (_case(5, 1, bounded=9), "partly supported"),    # W >= N/4 = 4.5
    (_case(4, 1, bounded=9), "not supported"),       # W just below N/4, half the intervals below the margin
    (_case(0, 0, bounded=9), "not supported"),       # ALLoRA adds nothing on top of the optimizer
    (_case(3, 3), "not supported"),                  # W = L
    (_case(4, 1, bounded=8), "inconclusive"),        # W < N/4 and the intervals are wide
    (_case(1, 0), "inconclusive"),
]
