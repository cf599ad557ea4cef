"""allora.implicit-regularization: on an over-parameterized OLS toy ALLoRA's train–test gap is smaller than LoRA's
without a worse test loss."""

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
             "train–test gap is smaller than LoRA's without dropout, at a test loss no worse (not by under-fitting), "
             "between it and LoRA with dropout or an explicit ridge.")
SOURCE = "paper"


WIDE_BUDGET = dataclasses.replace(protocol.FULL_BUDGET, max_extension=6)


@dataclasses.dataclass(frozen=True)
class Params:
    # the protocol's budget with a wider grid extension: LoRA without dropout over-fits here, and its selected
    # lr sits at the lower edge of the protocol's 3-step extension in most master seeds
    budget: protocol.Budget = WIDE_BUDGET
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
    b = p.budget
    text = (f"Over-parameterized OLS (d_in {p.d_in} > n_train {p.n_train}, d_out {p.d_out}, label noise "
            f"{fmt(p.noise)}, shift rank {p.shift_rank}), rank {p.rank}, protocol tuning ({b.draws} task draws × "
            f"{b.final_seeds} seeds, lr tuned on validation), {p.at} budget. Per run: gap = test loss − train loss "
            "and the test loss (a failed run counts as the base model). Under each of SGD and Adam two paired "
            "comparisons of ALLoRA against LoRA without dropout (exact sign-flip test, draws as groups, every "
            f"draw must agree; Holm over all four; the lr grid extended by up to {b.max_extension} log2 steps at an "
            "edge, and a selected lr still at an edge makes both comparisons of that optimizer undecided): the gap (ALLoRA smaller: a win) and the test loss (ALLoRA "
            "larger: a loss). Control: under-fitting — a smaller gap from a worse fit is not regularization, so "
            "ALLoRA regularizes under an optimizer only if its gap is significantly smaller AND its test loss is "
            "not significantly larger than LoRA's. supported if it regularizes under both SGD and Adam; partly "
            "supported if under one; if under neither: inconclusive when an optimizer's comparisons are undecided "
            "(an edge), otherwise not supported.")
    if "lora-dropout" in p.methods:
        text += (f" Also reported: LoRA with input dropout {1 - p.keep:.2g} and the matching explicit ridge, and "
                 "whether ALLoRA's mean gap lies between them and LoRA's.")
    return text


def ridge_objective(model, frozen, params, X, Y, key, *, keep):
    """LoRA's loss plus the marginalized input-dropout penalty (keep q) as an explicit ridge:
    ``0.5 (1−q)/q Σ_j (XᵀX/n)_jj ||(s·BA)_{:,j}||²`` (Srivastava et al. 2014 §9.1)."""
    return models.loss(model, frozen, params, X, Y) + dropout_theory.penalty(params, X, keep, "input", model.cfg.s)


def draw_task(p: Params, draw_seed: int) -> protocol.Task:
    """The over-parameterized toy drawn from one data seed."""
    t = teacher_student(seed=draw_seed, d_in=p.d_in, d_out=p.d_out, n_train=p.n_train, n_test=p.n_test,
                        shift_rank=p.shift_rank, noise=p.noise)
    return protocol.Task("overparam", lambda cfg: models.LinearLoRA(cfg), t.W0, t.data, t.data_val, p.rank,
                         "regression")


@functools.lru_cache(maxsize=None)
def overparam_results(name: str, seed: int, p: Params) -> dict:
    """The protocol for one of the compared methods on the over-parameterized toy (the master seed's task
    draws), both optimizers."""
    draws = [draw_task(p, d) for d in protocol.draw_seeds(seed, p.budget)]
    objective = None
    if name == "allora":
        cfg = protocol.method_config("allora", p.rank)
    else:
        keep = p.keep if name == "lora-dropout" else 1.0
        cfg = LoraConfig(rank=p.rank, alpha=p.lora_alpha, keep=keep)
        objective = functools.partial(ridge_objective, keep=p.keep) if name == "lora-ridge" else None
    tr = protocol.make_trainer(draws[0], "lora", p.budget, cfg=cfg, objective=objective)
    return {o: protocol.tune_and_test(draws, "lora", o, seed, p.budget, trainer=tr) for o in protocol.OPTIMIZERS}


def _per_run(r: dict):
    """Test loss and gap per final run, a failed run counted as the base model."""
    f = np.asarray(r["failed"])
    test = np.where(f, r["test_loss0"], r["test_loss"])
    return test, test - np.where(f, r["train_loss0"], r["train_loss"])


