"""ripple.hurts: does depth make the fine-tuning result more sensitive to the scaling factor s?"""

from __future__ import annotations

import dataclasses

import numpy as np

from toyllora import protocol
from toyllora.claims import Setup, fmt
from toyllora.claims.ripple._common import (FAST_TOY_DEPTHS, Toy, escape_curve, holm_counting_edges,
                                            lora_lr, lora_name, selected_val_score, toy_results, toy_text)
from toyllora.plotting import figure, legend
from toyllora.protocol import stats

STATEMENT = ("The ripple hurts fine-tuning: the deeper the network, the more LoRA's fine-tuning result depends on "
             "the scaling factor s (with the learning rate tuned for every s).")
SOURCE = "review"
FLOOR = 1e-12   # relative losses are clipped here before the log (a loss of exactly 0)


@dataclasses.dataclass(frozen=True)
class Params:
    toy: Toy = Toy()


SETUP = Setup(full=Params(), fast=Params(toy=FAST_TOY_DEPTHS))


def rule(p: Params) -> str:
    t = p.toy
    lo, hi = min(t.depths), max(t.depths)
    return (f"{toy_text(t)}. LoRA with s in {fmt(t.scales)}, no dropout. Sensitivity to s at depth L, per (task, "
            "optimizer, budget): the s with the best and the worst selected validation score are picked on the "
            "validation runs; on the fresh test runs (paired by draw and seed) the sensitivity of a unit is "
            "log(test loss of the worst s / test loss of the best s) (losses relative to the base model; a failed "
            f"run counts as the base model). Control: the shallowest net (L = {lo}), where the ripple has the "
            f"fewest layers to compound; and selection apart from scoring, so that with no effect of s the "
            f"sensitivity is 0 in expectation. Per cell the sensitivity at L = {hi} minus that at L = {lo} is "
            "tested by the exact sign-flip test with draws as groups (a win needs every draw to agree), Holm over "
            "all (task, optimizer, budget) cells; a cell where any s's pick still sits at a grid edge counts for "
            "neither side. supported: the sensitivity increases with depth in every cell; not supported: it "
            "increases in none and decreases in at least one; inconclusive: no cell changes significantly; "
            "partly supported otherwise.")


def _rel_loss(scores):
    return np.clip(1.0 - np.asarray(scores, np.float64) / 100.0, FLOOR, None)


def sensitivity(kind: str, L: int, optimizer: str, budget: str, seed: int, t: Toy) -> dict:
    """Per unit (draw × final seed) log(loss of the worst s / loss of the best s), best and worst picked on
    validation; and what describes the cell (the picks, their lrs, edges, the descriptive spread)."""
    names = [lora_name(s) for s in t.scales]
    res = {m: toy_results(kind, L, m, seed, t)[optimizer] for m in names}
    val = [selected_val_score(res[m], budget) for m in names]
    best, worst = int(np.argmax(val)), int(np.argmin(val))
    logs = {m: np.log(_rel_loss(res[m][budget]["scores"])) for m in names}
    per_unit = logs[names[worst]] - logs[names[best]]
    means = [float(np.mean(logs[m])) for m in names]
    return {"per_unit": per_unit, "groups": np.asarray(res[names[0]][budget]["groups"]),
            "best_s": t.scales[best], "worst_s": t.scales[worst], "val_scores": val,
            "at_edge": any(bool(res[m][budget]["at_edge"]) for m in names),
            "edges": [bool(res[m][budget]["at_edge"]) for m in names],
            "lora_lr": [lora_lr(res[m][budget]["lr"], s, optimizer) for m, s in zip(names, t.scales)],
            "mean_log_rel_loss": means,
            # descriptive only (extremes picked on the test runs): the old lora_spread, on test losses
            "spread_test": float(np.exp(max(means) - min(means))),
            "failed": int(sum(res[m][budget]["n_failed"] for m in names))}


