"""transfer.zeroinit-escape: on the transformer, does ALLoRA leave the B = 0 start faster than LoRA?"""

from __future__ import annotations

import dataclasses

import numpy as np

from toyllora.claims import Setup
from toyllora.claims.allora._common import EFFECT
from toyllora.claims.transfer import _common as T
from toyllora.plotting import figure, legend
from toyllora.protocol import stats

STATEMENT = ("On a pre-trained transformer, ALLoRA escapes the degenerate B = 0 start faster than LoRA: after "
             "the first short budget it is further along than LoRA with the same forward function (s = 1, no "
             "dropout), under SGD and under Adam; non-zero inits (Init[B], PiSSA) are reported beside LoRA's "
             "Init[A].")
SOURCE = "paper"
COUNTERPARTS = ("zeroinit.escape-time",)
CLAIM_PAIR = ("allora", "lora-s1-d0")
INIT_PAIRS = (("init_b", "lora"), ("pissa", "lora"))


@dataclasses.dataclass(frozen=True)
class Params:
    budget: T.Budget = T.Budget()
    optimizers: tuple = ("sgd", "adam")
    record: int = 1          # the early budget: record index (step = record · stride)
    init_optimizers: tuple = ("adam",)   # where the non-zero inits are run too (reported, not in the verdict)


SETUP = Setup(full=Params(), fast=Params(budget=T.Budget(fast=True, steps=20, stride=10, batch=8, n_train=32,
                                                         n_val=16, n_test=16, draws=1, tune_seeds=1,
                                                         score_seeds=2, lr_points=2, max_extend=0),
                                         optimizers=("adam",), init_optimizers=()))


def rule(p: Params) -> str:
    step = p.record * p.budget.stride
    return (f"Protocol of the transformer rung ({T.budget_text(p.budget)}), task 'shifted'. The escape "
            f"statistic: test points after the first {step} steps, the lr picked for that budget on the "
            "validation runs. Claim comparison per optimizer ("
            f"{', '.join(p.optimizers)}): ALLoRA (eta² = 4, B = 0) − LoRA with s = 1 and no dropout (the control: "
            "the same init and forward function, without the adaptive factor), paired by draw and seed, exact "
            "sign-flip test with draws as groups; reported beside it (under "
            f"{', '.join(p.init_optimizers) or 'no optimizer'}): Init[B] − Init[A] and PiSSA − Init[A] (LoRA, s = 4, "
            "dropout 0.05) — is B = 0 a slow start at all? Holm over all the comparisons; an edge "
            "pick is a tie. With W claim comparisons won and L lost out of N: supported if W = N; partly "
            f"supported if 0 < W < N; not supported if W = 0 and every claim comparison is lost or has its 95% "
            f"interval's upper end below {EFFECT:g} points; inconclusive otherwise.")


def measure(p: Params, seed: int) -> dict:
    b, k = p.budget, p.record
    diffs, scores = [], {}
    for opt in p.optimizers:
        pairs = (CLAIM_PAIR,) + (INIT_PAIRS if opt in p.init_optimizers else ())
        ms = sorted({m for pair in pairs for m in pair})
        res = {m: T.cell(m, opt, "shifted", seed, b) for m in ms}
        scores[opt] = {m: T.summary(r, k) for m, r in res.items()}
        for a, c in pairs:
            d = T.compare(res[a], res[c], b, record=k, name=f"{opt}: {a} − {c}")
            d["claim"] = (a, c) == CLAIM_PAIR
            diffs.append(d)
    diffs = T.holm(diffs)
    claim = [d for d in diffs if d["claim"]]
    return {"step": k * b.stride, "margin": EFFECT, "scores": scores,
            "claim": {"n": len(claim), "wins": sum(d["win"] == 1 for d in claim),
                      "losses": sum(d["win"] == -1 for d in claim),
                      "settled_against": sum(d["win"] == -1 or d["hi"] < EFFECT for d in claim)},
            "diffs": [{key: d[key] for key in ("name", "claim", "mean", "lo", "hi", "p", "p_adjusted", "win", "edge",
                                               "lr_a", "lr_b", "n")} for d in diffs],
            "table_md": stats.markdown_table(["comparison", "mean [95% CI] (points)", "p (Holm)", "decision"],
                                             T.diff_rows(diffs)),
            "base": T.base_summary(b.fast)}


def verdict(m: dict) -> str:
    c = m["claim"]
    if c["wins"] == c["n"] and c["n"] > 0:
        return "supported"
    if c["wins"] > 0:
        return "partly supported"
    return "not supported" if c["settled_against"] == c["n"] else "inconclusive"


def plot(record: dict):
    """Early-budget points per method and optimizer."""
    data = record["measurements"]
    fig, ax = figure(figsize=(8, 3.8))
    opts = list(data["scores"])
    methods = sorted({m for o in opts for m in data["scores"][o]})
    x = np.arange(len(opts))
    w = 0.8 / len(methods)
    for j, m in enumerate(methods):
        ax.bar(x + (j - len(methods) / 2 + 0.5) * w, [data["scores"][o].get(m, {}).get("points", np.nan) for o in opts],
               w, label=m)
    ax.set_xticks(x, opts)
    ax.set_ylabel(f"test points after {data['step']} steps")
    ax.set_title("transformer rung: escape from the start (higher = further along)")
    legend(ax)
    return fig


def _case(n, wins, losses, settled):
    return {"claim": {"n": n, "wins": wins, "losses": losses, "settled_against": settled}}


VERDICT_EXAMPLES = [
    (_case(2, 2, 0, 0), "supported"),
    (_case(2, 1, 0, 0), "partly supported"),
    (_case(2, 1, 1, 1), "partly supported"),
    (_case(2, 0, 1, 2), "not supported"),
    (_case(2, 0, 0, 2), "not supported"),
    (_case(2, 0, 0, 1), "inconclusive"),
]
