"""allora.rank-sweep: ALLoRA against LoRA (alpha = 16 fixed) at every rank r = 4 … 64."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from toyllora import models, protocol
from toyllora.claims import Setup, fmt
from toyllora.claims.allora._common import (ahead_of, cells, compare, decide, diff_table, entry, tally,
                                            tally_example)
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


SETUP = Setup(full=Params(), fast=Params(budget=protocol.FAST_BUDGET, ranks=(4,), d=16, n_train=64, n_test=64,
                                         shift_rank=8))


def rule(p: Params) -> str:
    return (f"Same protocol on an OLS toy {p.d}×{p.d} with a rank-{p.shift_rank} shift (singular values "
            f"{fmt(p.spectrum[0])} → {fmt(p.spectrum[1])}), drawn {p.budget.draws} times, at the ranks "
            f"{fmt(p.ranks)}; LoRA alpha = {fmt(p.lora_alpha)} fixed (s = {fmt(p.lora_alpha)}/r, so under SGD "
            f"LoRA's effective step scales with s² while ALLoRA's is at most eta times the base rate), dropout "
            f"{1 - protocol.KEEP:.2g}; ALLoRA eta² = {protocol.ETA2['allora']:g}. Control: the grid extension "
            f"(up to {p.budget.max_extension} log2 steps beyond an edge), with each rank's selections reported "
            "interior or not; a cell where either lr is still at an edge counts as a tie, so an edge cannot "
            "make a win. Per cell (rank × budget × optimizer), exact sign-flip test of ALLoRA − LoRA paired by "
            "draw and seed, Holm over all cells of all ranks. At each rank ALLoRA is ahead if its significant "
            "wins outnumber its significant losses. supported if ahead at every rank; partly supported if at "
            "some; not supported if at none.")


@functools.lru_cache(maxsize=None)
def rank_task(draw_seed: int, p: Params):
    return teacher_student(seed=draw_seed, d_in=p.d, d_out=p.d, n_train=p.n_train, n_test=p.n_test,
                           shift_rank=p.shift_rank, spectrum=np.linspace(*p.spectrum, p.shift_rank), noise=p.noise)


@functools.lru_cache(maxsize=None)
def rank_results(rank: int, method: str, seed: int, p: Params) -> dict:
    """The protocol for one (rank, method) on the rank-sweep toy, its master seed's draws, both optimizers."""
    draws = []
    for ds in protocol.draw_seeds(seed, p.budget):
        t = rank_task(ds, p)
        draws.append(protocol.Task(f"ols{p.d}-r{rank}", lambda cfg: models.LinearLoRA(cfg), t.W0, t.data,
                                   t.data_val, rank, "regression"))
    cfg = protocol.method_config(method, rank, alpha=p.lora_alpha)
    tr = protocol.make_trainer(draws[0], method, p.budget, cfg=cfg)
    return {o: protocol.tune_and_test(draws, method, o, seed, p.budget, trainer=tr) for o in protocol.OPTIMIZERS}


def measure(p: Params, seed: int) -> dict:
    keys = [f"r={r}" for r in p.ranks]
    res = {k: {m: rank_results(r, m, seed, p) for m in METHODS} for k, r in zip(keys, p.ranks)}
    diffs = decide([compare(res[k]["allora"], res[k]["lora"], c, "allora", "lora") for k in keys
                    for c in cells((k,))])
    per_rank = {k: tally([d for d in diffs if d["task"] == k]) for k in keys}
    means = {k: {m: {f"{b}/{o}": float(np.mean(res[k][m][o][b]["scores"])) for b in protocol.BUDGETS
                     for o in protocol.OPTIMIZERS} for m in METHODS} for k in keys}
    interior = {k: {m: {f"{b}/{o}": not res[k][m][o][b]["at_edge"] for b in protocol.BUDGETS
                        for o in protocol.OPTIMIZERS} for m in METHODS} for k in keys}
    rows = []
    for k in keys:
        for m in METHODS:
            for c in cells((k,)):
                e = entry(res[k][m], c)
                rows.append([k, m, f"{c[1]}/{c[2]}", f"{e['lr']:.4g}", ", ".join(f"{x:.3g}" for x in
                                                                                   (min(res[k][m][c[2]]["grid"]["lr"]),
                                                                                    max(res[k][m][c[2]]["grid"]["lr"]))),
                             f"{e['extended']['below']}/{e['extended']['above']}", "no" if e["at_edge"] else "yes",
                             f"{np.mean(e['scores']):.2f}"])
    sel = stats.markdown_table(["rank", "method", "budget/opt", "selected lr", "grid tried (min, max)",
                                "extended below/above", "interior", "test mean"], rows)
    return {"per_rank": per_rank, "means": means, "interior": interior,
            "interior_cells": {k: sum(v for m in METHODS for v in interior[k][m].values()) for k in keys},
            "diffs": diffs, "table_md": diff_table(diffs), "selection_md": sel}


def verdict(m: dict) -> str:
    ahead = [ahead_of(t) for t in m["per_rank"].values()]
    if all(ahead):
        return "supported"
    return "partly supported" if any(ahead) else "not supported"


def plot(record: dict):
    """Mean test score against the rank, LoRA and ALLoRA, per budget and optimizer (hollow: lr at an edge)."""
    data = record["measurements"]
    ks = sorted(data["means"], key=lambda k: int(k.split("=")[1]))   # a JSON record sorts the keys as text
    rs = [int(k.split("=")[1]) for k in ks]
    fig, axes = figure(1, 2, figsize=(10, 4.2))
    for ax, b in zip(axes, protocol.BUDGETS):
        for o, st in (("sgd", "-"), ("adam", "--")):
            for m, c in (("lora", "tab:blue"), ("allora", "tab:orange")):
                key = f"{b}/{o}"
                ys = [data["means"][k][m][key] for k in ks]
                ax.plot(rs, ys, st, color=c, label=f"{m}, {o}")
                for r, y, k in zip(rs, ys, ks):
                    ax.plot(r, y, "o", color=c, ms=4, mfc=c if data["interior"][k][m][key] else "white")
        ax.set_xscale("log", base=2)
        ax.set_xticks(rs, [str(r) for r in rs])
        ax.set_xlabel("rank r")
        ax.set_title(f"{b} budget (hollow: lr still at a grid edge)")
    axes[0].set_ylabel("test score (points, mean over draws × seeds)")
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
