"""dropout.zero-vs-small: even in short fine-tuning, LoRA without dropout is worse than with dropout 0.05 (the
paper's Table 2) — is it, and why?"""

from __future__ import annotations

import numpy as np

from toyllora.claims import Setup
from toyllora.claims.dropout._common import (FAST_BUDGET_RUNS, BudgetRuns, budget_runs, budget_runs_text,
                                             final_groups, final_scores, holm, method_name, paired)
from toyllora.plotting import figure, legend

STATEMENT = ("In short fine-tuning LoRA without dropout is worse than LoRA with dropout 0.05 (the paper's Table 2, "
             "2 epochs) — although dropout is said to hurt short runs. Why?")
SOURCE = "review"
SMALL = 0.05

Params = BudgetRuns          # the runs of dropout.short-vs-long (one cached set per process)
SETUP = Setup(full=BudgetRuns(), fast=FAST_BUDGET_RUNS)


def rule(p: Params) -> str:
    return (f"{budget_runs_text(p)}. At the short budget ({p.short} steps), LoRA with dropout {SMALL:g} against the "
            "control LoRA without dropout (rate 0), on the fresh seeds, paired by draw and seed, test cross-entropy "
            "(the selection criterion): (T) each rate at its own validation-selected lr, and (P) the paper's "
            "protocol, both at one lr (the one selected for rate 0); exact sign-flip test (a win needs every draw "
            f"to agree), Holm over the two. Supported if dropout {SMALL:g} wins under (T); partly supported if it "
            "wins only under (P); not supported if rate 0 wins one and dropout none; inconclusive if both are "
            "ties. Reported, not judged: the same comparisons of test accuracy (Table 2's metric; the lr was "
            "selected on cross-entropy), the training cross-entropy at the short budget (near 0: the short budget "
            "is already in the interpolation regime, where a regularizer can help), and the accuracy difference "
            "against the seed-to-seed std (the size of difference 5 runs without error bars can show).")


def measure(p: Params, seed: int) -> dict:
    raw = budget_runs(p, seed)
    g = final_groups(p)
    z, s = method_name(0.0), method_name(SMALL)
    lr_z = raw["picks"][z]["short"]["log2_lr"]
    lr_s = raw["picks"][s]["short"]["log2_lr"]
    edge = raw["picks"][z]["short"]["at_edge"] or raw["picks"][s]["short"]["at_edge"]
    out = {"lr": {"rate 0": 2.0 ** lr_z, f"rate {SMALL:g}": 2.0 ** lr_s}, "at_edge": bool(edge), "arms": {}}
    fam = []
    for proto, (ez, es) in (("T", (lr_z, lr_s)), ("P", (lr_z, lr_z))):
        arms = {}
        for name, meth, e in (("rate 0", z, ez), (f"rate {SMALL:g}", s, es)):
            arms[name] = {k: final_scores(p, raw, meth, e, p.short, k)[0]
                          for k in ("test_loss", "test_acc", "train_loss")}
        a0, a1 = arms["rate 0"], arms[f"rate {SMALL:g}"]
        fam.append(paired(a0["test_loss"], a1["test_loss"], g, f"{proto}: cross-entropy, rate 0 − rate {SMALL:g}"))
        fam.append(paired(100 * a1["test_acc"], 100 * a0["test_acc"], g,
                          f"{proto}: accuracy (points), rate {SMALL:g} − rate 0"))
        for d in fam[-2:]:
            d["at_edge"] = bool(edge and proto == "T")
        out["arms"][proto] = {name: {"test_loss_mean": float(v["test_loss"].mean()),
                                     "test_acc_mean": float(v["test_acc"].mean()),
                                     "test_acc_std_points": float(100 * v["test_acc"].std(ddof=1)),
                                     "train_loss_median": float(np.median(v["train_loss"])),
                                     "test_acc": v["test_acc"].tolist()}
                              for name, v in arms.items()}
    judged = holm([d for d in fam if "cross-entropy" in d["name"]])
    out["comparisons"] = judged
    out["accuracy_comparisons"] = holm([d for d in fam if "accuracy" in d["name"]])
    out["short_budget_epochs"] = p.short * p.batch_size / 256
    return out


def verdict(m: dict) -> str:
    w = [0 if d.get("at_edge") else d["win"] for d in m["comparisons"]]   # +1: dropout 0.05 better; [T, P]
    if w[0] == 1:
        return "supported"
    if w[1] == 1 and w[0] != -1:
        return "partly supported"
    if any(x == -1 for x in w):
        return "not supported"
    return "inconclusive"


def plot(record: dict):
    """The paired differences (positive: dropout 0.05 better) with their 95 % t-intervals: cross-entropy (judged)
    and accuracy (reported)."""
    m = record["measurements"]
    fig, axes = figure(1, 2, figsize=(12, 4.2))
    for ax, unit, rows in ((axes[0], "cross-entropy (judged)", m["comparisons"]),
                           (axes[1], "accuracy points (reported)", m["accuracy_comparisons"])):
        for j, d in enumerate(rows):
            ax.errorbar([d["mean"]], [j], xerr=[[d["mean"] - d["lo"]], [d["hi"] - d["mean"]]], fmt="o", capsize=4,
                        color=f"C{j}", label=f"{d['name']} (p_holm {d['p_adjusted']:.3g})")
        ax.axvline(0, color="k", lw=0.8)
        ax.set_yticks([])
        ax.set_xlabel(f"{unit} (> 0: dropout {SMALL:g} better)")
        ax.set_title(f"short budget: T = tuned lr each, P = one lr ({unit})")
        legend(ax, "below")
    return fig


def _case(t=1, p=0, edge=False):
    return {"comparisons": [{"name": "T: cross-entropy", "win": t, "at_edge": edge},
                            {"name": "P: cross-entropy", "win": p, "at_edge": False}]}


VERDICT_EXAMPLES = [
    (_case(), "supported"),
    (_case(t=1, p=-1), "supported"),
    (_case(t=0, p=1), "partly supported"),       # only under the paper's one-lr protocol
    (_case(t=-1, p=1), "not supported"),
    (_case(t=0, p=-1), "not supported"),
    (_case(t=0, p=0), "inconclusive"),
    (_case(edge=True), "inconclusive"),          # the tuned picks sit at a grid edge: they count for neither side
]
