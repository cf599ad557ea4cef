"""dropout.short-vs-long: dropout hurts short and helps long fine-tuning (Table 5): the rate that is best for a
long budget is worse than no dropout for a short one."""

from __future__ import annotations

import numpy as np

from toyllora.claims import Setup
from toyllora.claims.dropout._common import (FAST_BUDGET_RUNS, BudgetRuns, budget_runs, budget_runs_text, by_name,
                                             final_groups, final_scores, holm, method_name, paired)
from toyllora.plotting import figure, legend

STATEMENT = ("Dropout hurts short fine-tuning and helps long fine-tuning (Table 5): the best drop rate grows "
             "with the training budget (dropout 0 best at 3 epochs, 0.2–0.4 best at 10 epochs).")
SOURCE = "paper"

Params = BudgetRuns          # the runs are shared with dropout.allora-fix, zero-vs-small and crossover
SETUP = Setup(full=BudgetRuns(), fast=FAST_BUDGET_RUNS)


def rule(p: Params) -> str:
    return (f"{budget_runs_text(p)}. Selection apart from scoring: the best rate of each budget, r*_short and "
            "r*_long, is the rate with the lowest validation cross-entropy at its own selected lr (tuning seeds "
            "only); both are then scored on the fresh seeds. Control: LoRA without dropout (rate 0) at its own "
            "selected lr, same fresh seeds and draws. Two comparisons of test cross-entropy, paired by draw and "
            "seed (exact sign-flip test, a win needs every draw to agree, Holm over the two): (L) at the long "
            "budget r*_long against rate 0; (S) at the short budget the same rate r*_long against rate 0. "
            "Supported if r*_long > 0, (L) is a win for dropout and (S) a win for rate 0 (the rate that helps long "
            "hurts short); partly supported if exactly one of the two halves holds (dropout helps long but does not "
            "hurt short — a tie or a win for dropout there too — or hurts short without helping long); "
            "inconclusive if both are ties (a pick still at a grid edge counts for neither side); not supported "
            "otherwise (r*_long = 0, or neither half holds and one is decided against: dropout wins short or "
            "loses long).")


def measure(p: Params, seed: int) -> dict:
    raw = budget_runs(p, seed)
    g = final_groups(p)
    budgets = {"short": p.short, "long": p.long}
    best = {}
    for name in budgets:
        # the best rate of a budget: its validation loss at its own selected lr (tuning seeds only)
        vals = {r: min(raw["picks"][method_name(r)][name]["val_means"]) for r in p.rates}
        best[name] = min(p.rates, key=lambda r: vals[r])
    r_long = best["long"]
    fam, table = [], {}
    for name, T in budgets.items():
        row = {}
        for r in p.rates:
            pk = raw["picks"][method_name(r)][name]
            loss, nf = final_scores(p, raw, method_name(r), pk["log2_lr"], T)
            acc, _ = final_scores(p, raw, method_name(r), pk["log2_lr"], T, "test_acc")
            row[str(r)] = {"lr": pk["lr"], "at_edge": pk["at_edge"], "val_loss": min(pk["val_means"]),
                           "test_loss_mean": float(loss.mean()), "test_loss_std": float(loss.std(ddof=1)),
                           "test_acc_mean": float(acc.mean()), "failed": nf, "test_loss": loss.tolist()}
        table[name] = row
    for tag, name in (("L", "long"), ("S", "short")):
        a, b = table[name][str(r_long)], table[name]["0.0"]
        d = paired(a["test_loss"], b["test_loss"], g, f"{tag}: rate {r_long:g} − rate 0, {name} budget")
        d["at_edge"] = bool(a["at_edge"] or b["at_edge"])
        fam.append(d)
    fam = holm(fam)
    return {"budgets": budgets, "best_rate": best, "r_long": r_long, "table": table,
            "comparisons": fam, "records": raw["records"]}


def _win(d) -> int:
    """Who wins a loss difference (dropout − rate 0): +1 dropout (lower loss), −1 rate 0, 0 tie or at an edge."""
    if d.get("at_edge"):
        return 0
    return -int(d["win"])


