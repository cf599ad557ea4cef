"""allora.implicit-regularization: on an over-parameterized OLS toy ALLoRA's train–test gap is smaller than LoRA's."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from toyllora import models, protocol
from toyllora.claims import Setup, fmt
from toyllora.config import LoraConfig
from toyllora.data import teacher_student
from toyllora.plotting import figure, legend
from toyllora.protocol import stats
from toyllora.theory import dropout as dropout_theory

STATEMENT = ("ALLoRA regularizes implicitly (the paper's conjecture): on an over-parameterized problem its "
             "train–test gap is smaller than LoRA's without dropout, between it and LoRA with dropout or an "
             "explicit ridge.")
SOURCE = "paper"


@dataclasses.dataclass(frozen=True)
class Params:
    budget: protocol.Budget = protocol.FULL_BUDGET
    # lora-d0: LoRA without dropout; lora-dropout: with input dropout (keep); lora-ridge: its marginalized penalty
    methods: tuple[str, ...] = ("lora-d0", "allora", "lora-dropout", "lora-ridge")
    d_in: int = 64
    d_out: int = 8
    n_train: int = 32
    n_test: int = 256
    shift_rank: int = 4
    noise: float = 0.5
    rank: int = 4
    lora_alpha: float = 16.0
    keep: float = 0.9              # dropout keep of lora-dropout, and the ridge's strength (1 − q)/q
    at: str = "long"               # the budget whose runs are compared


SETUP = Setup(full=Params(), fast=Params(budget=protocol.FAST_BUDGET, methods=("lora-d0", "allora")))


def rule(p: Params) -> str:
    text = (f"Over-parameterized OLS (d_in {p.d_in} > n_train {p.n_train}, d_out {p.d_out}, label noise "
            f"{fmt(p.noise)}, shift rank {p.shift_rank}), rank {p.rank}, protocol tuning, {p.at} budget. Gap = test "
            "loss − train loss per seed (a failed run counts as the base model). supported if the paired bootstrap "
            "95% CI of gap(LoRA, no dropout) − gap(ALLoRA) lies above 0 under both SGD and Adam; partly supported "
            "if under one; not supported if under neither.")
    if "lora-dropout" in p.methods:
        text += (f" Also reported: LoRA with input dropout {1 - p.keep:.2g} and the matching explicit ridge, and "
                 "whether ALLoRA's mean gap lies between them and LoRA's.")
    return text


def ridge_objective(model, frozen, params, X, Y, key, *, keep):
    """LoRA's loss plus the marginalized input-dropout penalty (keep q) as an explicit ridge:
    ``0.5 (1−q)/q Σ_j (XᵀX/n)_jj ||(s·BA)_{:,j}||²`` (Srivastava et al. 2014 §9.1)."""
    return models.loss(model, frozen, params, X, Y) + dropout_theory.penalty(params, X, keep, "input", model.cfg.s)


@functools.lru_cache(maxsize=None)
def overparam_results(name: str, seed: int, p: Params) -> dict:
    """The protocol for one of the compared methods on the over-parameterized toy, both optimizers."""
    t = teacher_student(seed=seed, d_in=p.d_in, d_out=p.d_out, n_train=p.n_train, n_test=p.n_test,
                        shift_rank=p.shift_rank, noise=p.noise)
    task = protocol.Task("overparam", lambda cfg: models.LinearLoRA(cfg), t.W0, t.data, t.data_val, p.rank,
                         "regression")
    objective = None
    if name == "allora":
        cfg = protocol.method_config("allora", p.rank)
    else:
        keep = p.keep if name == "lora-dropout" else 1.0
        cfg = LoraConfig(rank=p.rank, alpha=p.lora_alpha, keep=keep)
        objective = functools.partial(ridge_objective, keep=p.keep) if name == "lora-ridge" else None
    tr = protocol.make_trainer(task, "lora", p.budget, cfg=cfg, objective=objective)
    return {o: protocol.tune_and_test(task, "lora", o, seed, p.budget, trainer=tr) for o in protocol.OPTIMIZERS}


def measure(p: Params, seed: int) -> dict:
    res = {n: overparam_results(n, seed, p) for n in p.methods}
    out, rows = {}, []
    for o in protocol.OPTIMIZERS:
        gaps, tests = {}, {}
        for n in p.methods:  # the failure rule: a failed run counts as the base model (no fine-tuning)
            r = res[n][o][p.at]
            f = np.asarray(r["failed"])
            tests[n] = np.where(f, r["test_loss0"], r["test_loss"])
            gaps[n] = tests[n] - np.where(f, r["train_loss0"], r["train_loss"])
        d = stats.paired_difference(gaps["lora-d0"], gaps["allora"], seed=seed)
        entry = {"gap": {n: stats.describe(g) for n, g in gaps.items()}, "lora_d0_minus_allora": d,
                 "allora_smaller_gap": d["win"] == 1,
                 "failed_runs": {n: res[n][o][p.at]["n_failed"] for n in p.methods},
                 "test_loss": {n: stats.describe(tests[n]) for n in p.methods}}
        if "lora-dropout" in gaps:
            lo = min(gaps["lora-dropout"].mean(), gaps["lora-ridge"].mean())
            entry["between"] = bool(lo <= gaps["allora"].mean() <= gaps["lora-d0"].mean())
        out[o] = entry
        for n in p.methods:
            rows.append([o, n, stats.mean_std(gaps[n]), stats.mean_std(tests[n]), res[n][o][p.at]["n_failed"]])
    out["table_md"] = stats.markdown_table(["optimizer", "method", "train–test gap (test − train loss)",
                                            "test loss", "failed runs"], rows)
    return out


def verdict(m: dict) -> str:
    n = sum(bool(m[o]["allora_smaller_gap"]) for o in protocol.OPTIMIZERS)
    return "supported" if n == 2 else ("partly supported" if n == 1 else "not supported")


def plot(record: dict):
    """Train–test gap per method (mean ± std over seeds), SGD and Adam side by side."""
    data = record["measurements"]
    names = [n for n in record["config"]["setup"]["methods"] if n in data["sgd"]["gap"]]
    fig, ax = figure(figsize=(8, 4.2))
    x = np.arange(len(names))
    for k, o in enumerate(protocol.OPTIMIZERS):
        g = data[o]["gap"]
        ax.bar(x + (k - 0.5) * 0.4, [g[n]["mean"] for n in names], 0.4, yerr=[g[n]["std"] for n in names],
               label=o.upper(), capsize=3)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x, names)
    ax.set_ylabel("test loss − train loss (mean ± std over seeds)")
    ax.set_title(f"over-parameterized OLS: train–test gap, {record['config']['setup']['at']} budget")
    legend(ax)
    return fig


def _case(sgd, adam):
    return {"sgd": {"allora_smaller_gap": sgd}, "adam": {"allora_smaller_gap": adam}}


VERDICT_EXAMPLES = [
    (_case(True, True), "supported"),
    (_case(True, False), "partly supported"),
    (_case(False, True), "partly supported"),
    (_case(False, False), "not supported"),
]
