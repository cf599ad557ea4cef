"""allora.robustness: ALLoRA (lr × eta²) is less sensitive to its hyper-parameters than LoRA (lr × alpha × dropout)."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from toyllora import protocol
from toyllora.claims import Setup, fmt
from toyllora.claims.allora._common import ALLORA_ETAS, eta2_text
from toyllora.config import LoraConfig
from toyllora.plotting import figure
from toyllora.protocol import stats

STATEMENT = ("With two hyper-parameters fewer (no alpha, no dropout), ALLoRA is less sensitive to its "
             "hyper-parameters than LoRA.")
SOURCE = "paper"


@dataclasses.dataclass(frozen=True)
class Params:
    budget: protocol.Budget = protocol.FULL_BUDGET
    tasks: tuple[str, ...] = ("ols-high", "deep-high")
    etas: tuple[str, ...] = ALLORA_ETAS     # ALLoRA's non-lr grid: eta² = 1, 2, 4
    # LoRA's non-lr grid: (alpha / r, keep) pairs
    lora_grid: tuple[tuple[float, float], ...] = tuple((a, k) for a in (1.0, 4.0, 16.0) for k in (1.0, 0.95, 0.9))


SETUP = Setup(full=Params(), fast=Params(budget=protocol.FAST_BUDGET, tasks=("ols-high",),
                                         lora_grid=((4.0, 0.95), (4.0, 1.0), (16.0, 0.95), (16.0, 1.0))))


def _alpha_keep_text(grid) -> str:
    alphas = list(dict.fromkeys(a for a, _ in grid))
    keeps = list(dict.fromkeys(k for _, k in grid))
    return "{" + ", ".join("r" if a == 1 else f"{a:g}r" for a in alphas) + "} × keep ∈ " + fmt(keeps)


def rule(p: Params) -> str:
    return (f"Validation scores of the protocol's tuning sweeps on the tasks {fmt(p.tasks)}. ALLoRA's grid: lr × "
            f"eta² ∈ {eta2_text(p.etas)}; LoRA's: lr × alpha ∈ {_alpha_keep_text(p.lora_grid)}. Per cell: hp "
            "spread = max − min over the non-lr settings of the lr-tuned validation score; grid regret = best − "
            "median over the whole grid. ALLoRA is less sensitive in a cell if its hp spread is smaller and its "
            "grid regret is not larger. supported if so in >= 75% of cells; not supported if in <= 25%; otherwise "
            "partly supported.")


@functools.lru_cache(maxsize=None)
def lora_variant(task_name: str, alpha_mult: float, keep: float, seed: int, budget: protocol.Budget) -> dict:
    """The protocol for LoRA with ``alpha = alpha_mult · r`` and dropout keep ``keep``, both optimizers."""
    task = protocol.make_task(task_name, seed)
    cfg = LoraConfig(rank=task.rank, alpha=alpha_mult * task.rank, keep=keep)
    tr = protocol.make_trainer(task, "lora", budget, cfg=cfg)
    return {o: protocol.tune_and_test(task, "lora", o, seed, budget, trainer=tr) for o in protocol.OPTIMIZERS}


def measure(p: Params, seed: int) -> dict:
    results = protocol.run(p.etas, seed=seed, budget=p.budget, tasks=p.tasks)
    rows, per_cell = [], []
    for t in p.tasks:
        lora_runs = {f"alpha={a:g}r,keep={k:g}": lora_variant(t, a, k, seed, p.budget) for a, k in p.lora_grid}
        for b in protocol.BUDGETS:
            for o in protocol.OPTIMIZERS:
                out = {}
                for name, runs in (("allora", {m: results[t][m] for m in p.etas}), ("lora", lora_runs)):
                    vals = np.array([r[o][b]["val_scores"] for r in runs.values()])  # (combos, lrs)
                    best_per_combo = vals.max(axis=1)
                    out[name] = {"combos": len(vals), "grid_points": int(vals.size),
                                 "hp_spread": float(best_per_combo.max() - best_per_combo.min()),
                                 "grid_regret": float(vals.max() - np.median(vals))}
                less = out["allora"]["hp_spread"] < out["lora"]["hp_spread"] and \
                    out["allora"]["grid_regret"] <= out["lora"]["grid_regret"]
                per_cell.append({"cell": f"{t}/{b}/{o}", **out, "allora_less_sensitive": less})
                rows.append([f"{t}/{b}/{o}", f"{out['allora']['hp_spread']:.2f}", f"{out['lora']['hp_spread']:.2f}",
                             f"{out['allora']['grid_regret']:.2f}", f"{out['lora']['grid_regret']:.2f}",
                             "yes" if less else "no"])
    table = stats.markdown_table(["cell", "ALLoRA spread over eta²", "LoRA spread over (alpha, dropout)",
                                  "ALLoRA best − median of grid", "LoRA best − median of grid",
                                  "ALLoRA less sensitive"], rows)
    frac = float(np.mean([c["allora_less_sensitive"] for c in per_cell]))
    return {"per_cell": per_cell, "fraction_allora_less_sensitive": frac, "table_md": table}


def verdict(m: dict) -> str:
    f = m["fraction_allora_less_sensitive"]
    return "supported" if f >= 0.75 else ("not supported" if f <= 0.25 else "partly supported")


def plot(record: dict):
    """Per cell: the spread over the non-lr settings and the regret over the whole grid, ALLoRA vs LoRA."""
    data = record["measurements"]
    cells = [c["cell"] for c in data["per_cell"]]
    fig, (a1, a2) = figure(1, 2, figsize=(10, 4.2))
    x = np.arange(len(cells))
    for ax, key, lab in ((a1, "hp_spread", "spread of lr-tuned validation score (points)"),
                         (a2, "grid_regret", "best − median over the whole grid (points)")):
        ax.bar(x - 0.2, [c["allora"][key] for c in data["per_cell"]], 0.4, label="ALLoRA (lr × eta²)")
        ax.bar(x + 0.2, [c["lora"][key] for c in data["per_cell"]], 0.4, label="LoRA (lr × alpha × dropout)")
        ax.set_xticks(x, cells, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel(lab)
    a1.set_title("sensitivity to the non-lr hyper-parameters")
    a2.set_title("sensitivity to the whole grid")
    fig.legend(*a1.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=8, frameon=False)
    return fig


VERDICT_EXAMPLES = [
    ({"fraction_allora_less_sensitive": 1.0}, "supported"),
    ({"fraction_allora_less_sensitive": 0.75}, "supported"),         # the limit is included
    ({"fraction_allora_less_sensitive": 0.74}, "partly supported"),
    ({"fraction_allora_less_sensitive": 0.26}, "partly supported"),
    ({"fraction_allora_less_sensitive": 0.25}, "not supported"),     # the limit is included
    ({"fraction_allora_less_sensitive": 0.0}, "not supported"),
]
