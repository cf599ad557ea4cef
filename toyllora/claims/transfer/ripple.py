"""transfer.ripple: through a transformer's real norms and nonlinearities, does the scaling factor's effect
compound with depth, and does depth make fine-tuning more sensitive to s?"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from toyllora.claims import Setup, fmt
from toyllora.claims.transfer import _common as T
from toyllora.config import LoraConfig
from toyllora.models import transformer as tf
from toyllora.plotting import figure, legend
from toyllora.protocol import stats
from toyllora.train import Trainer, make_optimizer

STATEMENT = ("The ripple effect on a pre-trained transformer: with adapters in more layers, LoRA's fine-tuning "
             "result depends more on the scaling factor s (the lr tuned for every s); the relative change of "
             "the output and of the attention logits under LoRA updates is measured against the number of "
             "adapted layers and s beside it.")
SOURCE = "paper"
COUNTERPARTS = ("ripple.hurts",)


@dataclasses.dataclass(frozen=True)
class Params:
    budget: T.Budget = T.Budget()
    scales: tuple = (1.0, 16.0)
    optimizers: tuple = ("sgd", "adam")
    forward_scales: tuple = (1.0, 4.0, 16.0)
    forward_ratio: float = 0.025     # ||BA||_F / ||W||_F of each adapted matrix in the forward measurement
    forward_draws: int = 8           # random adapter draws


SETUP = Setup(full=Params(), fast=Params(budget=T.Budget(fast=True, steps=20, stride=10, batch=8, n_train=32,
                                                         n_val=16, n_test=16, draws=1, tune_seeds=1,
                                                         score_seeds=2, lr_points=2, max_extend=0),
                                         optimizers=("adam",), forward_scales=(1.0, 16.0), forward_draws=2))


def rule(p: Params) -> str:
    return (f"Protocol of the transformer rung ({T.budget_text(p.budget)}), task 'shifted'. LoRA without "
            f"dropout at s in {fmt(p.scales)}, adapting either the last block only (depth 1: nothing downstream "
            "to compound; the other blocks' adapters stay at B = 0, their updates masked) or every block (depth "
            f"L), under {', '.join(p.optimizers)}. Sensitivity to s at a depth: the s with the best and the "
            "worst selected validation loss are picked on the validation runs; on the fresh test runs (paired "
            "by draw and seed) a unit's sensitivity is log(test loss of the worst s / of the best s). Control: "
            "depth 1, and selection apart from scoring (with no effect of s the sensitivity is 0 in "
            "expectation). Per optimizer, sensitivity(depth L) − sensitivity(depth 1), exact sign-flip test "
            "with draws as groups, Holm over the optimizers; an edge pick of any s is a tie. supported: the "
            "sensitivity increases with depth under every optimizer; not supported: it increases under none "
            "and decreases under at least one; inconclusive: no significant change; partly supported "
            f"otherwise. Beside it (reported, not in the verdict): random adapters with ||BA|| = "
            f"{p.forward_ratio:g} ||W|| per adapted matrix, ΔW = s·BA for s in {fmt(p.forward_scales)}, in the "
            "first k blocks (k = 1..L): the relative change of the output logits and of every block's attention "
            "logits on the test inputs, and the compounding ratio R = change(all blocks) / Σ change(one block) "
            f"over {p.forward_draws} adapter draws (R > 1: the blocks' effects compound).")


# -- the fine-tuning sensitivity ---------------------------------------------------------------------------


def _masked_optimizer(name: str, adapted: frozenset):
    def opt(hp):
        mask = lambda params: {"blocks": tuple(jax.tree.map(lambda _: l not in adapted, blk)
                                               for l, blk in enumerate(params["blocks"]))}
        return optax.chain(make_optimizer(name, hp), optax.masked(optax.set_to_zero(), mask))
    return opt


@functools.lru_cache(maxsize=16)
def _trainer(s: float, depth: str, optimizer: str, b: T.Budget) -> Trainer:
    arch = T.arch_for("shifted", b.fast)
    adapted = frozenset([arch.layers - 1] if depth == "1" else range(arch.layers))
    cfg = LoraConfig(rank=b.rank, scaling=float(s), keep=1.0)
    model = tf.TransformerLoRA(cfg, arch, targets=b.targets)
    return Trainer(model, optimizer=_masked_optimizer(optimizer, adapted), steps=b.steps, stride=b.stride,
                   batch_size=b.batch, metrics=T.eval_metrics)


def lora_cell(s: float, depth: str, optimizer: str, seed: int, b: T.Budget) -> dict:
    """The protocol's cell of LoRA at scale ``s`` (no dropout) adapting the last block (``depth="1"``) or all
    (``"L"``); shared with transfer.ripple-performance. At s = 1 with every block adapted it is the protocol's
    ``lora-s1-d0`` (the same method: ``tests/test_transfer.py`` checks the runs agree), whose cell the other
    transfer claims compute anyway."""
    if depth == "L" and float(s) == 1.0:
        return T.cell("lora-s1-d0", optimizer, "shifted", seed, b)
    return T.cell(f"lora-s{s:g}-depth{depth}", optimizer, "shifted", seed, b, trainer=_trainer(s, depth, optimizer, b))


def _sensitivity(cells: dict, b: T.Budget):
    """Per unit log(loss worst s / loss best s), with best and worst picked on validation."""
    val = {s: float(np.min(c["val"][-1])) for s, c in cells.items()}
    best, worst = min(val, key=val.get), max(val, key=val.get)
    loss = lambda c: 1.0 - np.asarray(c["points"][-1]) / 100.0      # test loss / base model's
    return np.log(np.maximum(loss(cells[worst]), 1e-9) / np.maximum(loss(cells[best]), 1e-9)), best, worst


def _sensitivity_diffs(p: Params, seed: int):
    b = p.budget
    diffs, detail = [], {}
    for opt in p.optimizers:
        sens, cells_by_depth = {}, {}
        for depth in ("1", "L"):
            cells = {s: lora_cell(s, depth, opt, seed, b) for s in p.scales}
            sens[depth], best, worst = _sensitivity(cells, b)
            cells_by_depth[depth] = {"best_s": best, "worst_s": worst, "edge": any(c["at_edge"][-1] for c in cells.values()),
                                     "sensitivity": float(np.mean(sens[depth])),
                                     "scores": {f"{s:g}": T.summary(c) for s, c in cells.items()}}
        d = stats.paired_difference(sens["L"], sens["1"], groups=T.groups(b))
        d.update(name=f"{opt}: sensitivity(L) − sensitivity(1)", edge=cells_by_depth["1"]["edge"] or
                 cells_by_depth["L"]["edge"], optimizer=opt)
        diffs.append(d)
        detail[opt] = cells_by_depth
    return T.holm(diffs), detail


# -- the forward ripple ----------------------------------------------------------------------------------


def _trace(arch, weights, deltas, X):
    """Output logits and every block's attention logits with ``W + deltas[(l, t)]`` in place of ``W``."""
    att = {}

    def project(l, t, h):
        W = weights["blocks"][l][t]
        out = h @ (W + deltas.get((l, t), 0.0)).T
        if t in ("q", "k"):
            att[(l, t)] = out
        return out

    logits = tf.forward(arch, weights, project, X)
    n, T_, D = att[(0, "q")].shape
    H = arch.heads
    scores = [jnp.einsum("nthd,nshd->nhts", att[(l, "q")].reshape(n, T_, H, D // H),
                         att[(l, "k")].reshape(n, T_, H, D // H)) for l in range(arch.layers)]
    return logits, scores


@functools.partial(jax.jit, static_argnums=0)
def _trace_compiled(arch, weights, deltas, X):
    """:func:`_trace` compiled once: ``deltas`` always holds every adapted unit (zeros where unchanged)."""
    return _trace(arch, weights, deltas, X)


def _rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def forward_ripple(p: Params, seed: int) -> dict:
    b = p.budget
    pt = T.base_model(b.fast)
    arch, base = pt.arch, pt.base
    X = T.task_data("shifted", T.draw_seed(seed, 0), b.n_train, b.n_val, b.n_test).X_test[b.n_val:]
    L = arch.layers
    out = {f"{s:g}": {"out": np.zeros((p.forward_draws, L)), "att_last": np.zeros((p.forward_draws, L)),
                      "single": np.zeros((p.forward_draws, L))} for s in p.forward_scales}
    key = jax.random.key(10_000 + seed)
    for i in range(p.forward_draws):
        units = {}
        for l in range(L):
            for t in b.targets:
                key, ka, kb = jax.random.split(key, 3)
                W = base["blocks"][l][t]
                BA = jax.random.normal(kb, (W.shape[0], b.rank)) @ jax.random.normal(ka, (b.rank, W.shape[1]))
                units[(l, t)] = BA * (p.forward_ratio * jnp.linalg.norm(W) / jnp.linalg.norm(BA))
        if i == 0:
            logits0, scores0 = _trace_compiled(arch, base, {u: jnp.zeros_like(v) for u, v in units.items()}, X)
        for s in p.forward_scales:
            o = out[f"{s:g}"]
            for k in range(1, L + 1):
                logits, scores = _trace_compiled(arch, base, {u: (s if u[0] < k else 0.0) * v
                                                              for u, v in units.items()}, X)
                o["out"][i, k - 1] = _rel(logits, logits0)
                o["att_last"][i, k - 1] = _rel(scores[-1], scores0[-1])
            for l in range(L):
                logits, _ = _trace_compiled(arch, base, {u: (s if u[0] == l else 0.0) * v
                                                         for u, v in units.items()}, X)
                o["single"][i, l] = _rel(logits, logits0)
    res = {}
    for s, o in out.items():
        log_r = np.log(o["out"][:, -1] / o["single"].sum(axis=1))
        lo, hi = stats.bootstrap_ci(log_r) if len(log_r) > 1 else (float(log_r[0]), float(log_r[0]))
        res[s] = {"out": o["out"].mean(0).tolist(), "att_last": o["att_last"].mean(0).tolist(),
                  "compounding_ratio": float(np.exp(log_r.mean())), "ratio_lo": float(np.exp(lo)),
                  "ratio_hi": float(np.exp(hi))}
    return {"blocks": list(range(1, L + 1)), "by_s": res, "update_ratio": p.forward_ratio}


# -- the claim --------------------------------------------------------------------------------------------


def measure(p: Params, seed: int) -> dict:
    diffs, detail = _sensitivity_diffs(p, seed)
    keep = ("name", "optimizer", "mean", "lo", "hi", "p", "p_adjusted", "win", "edge", "n")
    return {"diffs": [{k: d[k] for k in keep} for d in diffs], "detail": detail,
            "increases": sum(d["win"] == 1 for d in diffs), "decreases": sum(d["win"] == -1 for d in diffs),
            "n": len(diffs), "forward": forward_ripple(p, seed), "base": T.base_summary(p.budget.fast),
            "table_md": stats.markdown_table(["comparison", "mean [95% CI] (log ratio)", "p (Holm)", "decision"],
                                             T.diff_rows(diffs))}


def verdict(m: dict) -> str:
    if m["increases"] == m["n"] and m["n"] > 0:
        return "supported"
    if m["increases"] == 0 and m["decreases"] > 0:
        return "not supported"
    if m["increases"] == 0 and m["decreases"] == 0:
        return "inconclusive"
    return "partly supported"


def plot(record: dict):
    """Left: the forward ripple (relative output change against adapted blocks, per s). Right: the tested
    difference of the sensitivity to s between depth L and depth 1, per optimizer, with its 95 % interval."""
    data = record["measurements"]
    fig, (ax1, ax2) = figure(ncols=2, figsize=(11, 4))
    fw = data["forward"]
    for s, r in sorted(fw["by_s"].items(), key=lambda kv: float(kv[0])):
        ax1.plot(fw["blocks"], r["out"], marker="o", label=f"s = {s} (R = {r['compounding_ratio']:.2f})")
    ax1.set_yscale("log")
    ax1.set_xlabel("adapted blocks (the first k)")
    ax1.set_ylabel("relative change of the output logits")
    ax1.set_title(f"random adapters, ||BA|| = {fw['update_ratio']:g} ||W||")
    legend(ax1)
    for i, d in enumerate(data["diffs"]):
        ax2.errorbar([d["mean"]], [i], xerr=[[d["mean"] - d["lo"]], [d["hi"] - d["mean"]]], fmt="o", capsize=4,
                     color=f"C{i}", label=f"{d['optimizer']}: p_holm {d['p_adjusted']:.3g}"
                                       + (" (an s at a grid edge: a tie)" if d["edge"] else ""))
    ax2.axvline(0, color="k", lw=0.8)
    ax2.set_yticks(range(len(data["diffs"])), [d["optimizer"] for d in data["diffs"]])
    ax2.set_xlabel("sensitivity(L) − sensitivity(1), 95 % CI (> 0: depth compounds)")
    ax2.set_title("does depth make fine-tuning more sensitive to s?")
    legend(ax2, "below")
    return fig


def _case(increases, decreases, n=2):
    return {"increases": increases, "decreases": decreases, "n": n}


VERDICT_EXAMPLES = [
    (_case(2, 0), "supported"),
    (_case(1, 0), "partly supported"),
    (_case(1, 1), "partly supported"),
    (_case(0, 1), "not supported"),
    (_case(0, 0), "inconclusive"),
]
