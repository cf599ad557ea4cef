"""transfer.dropout-crossover: on the transformer, the step budget at which LoRA dropout starts to help."""

from __future__ import annotations

import dataclasses

import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.claims.allora._common import EFFECT
from toyllora.claims.transfer import _common as T
from toyllora.plotting import figure, legend
from toyllora.protocol import stats

STATEMENT = ("On a pre-trained transformer, LoRA dropout regularizes only after enough steps: below a budget T* "
             "it does not help (or hurts), above it, it helps — the 'limited steps' regime of flaw 1 has a size.")
SOURCE = "paper"
COUNTERPARTS = ("dropout.crossover",)
CONTROL = "lora-d0"


@dataclasses.dataclass(frozen=True)
class Params:
    budget: T.Budget = T.Budget()
    drop_rates: tuple = (0.05, 0.1)
    optimizer: str = "adam"


SETUP = Setup(full=Params(), fast=Params(budget=T.Budget(fast=True, steps=20, stride=10, batch=8, n_train=32,
                                                         n_val=16, n_test=16, draws=1, tune_seeds=1,
                                                         score_seeds=2, lr_points=2, max_extend=0),
                                         drop_rates=(0.05,)))


def arm(rate: float) -> str:
    return "lora" if rate == 0.05 else f"lora-drop{rate:g}"


def arm_config(rate: float, rank: int):
    return T.method_config("lora", rank).replace(keep=1.0 - rate)


def rule(p: Params) -> str:
    b = p.budget
    steps = fmt(tuple(b.records[1:]))
    return (f"Protocol of the transformer rung ({T.budget_text(b)}), task 'shifted', {p.optimizer}. LoRA (s = 4) "
            f"with input dropout at rates {fmt(p.drop_rates)} against the control, the same LoRA without dropout, "
            f"at every budget T in {steps} steps (the lr re-picked for each budget on validation, scored on fresh "
            "seeds). Per arm and budget: d(T) = points(dropout) − points(no dropout), exact sign-flip test with "
            "draws as groups, Holm over all arms × budgets; an edge pick is a tie. T* of an arm = the first budget "
            "where dropout significantly helps, reported with its bracket (previous budget, T*]. supported if "
            "some arm has a T* after the first budget and no significant loss after it (a crossover inside the "
            "budget); not supported if no arm helps at any budget and at the longest budget every arm's 95% "
            f"interval lies below {EFFECT:g} points, or if every arm helps from the first budget on (no "
            "limited-steps regime); inconclusive otherwise.")


def measure(p: Params, seed: int) -> dict:
    b = p.budget
    control = T.cell(CONTROL, p.optimizer, "shifted", seed, b)
    diffs, arms = [], {}
    for rate in p.drop_rates:
        name = arm(rate)
        cfg = None if name == "lora" else arm_config(rate, b.rank)
        res = T.cell(name, p.optimizer, "shifted", seed, b, cfg=cfg)
        arms[name] = res
        for k in range(1, len(b.records)):
            d = T.compare(res, control, b, record=k, name=f"{name} − {CONTROL} @ {b.records[k]}")
            d.update(arm=name, step=b.records[k])
            diffs.append(d)
    diffs = T.holm(diffs)
    crossing = {}
    for name in arms:
        ds = [d for d in diffs if d["arm"] == name]
        helps = [i for i, d in enumerate(ds) if d["win"] == 1]
        first = helps[0] if helps else None
        crossing[name] = {
            "t_star": ds[first]["step"] if first is not None else None,
            "bracket": [b.records[first] if first is not None else None, ds[first]["step"] if first is not None else None],
            "helps_from_first": bool(first == 0),
            "loss_after": bool(first is not None and any(d["win"] == -1 for d in ds[first:])),
            "last_hi": ds[-1]["hi"], "curve": [d["mean"] for d in ds], "lo": [d["lo"] for d in ds],
            "hi": [d["hi"] for d in ds]}
    return {"steps": b.records[1:], "margin": EFFECT, "crossing": crossing,
            "scores": {n: [float(np.mean(r["points"][k])) for k in range(len(b.records))] for n, r in
                       {CONTROL: control, **arms}.items()},
            "diffs": [{k: d[k] for k in ("name", "arm", "step", "mean", "lo", "hi", "p", "p_adjusted", "win", "edge")}
                      for d in diffs],
            "table_md": stats.markdown_table(["comparison", "mean [95% CI] (points)", "p (Holm)", "decision"],
                                             T.diff_rows(diffs)),
            "base": T.base_summary(b.fast)}


def verdict(m: dict) -> str:
    arms = list(m["crossing"].values())
    if any(a["t_star"] is not None and not a["helps_from_first"] and not a["loss_after"] for a in arms):
        return "supported"
    never = all(a["t_star"] is None for a in arms) and all(a["last_hi"] < m["margin"] for a in arms)
    always = all(a["helps_from_first"] for a in arms)
    return "not supported" if never or always else "inconclusive"


def plot(record: dict):
    """d(T) per dropout arm with its 95% interval; T* marked."""
    data = record["measurements"]
    fig, ax = figure(figsize=(7.5, 3.8))
    for name, c in data["crossing"].items():
        ax.errorbar(data["steps"], c["curve"], yerr=[np.subtract(c["curve"], c["lo"]), np.subtract(c["hi"], c["curve"])],
                    marker="o", capsize=3, label=f"{name} (T* = {c['t_star']})")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("fine-tuning budget T (steps)")
    ax.set_ylabel("points(dropout) − points(no dropout)")
    ax.set_title("transformer rung: when does LoRA dropout start to help?")
    legend(ax)
    return fig


def _arm(t_star, first=False, loss_after=False, last_hi=1.0):
    return {"t_star": t_star, "helps_from_first": first, "loss_after": loss_after, "last_hi": last_hi}


def _case(*arms):
    return {"margin": EFFECT, "crossing": {f"a{i}": a for i, a in enumerate(arms)}}


VERDICT_EXAMPLES = [
    (_case(_arm(50), _arm(None)), "supported"),
    (_case(_arm(50, loss_after=True), _arm(None, last_hi=0.2)), "inconclusive"),
    (_case(_arm(None, last_hi=0.2), _arm(None, last_hi=0.32)), "not supported"),
    (_case(_arm(None, last_hi=0.2), _arm(None, last_hi=0.33)), "inconclusive"),   # the margin is excluded
    (_case(_arm(25, first=True), _arm(25, first=True)), "not supported"),
    (_case(_arm(25, first=True), _arm(None)), "inconclusive"),
]
