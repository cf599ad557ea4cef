"""transfer.allora-fix: on the transformer, does ALLoRA keep what LoRA dropout was for, at every budget?"""

from __future__ import annotations

import dataclasses

import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.claims.transfer import _common as T
from toyllora.claims.transfer import dropout_crossover as crossover
from toyllora.plotting import figure, legend
from toyllora.protocol import stats

STATEMENT = ("On a pre-trained transformer, ALLoRA keeps what dropout was for without its noise: with no dropout "
             "and no scaling factor, and the learning rate adapted per row, it matches or beats LoRA with dropout "
             "at every budget (dropout.allora-fix, carried to the transformer rung).")
SOURCE = "paper"
COUNTERPARTS = ("dropout.allora-fix",)


@dataclasses.dataclass(frozen=True)
class Params:
    budget: T.Budget = T.Budget()
    drop_rates: tuple = crossover.Params().drop_rates     # the runs of transfer.dropout-crossover, shared
    optimizer: str = "adam"


SETUP = Setup(full=Params(), fast=Params(budget=crossover.SETUP.fast.budget, drop_rates=crossover.SETUP.fast.drop_rates))


def _arms(p: Params) -> dict:
    """LoRA (s = 4) at each dropout rate, rate 0 first: name -> (rate, config or None)."""
    arms = {crossover.CONTROL: (0.0, None)}
    for rate in p.drop_rates:
        name = crossover.arm(rate)
        arms[name] = (rate, None if name == "lora" else crossover.arm_config(rate, p.budget.rank))
    return arms


def rule(p: Params) -> str:
    b = p.budget
    return (f"Protocol of the transformer rung ({T.budget_text(b)}), task 'shifted', {p.optimizer}. Equal footing: "
            f"ALLoRA (eta² = 4, no dropout, s = 1) and LoRA (s = 4) at dropout rates 0 and {fmt(p.drop_rates)} get the "
            "same grid, extension rule and tuning seeds; the lr is re-picked for every budget T in "
            f"{fmt(tuple(b.records[1:]))} steps on validation and scored on fresh seeds. Comparisons of test points, "
            "paired by draw and scoring seed, exact sign-flip test with draws as groups, Holm over all of them, an "
            "edge pick a tie: ALLoRA against LoRA at each rate, and (control: does dropout help at all?) LoRA at "
            "each rate > 0 against LoRA without dropout, at every budget. (A) ALLoRA loses to no LoRA rate at any "
            "budget; (B) at every budget where some rate > 0 beats rate 0, ALLoRA beats rate 0 too, and dropout "
            "beats rate 0 at one budget at least (else there is nothing to keep). Supported if (A) and (B); partly "
            "supported if exactly one holds; not supported if neither.")


def measure(p: Params, seed: int) -> dict:
    b = p.budget
    arms = _arms(p)
    cells = {name: T.cell(name, p.optimizer, "shifted", seed, b, cfg=cfg) for name, (_, cfg) in arms.items()}
    allora = T.cell("allora", p.optimizer, "shifted", seed, b)
    diffs = []
    for k in range(1, len(b.records)):
        step = b.records[k]
        for name, (rate, _) in arms.items():
            d = T.compare(allora, cells[name], b, record=k, name=f"allora − {name} @ {step}")
            d.update(kind="allora", rate=rate, step=step)
            diffs.append(d)
            if rate > 0:
                d = T.compare(cells[name], cells[crossover.CONTROL], b, record=k,
                              name=f"{name} − {crossover.CONTROL} @ {step}")
                d.update(kind="dropout", rate=rate, step=step)
                diffs.append(d)
    diffs = T.holm(diffs)
    return {"steps": b.records[1:],
            "scores": {n: [float(np.mean(r["points"][k])) for k in range(len(b.records))]
                       for n, r in {"allora": allora, **cells}.items()},
            "diffs": [{k: d[k] for k in ("name", "kind", "rate", "step", "mean", "lo", "hi", "p", "p_adjusted",
                                         "win", "edge")} for d in diffs],
            "table_md": stats.markdown_table(["comparison", "mean [95% CI] (points)", "p (Holm)", "decision"],
                                             T.diff_rows(diffs)),
            "base": T.base_summary(b.fast)}


def verdict(m: dict) -> str:
    diffs = m["diffs"]
    a_ok = not any(d["kind"] == "allora" and d["win"] == -1 for d in diffs)
    helped = {d["step"] for d in diffs if d["kind"] == "dropout" and d["win"] == 1}
    beats_zero = {d["step"] for d in diffs if d["kind"] == "allora" and d["rate"] == 0 and d["win"] == 1}
    b_ok = bool(helped) and helped <= beats_zero
    if a_ok and b_ok:
        return "supported"
    return "partly supported" if (a_ok or b_ok) else "not supported"


def plot(record: dict):
    """Test points against the budget: ALLoRA and LoRA at every dropout rate (points: higher is better)."""
    data = record["measurements"]
    fig, ax = figure(figsize=(7.5, 3.8))
    steps = [0] + list(data["steps"])
    for name, pts in data["scores"].items():
        ax.plot(steps, pts, marker="o", lw=2.2 if name == "allora" else 1.2, label=name)
    ax.set_xlabel("fine-tuning budget T (steps)")
    ax.set_ylabel("test points (100 (1 − loss / base))")
    ax.set_title("transformer rung: ALLoRA against LoRA with and without dropout")
    legend(ax)
    return fig


def _d(kind, rate, step, win):
    return {"kind": kind, "rate": rate, "step": step, "win": win}


VERDICT_EXAMPLES = [
    ({"diffs": [_d("allora", 0.0, 50, 1), _d("allora", 0.05, 50, 0), _d("dropout", 0.05, 50, 1)]}, "supported"),
    ({"diffs": [_d("allora", 0.0, 50, 0), _d("allora", 0.05, 50, 0), _d("dropout", 0.05, 50, 1)]},
     "partly supported"),                                 # (A) only: ALLoRA does not beat rate 0 where dropout helps
    ({"diffs": [_d("allora", 0.0, 50, 0), _d("dropout", 0.05, 50, 0)]}, "partly supported"),  # nothing to keep
    ({"diffs": [_d("allora", 0.0, 50, 1), _d("allora", 0.05, 50, -1), _d("dropout", 0.05, 50, 1)]},
     "partly supported"),                                 # (B) only
    ({"diffs": [_d("allora", 0.05, 50, -1), _d("dropout", 0.05, 50, 0)]}, "not supported"),
]
