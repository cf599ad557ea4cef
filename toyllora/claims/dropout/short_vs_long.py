"""dropout.short-vs-long: dropout hurts short and helps long fine-tuning (Table 5): the best drop rate grows with
the budget."""

from __future__ import annotations

import numpy as np

from toyllora.claims.dropout._common import BUDGET_RUNS, BudgetRuns, budget_runs, budget_runs_text, loss_stats
from toyllora.plotting import figure, legend

STATEMENT = ("Dropout hurts short fine-tuning and helps long fine-tuning (Table 5): the best drop rate grows "
             "with the training budget (dropout 0 best at 3 epochs, 0.2–0.4 best at 10 epochs).")
SOURCE = "paper"
SHORT_MAX = 0.05   # the best rate at the shortest budget is at most this
LONG_MIN = 0.2     # ... and at the longest at least this,
Z_BEAT = 2.0       # where it beats dropout 0 by more than this many SE

Params = BudgetRuns          # the runs are shared with dropout.allora-fix (one cached set per process)
SETUP = BUDGET_RUNS


def rule(p: Params) -> str:
    return (f"{budget_runs_text(p)}. Supported if the best rate (lowest mean test loss) is <= {SHORT_MAX:g} at the "
            f"shortest budget and >= {LONG_MIN:g} at the longest, where it beats dropout 0 by more than {Z_BEAT:g} "
            "SE; partly supported if the best rate at the longest budget is larger than at the shortest without "
            "meeting that; not supported otherwise (no crossover).")


def summary(raw: dict) -> dict:
    """The best drop rate per budget and the table of mean/std test loss and accuracy per rate."""
    budgets = raw["budgets"]
    rates = list(raw["lora"])
    stats = {r: loss_stats(raw["lora"][r]) for r in rates}
    best, rows = [], []
    for b in range(len(budgets)):
        means = [stats[r][0][b] for r in rates]
        i = int(np.argmin(means))
        best.append(float(rates[i]))
        se = np.sqrt(stats[rates[i]][2][b] ** 2 + stats["0.0"][2][b] ** 2)
        rows.append({"budget": budgets[b], "best_rate": float(rates[i]),
                     "best_minus_no_dropout": float(means[i] - stats["0.0"][0][b]), "se_diff": float(se),
                     "mean_test_loss": {r: float(stats[r][0][b]) for r in rates},
                     "std_test_loss": {r: float(stats[r][1][b]) for r in rates},
                     "mean_test_acc": {r: float(np.mean(np.asarray(raw["lora"][r]["test_acc"])[:, b])) for r in rates}})
    return {"budgets": budgets, "rates": [float(r) for r in rates], "best_rate_per_budget": best, "table": rows}


def measure(p: Params, seed: int) -> dict:
    return summary(budget_runs(p, seed))


def verdict(m: dict) -> str:
    best = m["best_rate_per_budget"]
    last = m["table"][-1]
    beats = -last["best_minus_no_dropout"] > Z_BEAT * last["se_diff"]
    crossover = best[0] <= SHORT_MAX and best[-1] >= LONG_MIN and beats
    if crossover:
        return "supported"
    return "partly supported" if best[-1] > best[0] else "not supported"


def plot(record: dict):
    """Left: test loss against budget per drop rate (mean ± std); right: the best drop rate per budget."""
    data = record["measurements"]
    fig, axes = figure(1, 2, figsize=(12, 4.4))
    b = np.asarray(data["budgets"])
    rates = sorted(data["table"][0]["mean_test_loss"], key=float)
    for i, r in enumerate(rates):
        m = np.array([row["mean_test_loss"][r] for row in data["table"]])
        s = np.array([row["std_test_loss"][r] for row in data["table"]])
        axes[0].errorbar(b * (1 + 0.03 * i), m, yerr=s, marker="o", capsize=2, label=f"LoRA drop {r}")
    axes[0].set_xscale("log")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("training budget (optimizer steps)")
    axes[0].set_ylabel("test cross-entropy (mean ± std over seeds)")
    axes[0].set_title("Digits MLP, LoRA fine-tuning")
    legend(axes[0])
    axes[1].semilogx(b, data["best_rate_per_budget"], "o-")
    axes[1].set_xlabel("training budget (optimizer steps)")
    axes[1].set_ylabel("best drop rate (lowest mean test loss)")
    axes[1].set_title("Best drop rate vs budget (Table 5 analogue)")
    return fig


def _case(best_first=0.0, best_last=0.2, gain=0.1, se=0.02):
    return {"best_rate_per_budget": [best_first, 0.1, best_last],
            "table": [{"best_minus_no_dropout": 0.0, "se_diff": se},
                      {"best_minus_no_dropout": -0.01, "se_diff": se},
                      {"best_minus_no_dropout": -gain, "se_diff": se}]}


VERDICT_EXAMPLES = [
    (_case(), "supported"),
    (_case(best_first=0.05, best_last=0.4), "supported"),   # at the edges: <= 0.05, >= 0.2
    (_case(best_first=0.1), "partly supported"),            # shortest budget's best rate just above 0.05
    (_case(best_last=0.1), "partly supported"),             # longest budget's best rate below 0.2
    (_case(gain=0.041), "supported"),                       # beats dropout 0 by just over 2 SE
    (_case(gain=0.039), "partly supported"),                # ... by just under
    (_case(best_first=0.2, best_last=0.2), "not supported"),  # no crossover
    (_case(best_first=0.1, best_last=0.0), "not supported"),
]
