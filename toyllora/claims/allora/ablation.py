"""allora.ablation: the 2×2×2 factorial {dropout 0.05 on/off} × {scaling α/r vs 1} × {adaptive factor on/off} —
which of ALLoRA's three changes to LoRA does the work."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from toyllora import protocol
from toyllora.claims import Setup, fmt
from toyllora.claims.allora._common import (CORE_TASKS, EFFECT, budget_rows, budget_table, cell_name, cells,
                                            collect, decide, entry, tally, tally_example)
from toyllora.plotting import figure, legend
from toyllora.protocol import stats

STATEMENT = ("ALLoRA's adaptive factor is the ingredient that does the work: switching it on improves the "
             "result, over and above removing LoRA's dropout and its scaling factor (the reviewers' request "
             "to ablate each ingredient on its own).")
SOURCE = "review"
FACTORS = ("dropout", "scaling", "factor")   # on = dropout 0.05 / s = alpha/r = 4 / ALLoRA's per-row factor
# (dropout, scaling, factor) -> protocol method
ARMS = {(1, 1, 0): "lora", (0, 1, 0): "lora-d0", (1, 0, 0): "lora-s1", (0, 0, 0): "lora-s1-d0",
        (0, 0, 1): "allora", (1, 0, 1): "allora+D", (0, 1, 1): "allora-s4", (1, 1, 1): "allora-s4+D"}
EFFECTS = tuple("×".join(c) for k in (1, 2, 3) for c in itertools.combinations(FACTORS, k))


def contrast(effect: str) -> dict:
    """The ±1/4 weights of an effect over the 8 arms (a main effect is mean(on) − mean(off)).

    >>> w = contrast("factor"); w["allora"], w["lora"], sum(w.values())
    (0.25, -0.25, 0.0)
    """
    names = effect.split("×")
    return {m: float(np.prod([1 if lv[FACTORS.index(n)] else -1 for n in names])) / 4 for lv, m in ARMS.items()}


@dataclasses.dataclass(frozen=True)
class Params:
    budget: protocol.Budget = protocol.FULL_BUDGET
    tasks: tuple[str, ...] = CORE_TASKS


SETUP = Setup(full=Params(), fast=Params(budget=protocol.FAST_BUDGET, tasks=protocol.FAST_TASKS))


def rule(p: Params) -> str:
    return (f"Same protocol on the tasks {fmt(p.tasks)}; eight arms, every combination of dropout 0.05 on/off, "
            "scaling s = alpha/r = 4 or 1, and ALLoRA's adaptive factor (eta² = 4) on/off (factor on with "
            "s = 4: s · ALLoRA(BAx), the factor from the row norms of BA), each with its own tuned lr and an "
            "equal tuning budget. In each cell (task × budget × optimizer) and for each of the 7 effects (3 main "
            "effects, 3 two-way and 1 three-way interaction) the linear contrast (1/4) Σ ±score over the 8 arms "
            "per (draw, seed) pair — the arms share the final seeds — is tested against 0 by the exact "
            "sign-flip test with the draws as groups; Holm over all 7 effects × cells; a cell where any arm's lr "
            "is still at a grid edge counts as a tie for all its effects. Control: the dropout and scaling "
            "main effects, measured the same way (the rival explanations). On the adaptive factor's main "
            "effect over N cells, W significant positive, L significant negative, B cells with the 95% "
            f"interval's upper end below {EFFECT:g} points: supported if W >= N/2 and L = 0; partly supported "
            "if W >= N/4 and W > L otherwise; not supported if W <= L, or if B >= N/2 (the factor's gain, "
            "if any, bounded below the margin in at least half the cells); otherwise inconclusive. The "
            "other effects are reported beside it (which ingredient does the work).")


def measure(p: Params, seed: int) -> dict:
    res = collect(tuple(ARMS.values()), seed, p.budget, p.tasks)
    diffs = []
    for cell in cells(p.tasks):
        t = cell[0]
        es = {m: entry(res[t][m], cell) for m in ARMS.values()}
        groups = np.asarray(es["lora"]["groups"])
        edge = any(e["at_edge"] for e in es.values())
        scores = {m: np.asarray(e["scores"]) for m, e in es.items()}
        for eff in EFFECTS:
            w = contrast(eff)
            c = sum(w[m] * scores[m] for m in ARMS.values())
            d = stats.paired_difference(c, np.zeros_like(c), groups=groups)
            d.update(cell=cell_name(cell), task=t, budget=cell[1], optimizer=cell[2], term=eff, edge=edge,
                     edge_arms=[m for m, e in es.items() if e["at_edge"]])
            diffs.append(d)
    diffs = decide(diffs)
    per_effect = {e: tally([d for d in diffs if d["term"] == e]) for e in EFFECTS}
    fac = [d for d in diffs if d["term"] == "factor"]
    arm_means = {cell_name(c): {m: float(np.mean(entry(res[c[0]][m], c)["scores"])) for m in ARMS.values()}
                 for c in cells(p.tasks)}
    rows = [[d["cell"], d["term"], stats.ci_text(d), ", ".join(d["edge_arms"]) or ""] for d in diffs]
    return {"per_effect": per_effect, "factor": {**tally(fac), "bounded_below_margin": sum(d["hi"] < EFFECT
                                                                                           for d in fac)},
            "per_effect_optimizer": {f"{e}/{o}": tally([d for d in diffs if d["term"] == e
                                                        and d["optimizer"] == o])
                                     for e in FACTORS for o in protocol.OPTIMIZERS},
            "mean_effect": {e: float(np.mean([d["mean"] for d in diffs if d["term"] == e])) for e in EFFECTS},
            "arm_means": arm_means, "margin": EFFECT, "diffs": diffs,
            "table_md": stats.markdown_table(["cell", "effect", "effect [95% CI], draws, p_holm, result",
                                              "arms at an edge"], rows),
            "budget_md": budget_table(budget_rows(res, tuple(ARMS.values()), p.tasks, p.budget))}


def verdict(m: dict) -> str:
    f = m["factor"]
    n, w, l = f["n"], f["wins"], f["losses"]
    if w >= n / 2 and l == 0:
        return "supported"
    if w >= n / 4 and w > l:
        return "partly supported"
    if w <= l or f["bounded_below_margin"] >= n / 2:
        return "not supported"
    return "inconclusive"


def plot(record: dict):
    """Each effect's contrast per cell (interval; filled if significant after Holm)."""
    data = record["measurements"]
    diffs = data["diffs"]
    cell_names = list(dict.fromkeys(d["cell"] for d in diffs))
    fig, ax = figure(figsize=(max(8.0, 0.45 * len(cell_names) + 3.0), 4.6))
    x = np.arange(len(cell_names))
    width = 0.8 / len(EFFECTS)
    for k, eff in enumerate(EFFECTS):
        ds = {d["cell"]: d for d in diffs if d["term"] == eff}
        xs = x - 0.4 + (k + 0.5) * width
        color = f"C{k}"
        for xi, c in zip(xs, cell_names):
            d = ds[c]
            ax.plot([xi, xi], [d["lo"], d["hi"]], color=color, lw=1.5)
            ax.plot(xi, d["mean"], "o", ms=3.5, color=color, mfc=color if d["win"] != 0 else "white")
        ax.plot([], [], "o-", color=color, label=eff)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x, cell_names, rotation=60, ha="right", fontsize=6)
    ax.set_ylabel("effect (points): mean(on) − mean(off)")
    ax.set_title("2×2×2 ablation: effects with 95% intervals (filled: significant after Holm)")
    legend(ax)
    return fig


def _case(wins, losses, bounded=0, n=12):
    return {"factor": {**tally_example(n, wins, losses), "bounded_below_margin": bounded}}


VERDICT_EXAMPLES = [
    (_case(6, 0), "supported"),                  # W = N/2 exactly, no loss
    (_case(12, 0), "supported"),
    (_case(5, 0), "partly supported"),           # W just below N/2
    (_case(8, 1), "partly supported"),           # one loss
    (_case(3, 0), "partly supported"),           # W = N/4 exactly
    (_case(2, 0, bounded=6), "not supported"),   # W < N/4, gain bounded below the margin in half the cells
    (_case(0, 0), "not supported"),              # W = L
    (_case(1, 3), "not supported"),
    (_case(2, 0, bounded=5), "inconclusive"),
]