def measure(p: Params, seed: int) -> dict:
    t = p.toy
    lo, hi = min(t.depths), max(t.depths)
    out = {"depths": list(t.depths), "scales": list(t.scales), "tasks": list(t.tasks), "cells": {}, "diffs": []}
    for k in t.tasks:
        for o in protocol.OPTIMIZERS:
            for b in protocol.BUDGETS:
                sens = {L: sensitivity(k, L, o, b, seed, t) for L in t.depths}
                name = f"{k}/{o}/{b}"
                per_depth = {}
                for L, sv in sens.items():
                    d = stats.paired_difference(sv["per_unit"], np.zeros_like(sv["per_unit"]), groups=sv["groups"],
                                                seed=seed)
                    per_depth[str(L)] = {**{kk: v for kk, v in sv.items() if kk not in ("per_unit", "groups")},
                                         "mean": d["mean"], "lo": d["lo"], "hi": d["hi"], "p": d["p"]}
                out["cells"][name] = per_depth
                d = stats.paired_difference(sens[hi]["per_unit"], sens[lo]["per_unit"], groups=sens[hi]["groups"],
                                            seed=seed)
                d.update(cell=name, task=k, optimizer=o, budget=b,
                         at_edge=bool(sens[hi]["at_edge"] or sens[lo]["at_edge"]))
                out["diffs"].append(d)
    out["diffs"] = holm_counting_edges(out["diffs"])
    out["increases"] = sum(d["win"] == 1 for d in out["diffs"])
    out["decreases"] = sum(d["win"] == -1 for d in out["diffs"])
    out["at_edge"] = sum(bool(d["at_edge"]) for d in out["diffs"])
    out["n_cells"] = len(out["diffs"])
    # the plateau, measured: LoRA s = 1's median train-loss curve at its long-budget pick, first draw
    out["escape"] = {f"{k}/L={L}/{o}": escape_curve(k, L, seed, t, o) for k in t.tasks for L in t.depths
                     for o in protocol.OPTIMIZERS}
    rows = []
    for d in out["diffs"]:
        c = out["cells"][d["cell"]]
        tag = "at edge" if d["at_edge"] else {1: "increase", -1: "decrease", 0: "no change"}[d["win"]]
        rows.append([d["cell"]] + [f"{np.exp(c[str(L)]['mean']):.3g}× (s {c[str(L)]['worst_s']:g} vs "
                                   f"{c[str(L)]['best_s']:g})" for L in t.depths]
                    + [f"{d['mean']:+.3g} [{d['lo']:.3g}, {d['hi']:.3g}]",
                       "—" if d["p_adjusted"] is None else f"{d['p_adjusted']:.3g}", tag])
    out["table_md"] = stats.markdown_table(
        ["task/optimizer/budget"] + [f"L = {L}: worst/best loss" for L in t.depths]
        + [f"Δ log sensitivity L={hi} − L={lo} [95% CI]", "p (Holm)", "result"], rows)
    return out


def verdict(m: dict) -> str:
    if m["increases"] == m["n_cells"] and m["at_edge"] == 0:
        return "supported"
    if m["increases"] == 0 and m["decreases"] > 0:
        return "not supported"
    if m["increases"] == 0 and m["decreases"] == 0:
        return "inconclusive"
    return "partly supported"


def plot(record: dict):
    """Left: the sensitivity to s (test loss of the worst over the best s, both picked on validation) against
    depth, per task, optimizer and budget, with its 95 % interval. Right: LoRA s = 1's train-loss curves (the
    plateau, measured)."""
    data = record["measurements"]
    fig, (ax, ax2) = figure(1, 2, figsize=(12, 4.4))
    depths = data["depths"]
    styles = {("sgd", "short"): ("-", "o"), ("sgd", "long"): ("-", "s"), ("adam", "short"): ("--", "o"),
              ("adam", "long"): ("--", "s")}
    for i, k in enumerate(data["tasks"]):
        for (o, b), (ls, mk) in styles.items():
            c = data["cells"][f"{k}/{o}/{b}"]
            y = np.exp([c[str(L)]["mean"] for L in depths])
            err = [y - np.exp([c[str(L)]["lo"] for L in depths]), np.exp([c[str(L)]["hi"] for L in depths]) - y]
            x = np.array(depths) * (1 + 0.04 * (list(styles).index((o, b)) - 1.5 + 4 * i) / 4)
            ax.errorbar(x, y, err, fmt=ls + mk, color=f"C{i}", capsize=2, ms=4, mfc="none" if b == "short" else None)
        ax.plot([], [], color=f"C{i}", lw=4, label=f"{k} task")
        for o in protocol.OPTIMIZERS:
            e = data["escape"]
            for j, L in enumerate(depths):
                cur = e[f"{k}/L={L}/{o}"]
                ax2.plot(cur["steps"], cur["relative_train_loss"], "-" if o == "sgd" else "--", color=f"C{i}",
                         alpha=0.4 + 0.6 * j / max(1, len(depths) - 1))
    for (o, b), (ls, mk) in styles.items():
        ax.plot([], [], ls + mk, color="k", mfc="none" if b == "short" else None, label=f"{o.upper()}, {b}")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(depths, [str(L) for L in depths])
    ax.set_xlabel("depth L (layers with LoRA)")
    ax.set_ylabel("test loss, worst s / best s (picked on validation)")
    ax.set_title("LoRA's sensitivity to s (mean, 95% CI)")
    legend(ax, "below", ncols=3)
    for i, k in enumerate(data["tasks"]):
        ax2.plot([], [], color=f"C{i}", lw=4, label=f"{k} task")
    ax2.plot([], [], "-", color="k", label="SGD")
    ax2.plot([], [], "--", color="k", label="Adam")
    legend(ax2, "below", ncols=4)
    ax2.set_yscale("log")
    ax2.set_xlabel("step")
    ax2.set_ylabel("train loss / base model's (LoRA s = 1, median of seeds)")
    ax2.set_title("the plateau: LoRA s = 1 (darker = deeper)")
    return fig


def _case(increases, decreases, n=8, at_edge=0):
    return {"increases": increases, "decreases": decreases, "n_cells": n, "at_edge": at_edge}


VERDICT_EXAMPLES = [
    (_case(8, 0), "supported"),
    (_case(7, 0, at_edge=1), "partly supported"),   # an edge cell counts for neither side: not every cell
    (_case(7, 0), "partly supported"),              # one cell short of all
    (_case(1, 3), "partly supported"),
    (_case(0, 1), "not supported"),
    (_case(0, 8), "not supported"),
    (_case(0, 0), "inconclusive"),
    (_case(0, 0, at_edge=8), "inconclusive"),
]