def measure(p: Params, seed: int) -> dict:
    res = {n: overparam_results(n, seed, p) for n in p.methods}
    out, rows, family = {}, [], []
    for o in protocol.OPTIMIZERS:
        gaps, tests = {}, {}
        for n in p.methods:
            tests[n], gaps[n] = _per_run(res[n][o][p.at])
        groups = np.asarray(res["allora"][o][p.at]["groups"])
        if not np.array_equal(groups, np.asarray(res["lora-d0"][o][p.at]["groups"])):
            raise ValueError("groups: ALLoRA's and LoRA's runs are not paired by draw")
        # a − b > 0 is ALLoRA's advantage in both: LoRA's gap (test loss) minus ALLoRA's
        for stat, vals in (("gap", gaps), ("test_loss", tests)):
            d = stats.paired_difference(vals["lora-d0"], vals["allora"], groups=groups)
            edge = bool(res["allora"][o][p.at]["at_edge"] or res["lora-d0"][o][p.at]["at_edge"])
            d.update(optimizer=o, statistic=stat, a="lora-d0", b="allora", edge=edge)
            family.append(d)
        entry = {"gap": {n: stats.describe(g) for n, g in gaps.items()},
                 "failed_runs": {n: res[n][o][p.at]["n_failed"] for n in p.methods},
                 "test_loss": {n: stats.describe(tests[n]) for n in p.methods},
                 "lr": {n: res[n][o][p.at]["lr"] for n in p.methods},
                 "at_edge": {n: bool(res[n][o][p.at]["at_edge"]) for n in p.methods}}
        if "lora-dropout" in gaps:
            lo = min(gaps["lora-dropout"].mean(), gaps["lora-ridge"].mean())
            entry["between"] = bool(lo <= gaps["allora"].mean() <= gaps["lora-d0"].mean())
        out[o] = entry
        for n in p.methods:
            rows.append([o, n, stats.mean_std(gaps[n]), stats.mean_std(tests[n]), f"{entry['lr'][n]:g}",
                         res[n][o][p.at]["n_failed"]])
    family = stats.compare_all(family, method="holm")
    for d in family:
        if d["edge"]:   # the protocol's rule: a selected lr still at a grid edge is a win for neither side
            d["win"] = 0
        o = out[d["optimizer"]]
        o[f"lora_d0_minus_allora_{d['statistic']}"] = d
    for o in protocol.OPTIMIZERS:
        e = out[o]
        e["edge"] = bool(e["lora_d0_minus_allora_gap"]["edge"])
        e["allora_smaller_gap"] = e["lora_d0_minus_allora_gap"]["win"] == 1
        e["allora_worse_test"] = e["lora_d0_minus_allora_test_loss"]["win"] == -1
        e["regularizes"] = bool(e["allora_smaller_gap"] and not e["allora_worse_test"])
        e["underfits"] = bool(e["allora_smaller_gap"] and e["allora_worse_test"])
    out["table_md"] = stats.markdown_table(["optimizer", "method", "train–test gap (test − train loss)",
                                            "test loss", "selected lr", "failed runs"], rows)
    out["tests_md"] = stats.markdown_table(
        ["optimizer", "statistic", "LoRA (no dropout) − ALLoRA [95% CI], draws, p_holm, result"],
        [[d["optimizer"], d["statistic"], stats.ci_text(d)] for d in family])
    return out


def verdict(m: dict) -> str:
    n = sum(bool(m[o]["regularizes"]) for o in protocol.OPTIMIZERS)
    if n:
        return "supported" if n == 2 else "partly supported"
    return "inconclusive" if any(m[o]["edge"] for o in protocol.OPTIMIZERS) else "not supported"


def plot(record: dict):
    """Train–test gap and test loss per method (mean ± std over draws × seeds), SGD and Adam side by side."""
    data = record["measurements"]
    names = [n for n in record["config"]["setup"]["methods"] if n in data["sgd"]["gap"]]
    fig, axes = figure(1, 2, figsize=(11, 4.2))
    x = np.arange(len(names))
    for ax, key, label in ((axes[0], "gap", "test loss − train loss"), (axes[1], "test_loss", "test loss")):
        for k, o in enumerate(protocol.OPTIMIZERS):
            g = data[o][key]
            ax.bar(x + (k - 0.5) * 0.4, [g[n]["mean"] for n in names], 0.4, yerr=[g[n]["std"] for n in names],
                   label=o.upper(), capsize=3)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks(x, names)
        ax.set_ylabel(f"{label} (mean ± std)")
    axes[0].set_title(f"train–test gap, {record['config']['setup']['at']} budget")
    axes[1].set_title("test loss (the under-fitting control)")
    legend(axes[0])
    return fig


def _case(sgd, adam):
    """``sgd``/``adam``: (gap significantly smaller, test loss significantly worse, lr at an edge)."""
    def one(gap, worse, edge=False):
        gap, worse = gap and not edge, worse and not edge   # an edge makes both comparisons ties
        return {"allora_smaller_gap": gap, "allora_worse_test": worse, "regularizes": gap and not worse,
                "edge": edge}
    return {"sgd": one(*sgd), "adam": one(*adam)}


VERDICT_EXAMPLES = [
    (_case((True, False), (True, False)), "supported"),
    (_case((True, False), (True, True)), "partly supported"),    # Adam: smaller gap but worse test (under-fits)
    (_case((False, False), (True, False)), "partly supported"),
    (_case((True, False), (True, False, True)), "partly supported"),   # Adam undecided (edge), SGD regularizes
    (_case((True, True), (True, True)), "not supported"),        # a smaller gap from under-fitting is not enough
    (_case((False, False), (False, False)), "not supported"),
    (_case((False, False), (True, False, True)), "inconclusive"),  # no regularization shown, Adam undecided
]