def verdict(m: dict) -> str:
    if m["r_long"] == 0:
        return "not supported"  # no rate > 0 is best for the long budget: dropout never helps
    c = {d["name"][0]: _win(d) for d in m["comparisons"]}
    helps_long, hurts_short = c["L"] == 1, c["S"] == -1
    if helps_long and hurts_short:
        return "supported"
    if helps_long or hurts_short:
        return "partly supported"
    return "inconclusive" if c["L"] == 0 and c["S"] == 0 else "not supported"


def plot(record: dict):
    """Left: fresh-seed test cross-entropy per rate at both budgets (each at its selected lr); right: the paired
    differences against rate 0 with their intervals."""
    m = record["measurements"]
    fig, axes = figure(1, 2, figsize=(12, 4.4))
    rates = sorted(m["table"]["short"], key=float)
    for i, name in enumerate(("short", "long")):
        mu = [m["table"][name][r]["test_loss_mean"] for r in rates]
        sd = [m["table"][name][r]["test_loss_std"] for r in rates]
        axes[0].errorbar(np.arange(len(rates)) + 0.1 * i, mu, yerr=sd, marker="os"[i], capsize=3,
                         label=f"{name} budget ({m['budgets'][name]} steps)")
    axes[0].set_xticks(np.arange(len(rates)), [f"drop {r}" for r in rates])
    axes[0].set_ylabel("test cross-entropy (fresh seeds, mean ± std)")
    axes[0].set_title("Each rate at its own validation-selected lr")
    legend(axes[0])
    ax = axes[1]
    for i, d in enumerate(m["comparisons"]):
        ax.errorbar([d["mean"]], [i], xerr=[[d["mean"] - d["lo"]], [d["hi"] - d["mean"]]], fmt="o", capsize=4,
                    color=f"C{i}", label=f"{d['name']} (p_holm {d.get('p_adjusted', d['p']):.3g})")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks([])
    ax.set_xlabel("test cross-entropy difference (< 0: dropout better)")
    ax.set_title(f"r*_long = {m['r_long']:g} against no dropout (95 % t-interval)")
    legend(ax, "below")
    return fig


def _case(r_long=0.2, L=(-0.1, -1), S=(0.05, 1), edge=False):
    fam = [{"name": "L: rate − rate 0, long budget", "mean": L[0], "lo": L[0] - 0.02, "hi": L[0] + 0.02, "p": 0.001,
            "win": L[1], "at_edge": edge},
           {"name": "S: rate − rate 0, short budget", "mean": S[0], "lo": S[0] - 0.02, "hi": S[0] + 0.02, "p": 0.001,
            "win": S[1], "at_edge": False}]
    return {"r_long": r_long, "comparisons": fam}


VERDICT_EXAMPLES = [
    (_case(), "supported"),                                    # dropout lowers the long loss, raises the short one
    (_case(S=(0.01, 0)), "partly supported"),                  # helps long, neutral short
    (_case(L=(0.0, 0)), "partly supported"),                   # hurts short, no help long
    (_case(S=(-0.05, -1)), "partly supported"),                # dropout helps at both budgets: only 'helps long'
    (_case(L=(0.0, 0), S=(-0.05, -1)), "not supported"),       # helps short only
    (_case(L=(0.01, 1)), "partly supported"),                  # rate 0 wins at both budgets: hurts short only
    (_case(L=(0.01, 1), S=(0.0, 0)), "not supported"),         # rate 0 wins long, tie short
    (_case(L=(0.01, 1), S=(-0.05, -1)), "not supported"),      # rate 0 wins long, dropout wins short
    (_case(L=(0.0, 0), S=(0.0, 0)), "inconclusive"),           # ties at both budgets
    (_case(edge=True, S=(0.0, 0)), "inconclusive"),            # the long win sits at a grid edge: counts for neither
    (_case(r_long=0.0, L=(0.0, 0), S=(0.0, 0)), "not supported"),  # no dropout is best for the long budget
]
