"""dropout.allora-fix: ALLoRA (no dropout, per-row learning rates) matches or beats LoRA with dropout at every
budget, and keeps what dropout was for."""

from __future__ import annotations

import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.claims.dropout._common import (FAST_BUDGET_RUNS, BudgetRuns, budget_runs, budget_runs_text,
                                             final_groups, final_scores, holm, method_name, paired)
from toyllora.plotting import figure, legend

STATEMENT = ("ALLoRA keeps what dropout was for without its noise: dropping dropout (and the scaling factor) "
             "and adapting the learning rate per row matches or beats LoRA with dropout at every budget.")
SOURCE = "paper"

Params = BudgetRuns          # the runs of dropout.short-vs-long (one cached set per process)
SETUP = Setup(full=BudgetRuns(), fast=FAST_BUDGET_RUNS)
BUDGETS = ("short", "long")


def rule(p: Params) -> str:
    return (f"{budget_runs_text(p)}. Equal footing: ALLoRA and LoRA at every rate get the same lr grid, the same "
            "extension rule and the same tuning seeds. Comparisons of test cross-entropy on the fresh seeds, paired "
            "by draw and seed, at both budgets: ALLoRA against LoRA at each rate, and (control: does dropout help "
            "at all?) LoRA at each rate > 0 against LoRA without dropout; exact sign-flip test, a win needs every "
            "draw to agree, Holm over all of them. (A) ALLoRA loses to no LoRA rate at either budget; (B) at every "
            "budget where some rate > 0 beats rate 0, ALLoRA beats rate 0 too, and dropout beats rate 0 at one "
            "budget at least (else there is nothing to keep). Supported if (A) and (B); partly supported if "
            "exactly one holds; not supported if neither. Reported beside, not judged: the paper's protocol, "
            f"ALLoRA at LoRA(0.05)'s selected lr / eta (under Adam eta cancels at B = 0, so this halves ALLoRA's "
            f"step for eta {fmt(p.eta)}), and the seed-to-seed spread.")


def measure(p: Params, seed: int) -> dict:
    raw = budget_runs(p, seed)
    g = final_groups(p)
    al = method_name(allora=True)
    fam, per = [], {}
    for name in BUDGETS:
        T = getattr(p, name)
        pk_a = raw["picks"][al][name]
        a, nf_a = final_scores(p, raw, al, pk_a["log2_lr"], T)
        arms = {"allora": {"loss": a, "edge": pk_a["at_edge"], "lr": pk_a["lr"], "failed": nf_a}}
        for r in p.rates:
            pk = raw["picks"][method_name(r)][name]
            v, nf = final_scores(p, raw, method_name(r), pk["log2_lr"], T)
            arms[str(r)] = {"loss": v, "edge": pk["at_edge"], "lr": pk["lr"], "failed": nf}
        for r in p.rates:
            d = paired(a, arms[str(r)]["loss"], g, f"{name}: ALLoRA − LoRA {r:g}")
            d.update(kind="allora", budget=name, at_edge=bool(pk_a["at_edge"] or arms[str(r)]["edge"]))
            fam.append(d)
        for r in p.rates:
            if r > 0:
                d = paired(arms[str(r)]["loss"], arms["0.0"]["loss"], g, f"{name}: LoRA {r:g} − LoRA 0")
                d.update(kind="dropout", budget=name, at_edge=bool(arms[str(r)]["edge"] or arms["0.0"]["edge"]))
                fam.append(d)
        ref = raw["reference_rate_method"]
        e_paper = raw["picks"][ref][name]["log2_lr"] - float(np.log2(p.eta))
        ap, _ = final_scores(p, raw, al, e_paper, T)
        lref, _ = final_scores(p, raw, ref, raw["picks"][ref][name]["log2_lr"], T)
        paper = paired(ap, lref, g, f"{name}: ALLoRA at lr/eta − {ref} (paper's protocol)")
        per[name] = {"arms": {k: {"lr": v["lr"], "at_edge": v["edge"], "failed": v["failed"],
                                  "test_loss_mean": float(v["loss"].mean()), "test_loss_std": float(v["loss"].std(ddof=1))}
                              for k, v in arms.items()},
                     "paper_protocol": {"allora_lr": 2.0 ** e_paper, "test_loss_mean": float(ap.mean()),
                                        "vs_reference": paper}}
    return {"comparisons": holm(fam), "per_budget": per}


def _w(d) -> int:
    return 0 if d.get("at_edge") else int(d["win"])


def verdict(m: dict) -> str:
    fam = m["comparisons"]
    a_ok = not any(_w(d) == 1 for d in fam if d["kind"] == "allora")   # +1: ALLoRA's loss higher
    helped = {d["budget"] for d in fam if d["kind"] == "dropout" and _w(d) == -1}
    beats_zero = {d["budget"] for d in fam if d["kind"] == "allora" and d["name"].endswith("LoRA 0") and _w(d) == -1}
    b_ok = bool(helped) and helped <= beats_zero
    if a_ok and b_ok:
        return "supported"
    return "partly supported" if (a_ok or b_ok) else "not supported"


def plot(record: dict):
    """The paired differences (test cross-entropy) with their 95 % t-intervals, per budget."""
    m = record["measurements"]
    fig, axes = figure(1, 2, figsize=(13, 4.6), sharex=True)
    for ax, name in zip(axes, BUDGETS):
        rows = [d for d in m["comparisons"] if d["budget"] == name]
        rows.append(m["per_budget"][name]["paper_protocol"]["vs_reference"])
        for i, d in enumerate(rows):
            col = "C0" if d.get("kind") == "allora" else ("C1" if d.get("kind") == "dropout" else "C2")
            ax.errorbar([d["mean"]], [i], xerr=[[d["mean"] - d["lo"]], [d["hi"] - d["mean"]]], fmt="o", capsize=3,
                        color=col)
        ax.set_yticks(range(len(rows)), [d["name"].split(": ", 1)[1] for d in rows])
        ax.axvline(0, color="k", lw=0.8)
        ax.set_xlabel("test cross-entropy difference (< 0: first arm better)")
        ax.set_title(f"{name} budget (blue: ALLoRA tuned, orange: dropout control,\ngreen: paper's protocol, "
                     "not judged)")
    return fig


def _case(allora_loss=False, helped=("long",), beats=("long",), edge=False):
    fam = []
    for b in BUDGETS:
        fam.append({"name": f"{b}: ALLoRA − LoRA 0.2", "kind": "allora", "budget": b,
                    "win": 1 if (allora_loss and b == "short") else 0, "at_edge": edge})
        fam.append({"name": f"{b}: ALLoRA − LoRA 0", "kind": "allora", "budget": b,
                    "win": -1 if b in beats else 0, "at_edge": False})
        fam.append({"name": f"{b}: LoRA 0.2 − LoRA 0", "kind": "dropout", "budget": b,
                    "win": -1 if b in helped else 0, "at_edge": False})
    return {"comparisons": fam}


VERDICT_EXAMPLES = [
    (_case(), "supported"),
    (_case(beats=()), "partly supported"),                       # (A) only: dropout's gain not kept
    (_case(helped=()), "partly supported"),                      # (A) only: dropout helps nowhere, nothing to keep
    (_case(allora_loss=True), "partly supported"),               # (B) only: ALLoRA loses to LoRA 0.2 at one budget
    (_case(allora_loss=True, edge=True), "supported"),           # ... but that pick sits at a grid edge
    (_case(helped=("short", "long"), beats=("long",)), "partly supported"),   # gain kept at one budget only
    (_case(allora_loss=True, beats=()), "not supported"),
]
