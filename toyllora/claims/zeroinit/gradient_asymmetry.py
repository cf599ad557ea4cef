"""zeroinit.gradient-asymmetry: at B = 0, ∂L/∂A = 0 exactly while ∂L/∂B ≠ 0 (and the roles swap for init_b)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from toyllora import models
from toyllora.claims import Setup, fmt
from toyllora.config import LoraConfig
from toyllora.data import teacher_student
from toyllora.plotting import figure, legend

STATEMENT = ("At B = 0, ∂L/∂A = 0 exactly while ∂L/∂B ≠ 0 (A cannot move until B does); with init_b the roles "
             "swap. Holds with and without dropout at each site.")
SOURCE = "paper"
SITES = ("none", "input", "bottleneck", "output")
INITS = ("init_a", "init_b")


@dataclasses.dataclass(frozen=True)
class Params:
    seeds: int = 5          # seeds master_seed, master_seed + 1, ...: the task draw, the init and the masks
    d_in: int = 12
    d_out: int = 6
    rank: int = 3
    n: int = 32
    keep: float = 0.8


SETUP = Setup(full=Params(), fast=Params(seeds=2))


def rule(p: Params) -> str:
    return (f"Over {p.seeds} seeds on the OLS toy (d_in {p.d_in}, d_out {p.d_out}, r {p.rank}, n {p.n}), for no "
            f"dropout and each dropout site ({', '.join(SITES[1:])}, keep {fmt(p.keep)}): supported if with "
            "init_a every entry of ∂L/∂A is exactly 0.0 and ||∂L/∂B|| > 0 in every seed, and with init_b ∂L/∂B "
            "is exactly 0.0 and ||∂L/∂A|| > 0; partly supported if only one of the two inits behaves so; "
            "otherwise not supported.")


def gradients_at_init(seed: int, init: str, site: str, p: Params):
    """``(∂L/∂A, ∂L/∂B)`` of the OLS toy at the start (dropout sampled in train mode when ``site`` != none)."""
    t = teacher_student(seed=seed, d_in=p.d_in, d_out=p.d_out, n_train=p.n, n_test=8, shift_rank=2)
    keep, dsite = (1.0, "input") if site == "none" else (p.keep, site)
    model = models.LinearLoRA(LoraConfig(rank=p.rank, alpha=float(p.rank), init=init, keep=keep,
                                         dropout_site=dsite))
    k_init, k_drop = jax.random.split(jax.random.key(seed))
    frozen, params = model.init(k_init, t.W0)
    grads = jax.grad(lambda q: models.loss(model, frozen, q, t.data.X, t.data.Y, train=True, key=k_drop))(params)
    return np.asarray(grads.A), np.asarray(grads.B)


def measure(p: Params, seed: int) -> dict:
    seeds = list(range(seed, seed + p.seeds))
    out = {}
    for init in INITS:
        out[init] = {}
        for site in SITES:
            gs = [gradients_at_init(s, init, site, p) for s in seeds]
            nA = [float(np.linalg.norm(g[0])) for g in gs]
            nB = [float(np.linalg.norm(g[1])) for g in gs]
            out[init][site] = {
                "max_abs_grad_A": float(max(np.abs(g[0]).max() for g in gs)),
                "max_abs_grad_B": float(max(np.abs(g[1]).max() for g in gs)),
                "min_norm_grad_A": min(nA), "min_norm_grad_B": min(nB),
                "mean_norm_grad_A": float(np.mean(nA)), "mean_norm_grad_B": float(np.mean(nB)),
            }
    return out


def verdict(m: dict) -> str:
    ok_a = all(m["init_a"][s]["max_abs_grad_A"] == 0.0 and m["init_a"][s]["min_norm_grad_B"] > 0 for s in SITES)
    ok_b = all(m["init_b"][s]["max_abs_grad_B"] == 0.0 and m["init_b"][s]["min_norm_grad_A"] > 0 for s in SITES)
    if ok_a and ok_b:
        return "supported"
    return "partly supported" if (ok_a or ok_b) else "not supported"


def plot(record: dict):
    """Bars of ||∂L/∂A|| and ||∂L/∂B|| at the start, per init and dropout site; exact zeros labelled."""
    data = record["measurements"]
    fig, axes = figure(1, 2, figsize=(10, 4), sharey=True)
    x = np.arange(len(SITES))
    for ax, init in zip(axes, INITS):
        a = [data[init][s]["mean_norm_grad_A"] for s in SITES]
        b = [data[init][s]["mean_norm_grad_B"] for s in SITES]
        ax.bar(x - 0.2, a, 0.4, label="||∂L/∂A||")
        ax.bar(x + 0.2, b, 0.4, label="||∂L/∂B||")
        for xi, (va, vb) in enumerate(zip(a, b)):
            for off, v in ((-0.2, va), (0.2, vb)):
                if v == 0.0:
                    ax.annotate("exactly 0", (xi + off, 0), ha="center", va="bottom", fontsize=7, rotation=90)
        ax.set_xticks(x, [f"dropout: {s}" for s in SITES], rotation=20)
        ax.set_title(f"{init}: gradient norms at the start")
    axes[0].set_ylabel("Frobenius norm of the gradient (mean over seeds)")
    legend(axes[1])
    return fig


def _case(grad_a_zero=True, grad_b_pos=True, grad_b_zero=True, grad_a_pos=True):
    def cell(init):
        if init == "init_a":
            return {"max_abs_grad_A": 0.0 if grad_a_zero else 1e-9, "max_abs_grad_B": 0.5,
                    "min_norm_grad_A": 0.0, "min_norm_grad_B": 0.3 if grad_b_pos else 0.0,
                    "mean_norm_grad_A": 0.0, "mean_norm_grad_B": 0.4}
        return {"max_abs_grad_A": 0.5, "max_abs_grad_B": 0.0 if grad_b_zero else 1e-9,
                "min_norm_grad_A": 0.3 if grad_a_pos else 0.0, "min_norm_grad_B": 0.0,
                "mean_norm_grad_A": 0.4, "mean_norm_grad_B": 0.0}
    return {init: {s: cell(init) for s in SITES} for init in INITS}


VERDICT_EXAMPLES = [
    (_case(), "supported"),
    (_case(grad_a_zero=False), "partly supported"),        # ∂L/∂A not exactly 0 at B = 0
    (_case(grad_b_pos=False), "partly supported"),         # B's gradient vanishes too
    (_case(grad_b_zero=False), "partly supported"),        # init_b: ∂L/∂B not exactly 0
    (_case(grad_a_zero=False, grad_b_zero=False), "not supported"),
]
