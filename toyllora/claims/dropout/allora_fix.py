"""dropout.allora-fix: ALLoRA (no dropout, per-row learning rates) matches or beats LoRA with dropout at every
budget."""

from __future__ import annotations

import numpy as np

from toyllora.claims import fmt
from toyllora.claims.dropout._common import BUDGET_RUNS, BudgetRuns, budget_runs, loss_stats
from toyllora.plotting import figure, legend

STATEMENT = ("ALLoRA keeps what dropout was for without its noise: dropping dropout (and the scaling factor) "
             "and adapting the learning rate per row matches or beats LoRA with dropout, at every budget, with "
             "no larger seed-to-seed spread.")
SOURCE = "paper"
Z = 2.0   # "not worse" / "beats": differences of means against Z SE of the difference

Params = BudgetRuns          # the runs of dropout.short-vs-long (one cached set per process)
SETUP = BUDGET_RUNS


def rule(p: Params) -> str:
    return (f"On the runs and budgets of dropout.short-vs-long, ALLoRA (scaling none, eta {fmt(p.eta)}, no dropout, "
            "lr = LoRA lr/eta as in the paper) against LoRA at each drop rate and without dropout; SE over seeds. "
            f"(a) At every budget ALLoRA's mean test loss <= the best LoRA rate's mean + {Z:g} SE of the "
            f"difference; (b) at every budget ALLoRA is not worse than LoRA without dropout (+{Z:g} SE), and where "
            f"some drop rate beat LoRA without dropout by > {Z:g} SE, ALLoRA beats it by > {Z:g} SE too; (c) "
            "ALLoRA's seed std <= the median std of LoRA with dropout at >= half the budgets. Supported if (a), "
            "(b), (c); partly supported if (a) or (b); otherwise not supported. ALLoRA at LoRA's lr is reported, "
            "not used in the verdict.")


def summary(raw: dict) -> dict:
    """Per budget: ALLoRA's and each LoRA rate's mean/std/SE test loss, and the tests (a), (b), (c)."""
    budgets = raw["budgets"]
    lora_stats = {r: loss_stats(v) for r, v in raw["lora"].items()}
    drop_rates = [r for r in lora_stats if float(r) > 0]
    out = {"budgets": budgets, "protocol": "ALLoRA at lr = LoRA lr / eta (the paper's); same-lr run reported",
           "per_budget": []}
    for b in range(len(budgets)):
        row = {"budget": budgets[b]}
        for name, runs in raw["allora"].items():
            m, s, se = loss_stats(runs)
            row[f"allora_{name}"] = {"mean": float(m[b]), "std": float(s[b]), "se": float(se[b])}
        row["lora"] = {r: {"mean": float(v[0][b]), "std": float(v[1][b]), "se": float(v[2][b])}
                       for r, v in lora_stats.items()}
        best_r = min(lora_stats, key=lambda r: lora_stats[r][0][b])
        a = row["allora_lr_base"]
        best = row["lora"][best_r]
        zero = row["lora"]["0.0"]
        row["best_lora_rate"] = float(best_r)
        row["a_not_worse_than_best_lora"] = a["mean"] <= best["mean"] + Z * np.hypot(a["se"], best["se"])
        row["b_not_worse_than_lora_no_dropout"] = a["mean"] <= zero["mean"] + Z * np.hypot(a["se"], zero["se"])
        helped = [r for r in drop_rates
                  if zero["mean"] - row["lora"][r]["mean"] > Z * np.hypot(zero["se"], row["lora"][r]["se"])]
        row["dropout_helped_rates"] = [float(r) for r in helped]
        row["b_keeps_dropout_gain"] = (not helped) or (zero["mean"] - a["mean"] > Z * np.hypot(zero["se"], a["se"]))
        row["c_spread_not_larger"] = a["std"] <= float(np.median([row["lora"][r]["std"] for r in drop_rates]))
        out["per_budget"].append(row)
    return out


def measure(p: Params, seed: int) -> dict:
    return summary(budget_runs(p, seed))


def verdict(m: dict) -> str:
    rows = m["per_budget"]
    a = all(r["a_not_worse_than_best_lora"] for r in rows)
    b = all(r["b_not_worse_than_lora_no_dropout"] and r["b_keeps_dropout_gain"] for r in rows)
    c = sum(r["c_spread_not_larger"] for r in rows) * 2 >= len(rows)
    if a and b and c:
        return "supported"
    return "partly supported" if (a or b) else "not supported"


def plot(record: dict):
    """Test loss against budget: LoRA at each drop rate and ALLoRA at both learning rates (mean ± std)."""
    data = record["measurements"]
    fig, ax = figure(1, 1, figsize=(9, 4.4))
    b = np.asarray(data["budgets"])
    rows = data["per_budget"]
    for i, r in enumerate(sorted(rows[0]["lora"], key=float)):
        m = np.array([row["lora"][r]["mean"] for row in rows])
        s = np.array([row["lora"][r]["std"] for row in rows])
        ax.errorbar(b * (1 + 0.03 * i), m, yerr=s, marker="o", capsize=2, alpha=0.7, label=f"LoRA drop {r}")
    for j, (name, style) in enumerate((("lr_base", "k-s"), ("lr_same_as_lora", "k:^"))):
        m = np.array([row[f"allora_{name}"]["mean"] for row in rows])
        s = np.array([row[f"allora_{name}"]["std"] for row in rows])
        ax.errorbar(b * (1 - 0.03 * (j + 1)), m, yerr=s, fmt=style, capsize=2, label=f"ALLoRA ({name})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training budget (optimizer steps)")
    ax.set_ylabel("test cross-entropy (mean ± std over seeds)")
    ax.set_title("Does ALLoRA keep what dropout was for? (digits MLP)")
    legend(ax)
    return fig


def _case(a=True, b_zero=True, b_gain=True, c=(True, True, False, False)):
    return {"per_budget": [{"a_not_worse_than_best_lora": a if k == 0 else True,
                            "b_not_worse_than_lora_no_dropout": b_zero,
                            "b_keeps_dropout_gain": b_gain if k == 1 else True,
                            "c_spread_not_larger": ck} for k, ck in enumerate(c)]}


VERDICT_EXAMPLES = [
    (_case(), "supported"),                                     # (c) at exactly half the budgets
    (_case(c=(True, False, False, False)), "partly supported"),  # (c) at less than half
    (_case(a=False), "partly supported"),                       # (b) only
    (_case(b_zero=False), "partly supported"),                  # (a) only: worse than LoRA without dropout
    (_case(b_gain=False), "partly supported"),                  # (a) only: dropout's gain not kept
    (_case(a=False, b_gain=False), "not supported"),
]
