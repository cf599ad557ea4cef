"""allora.rank-sweep: ALLoRA against LoRA (alpha = 16 fixed) at every rank r = 4 … 64."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from toyllora import models, protocol
from toyllora.claims import Setup, fmt
from toyllora.claims.allora._common import ahead_of, diff_table, tally_example
from toyllora.data import teacher_student
from toyllora.plotting import figure, legend
from toyllora.protocol import stats

STATEMENT = "ALLoRA's advantage over LoRA holds at every rank r = 4 … 64."
SOURCE = "paper"
METHODS = ("lora", "allora")


@dataclasses.dataclass(frozen=True)
class Params:
    budget: protocol.Budget = protocol.FULL_BUDGET
    ranks: tuple[int, ...] = (4, 8, 16, 32, 64)
    d: int = 64                    # the OLS toy is d × d
    n_train: int = 256
    n_test: int = 256
    shift_rank: int = 32
    spectrum: tuple[float, float] = (1.0, 0.1)   # the shift's singular values, linearly from the first to the second
    noise: float = 0.1
    lora_alpha: float = 16.0       # fixed, so s = alpha / r


SETUP = Setup(full=Params(), fast=Params(budget=protocol.FAST_BUDGET, ranks=(4, 64)))


def rule(p: Params) -> str:
    return (f"Same protocol on an OLS toy {p.d}×{p.d} with a rank-{p.shift_rank} shift (singular values "
            f"{fmt(p.spectrum[0])} → {fmt(p.spectrum[1])}) at the ranks {fmt(p.ranks)}; LoRA alpha = "
            f"{fmt(p.lora_alpha)} fixed (s = {fmt(p.lora_alpha)}/r), dropout {1 - protocol.KEEP:.2g}; ALLoRA eta² = "
            f"{protocol.ETA2['allora']:g}. At each rank, over its (budget × optimizer) cells, ALLoRA is ahead if its "
            "significant wins (95% bootstrap CI of the paired difference > 0) outnumber its significant losses. "
            "supported if ahead at every rank; partly supported if at some; not supported if at none.")


@functools.lru_cache(maxsize=None)
def rank_task(seed: int, p: Params):
    return teacher_student(seed=seed, d_in=p.d, d_out=p.d, n_train=p.n_train, n_test=p.n_test,
                           shift_rank=p.shift_rank, spectrum=np.linspace(*p.spectrum, p.shift_rank), noise=p.noise)


@functools.lru_cache(maxsize=None)
def rank_results(rank: int, method: str, seed: int, p: Params) -> dict:
    """The protocol for one (rank, method) on the rank-sweep toy, both optimizers."""
    t = rank_task(seed, p)
    task = protocol.Task(f"ols{p.d}-r{rank}", lambda cfg: models.LinearLoRA(cfg), t.W0, t.data, t.data_val, rank,
                         "regression")
    cfg = protocol.method_config(method, rank, alpha=p.lora_alpha)
    tr = protocol.make_trainer(task, method, p.budget, cfg=cfg)
    return {o: protocol.tune_and_test(task, method, o, seed, p.budget, trainer=tr) for o in protocol.OPTIMIZERS}


def measure(p: Params, seed: int) -> dict:
    results = {f"r={r}": {m: rank_results(r, m, seed, p) for m in METHODS} for r in p.ranks}
    table, diffs = diff_table(results, [("allora", "lora")], seed)
    per_rank = {k: stats.tally([d for d in diffs if d["cell"].startswith(k + "/")]) for k in results}
    means = {k: {m: {f"{b}/{o}": float(results[k][m][o][b]["scores"].mean()) for b in protocol.BUDGETS
                     for o in protocol.OPTIMIZERS} for m in METHODS} for k in results}
    return {"per_rank": per_rank, "means": means, "diffs": diffs, "table_md": table}


def verdict(m: dict) -> str:
    ahead = [ahead_of(t) for t in m["per_rank"].values()]
    if all(ahead):
        return "supported"
    return "partly supported" if any(ahead) else "not supported"


def plot(record: dict):
    """Mean test score against the rank, LoRA and ALLoRA, per budget and optimizer."""
    data = record["measurements"]
    ks = sorted(data["means"], key=lambda k: int(k.split("=")[1]))   # a JSON record sorts the keys as text
    rs = [int(k.split("=")[1]) for k in ks]
    fig, axes = figure(1, 2, figsize=(10, 4.2))
    for ax, b in zip(axes, protocol.BUDGETS):
        for o, st in (("sgd", "-"), ("adam", "--")):
            for m, c in (("lora", "tab:blue"), ("allora", "tab:orange")):
                ax.plot(rs, [data["means"][k][m][f"{b}/{o}"] for k in ks], st, color=c, marker="o",
                        label=f"{m}, {o}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(rs, [str(r) for r in rs])
        ax.set_xlabel("rank r")
        ax.set_title(f"{b} budget")
    axes[0].set_ylabel("test score (points, mean over seeds)")
    legend(axes[1])
    return fig


def _case(*wins_losses):
    return {"per_rank": {f"r={4 * 2 ** i}": tally_example(4, w, l) for i, (w, l) in enumerate(wins_losses)}}


VERDICT_EXAMPLES = [
    (_case((2, 1), (4, 0), (1, 0)), "supported"),
    (_case((2, 1), (2, 2), (1, 0)), "partly supported"),   # wins = losses at one rank: not ahead there
    (_case((1, 0), (0, 0), (0, 3)), "partly supported"),
    (_case((1, 1), (0, 0), (0, 3)), "not supported"),
]
