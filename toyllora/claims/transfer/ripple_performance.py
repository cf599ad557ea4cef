"""transfer.ripple-performance: on the transformer, does ALLoRA reach a lower loss than LoRA at every s?"""

from __future__ import annotations

import dataclasses

import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.claims.transfer import _common as T
from toyllora.claims.transfer import ripple
from toyllora.plotting import figure, legend
from toyllora.protocol import stats

STATEMENT = ("On a pre-trained transformer, ALLoRA fixes (mitigates) the ripple effect of the scaling factor: with "
             "every method's learning rate tuned, ALLoRA reaches a loss at least as low as LoRA at every s, and "
             "beats it with every block adapted (ripple.performance, carried to the transformer rung).")
SOURCE = "paper"
COUNTERPARTS = ("ripple.performance",)


@dataclasses.dataclass(frozen=True)
class Params:
    budget: T.Budget = T.Budget()
    scales: tuple = ripple.Params().scales           # the runs of transfer.ripple (depth L), shared
    optimizers: tuple = ripple.Params().optimizers


SETUP = Setup(full=Params(), fast=Params(budget=ripple.SETUP.fast.budget, scales=ripple.SETUP.fast.scales,
                                         optimizers=ripple.SETUP.fast.optimizers))


def rule(p: Params) -> str:
    n = len(p.scales) * len(p.optimizers)
    return (f"Protocol of the transformer rung ({T.budget_text(p.budget)}), task 'shifted', every block adapted "
            f"(depth L, the depth at which a ripple would compound). Methods: LoRA at s in {fmt(p.scales)} (no "
            "dropout) and ALLoRA (eta² = 4, s = 1, no dropout), the same grid, extension rule and tuning runs for "
            f"each, under {', '.join(p.optimizers)}. Each (optimizer, LoRA s) cell: ALLoRA − LoRA in test points at "
            "the full budget, paired by draw and scoring seed, exact sign-flip test with draws as groups, Holm "
            f"over all {n} cells; a cell where either pick sits at a grid edge counts for neither side. Control: "
            "LoRA at s = 1 (no scaling factor, so no ripple of s to fix) among the arms. Two parts: (ii) better "
            "at depth — wins in at least half of the comparable cells; (i) at least as good everywhere: no "
            "losses. supported: (ii) and (i); partly supported: (ii) with losses; not supported: not (ii); "
            "inconclusive: fewer than half of the cells comparable (the rest at a grid edge).")


def measure(p: Params, seed: int) -> dict:
    b = p.budget
    diffs, scores = [], {}
    for opt in p.optimizers:
        allora = T.cell("allora", opt, "shifted", seed, b)
        scores[opt] = {"allora": T.summary(allora)}
        for s in p.scales:
            lora = ripple.lora_cell(s, "L", opt, seed, b)
            scores[opt][f"lora s={s:g}"] = T.summary(lora)
            d = T.compare(allora, lora, b, name=f"{opt}: allora − lora (s = {s:g}, depth L)")
            d.update(optimizer=opt, scale=s)
            diffs.append(d)
    diffs = T.holm(diffs)
    comparable = [d for d in diffs if not d["edge"]]
    return {"n": len(diffs), "comparable": len(comparable), "wins": sum(d["win"] == 1 for d in diffs),
            "losses": sum(d["win"] == -1 for d in diffs), "scores": scores,
            "diffs": [{k: d[k] for k in ("name", "optimizer", "scale", "mean", "lo", "hi", "p", "p_adjusted", "win",
                                         "edge", "lr_a", "lr_b", "n")} for d in diffs],
            "table_md": stats.markdown_table(["comparison", "mean [95% CI] (points)", "p (Holm)", "decision"],
                                             T.diff_rows(diffs)),
            "base": T.base_summary(b.fast)}


def verdict(m: dict) -> str:
    if 2 * m["comparable"] < m["n"]:
        return "inconclusive"
    if 2 * m["wins"] < m["comparable"]:
        return "not supported"
    return "supported" if m["losses"] == 0 else "partly supported"


def plot(record: dict):
    """Left: test points at the full budget, ALLoRA and LoRA at every s, per optimizer. Right: the tested
    differences ALLoRA − LoRA (test points) with their 95 % intervals and Holm-adjusted p."""
    data = record["measurements"]
    fig, (ax, ax2) = figure(ncols=2, figsize=(12, 4.2))
    opts = list(data["scores"])
    names = list(data["scores"][opts[0]])
    x = np.arange(len(opts))
    w = 0.8 / len(names)
    for j, name in enumerate(names):
        ax.bar(x + (j - len(names) / 2 + 0.5) * w, [data["scores"][o][name]["points"] for o in opts], w, label=name)
    ax.set_xticks(x, opts)
    ax.set_ylabel("test points at the full budget")
    ax.set_title("ALLoRA against LoRA at every s (all blocks adapted)")
    legend(ax)
    for i, d in enumerate(data["diffs"]):
        ax2.errorbar([d["mean"]], [i], xerr=[[d["mean"] - d["lo"]], [d["hi"] - d["mean"]]], fmt="o", capsize=4,
                     color=f"C{i}", label=f"p_holm {d['p_adjusted']:.3g}" + (" (grid edge: a tie)" if d["edge"] else ""))
    ax2.axvline(0, color="k", lw=0.8)
    ax2.set_yticks(range(len(data["diffs"])), [f"{d['optimizer']}, LoRA s = {d['scale']:g}" for d in data["diffs"]])
    ax2.set_xlabel("ALLoRA − LoRA, test points, 95 % CI (> 0: ALLoRA better)")
    ax2.set_title("the tested differences")
    legend(ax2, "below")
    return fig


def _case(n, comparable, wins, losses):
    return {"n": n, "comparable": comparable, "wins": wins, "losses": losses}


VERDICT_EXAMPLES = [
    (_case(4, 4, 2, 0), "supported"),
    (_case(4, 4, 2, 1), "partly supported"),
    (_case(4, 4, 1, 0), "not supported"),
    (_case(4, 1, 1, 0), "inconclusive"),
]
