"""Flaw 2 — the zero-init start. Claims about the gradients, the Hessian and the escape from B = 0."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from toyllora import models
from toyllora.config import LoraConfig
from toyllora.data import teacher_student
from toyllora.plotting import figure
from toyllora.registry import claim

SITES = ("none", "input", "bottleneck", "output")


def gradients_at_init(seed: int, init: str, site: str, *, d_in=12, d_out=6, rank=3, n=32):
    """``(∂L/∂A, ∂L/∂B)`` of the OLS toy at the start (dropout sampled in train mode when ``site`` != none)."""
    t = teacher_student(seed=seed, d_in=d_in, d_out=d_out, n_train=n, n_test=8, shift_rank=2)
    keep, dsite = (1.0, "input") if site == "none" else (0.8, site)
    model = models.LinearLoRA(LoraConfig(rank=rank, alpha=float(rank), init=init, keep=keep, dropout_site=dsite))
    k_init, k_drop = jax.random.split(jax.random.key(seed))
    frozen, params = model.init(k_init, t.W0)
    grads = jax.grad(lambda p: models.loss(model, frozen, p, t.data.X, t.data.Y, train=True, key=k_drop))(params)
    return np.asarray(grads.A), np.asarray(grads.B)


def _verdict(m):
    ok_a = all(m["init_a"][s]["max_abs_grad_A"] == 0.0 and m["init_a"][s]["min_norm_grad_B"] > 0 for s in SITES)
    ok_b = all(m["init_b"][s]["max_abs_grad_B"] == 0.0 and m["init_b"][s]["min_norm_grad_A"] > 0 for s in SITES)
    if ok_a and ok_b:
        return "supported"
    return "partly supported" if (ok_a or ok_b) else "not supported"


def asymmetry_data(seed: int, fast: bool):
    """Gradient norms at the start for init_a/init_b and every dropout site; returns ``(data, config)``."""
    seeds = list(range(seed, seed + (2 if fast else 5)))
    config = dict(seeds=seeds, d_in=12, d_out=6, rank=3, n=32, keep=0.8)
    out = {}
    for init in ("init_a", "init_b"):
        out[init] = {}
        for site in SITES:
            gs = [gradients_at_init(s, init, site) for s in seeds]
            nA = [float(np.linalg.norm(g[0])) for g in gs]
            nB = [float(np.linalg.norm(g[1])) for g in gs]
            out[init][site] = {
                "max_abs_grad_A": float(max(np.abs(g[0]).max() for g in gs)),
                "max_abs_grad_B": float(max(np.abs(g[1]).max() for g in gs)),
                "min_norm_grad_A": min(nA), "min_norm_grad_B": min(nB),
                "mean_norm_grad_A": float(np.mean(nA)), "mean_norm_grad_B": float(np.mean(nB)),
            }
    return out, config


def plot_asymmetry(data):
    """Bars of ||∂L/∂A|| and ||∂L/∂B|| at the start, per init and dropout site; exact zeros labelled."""
    fig, axes = figure(1, 2, figsize=(9, 3.6), sharey=True)
    x = np.arange(len(SITES))
    for ax, init in zip(axes, ("init_a", "init_b")):
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
        ax.set_ylabel("Frobenius norm of the gradient (mean over seeds)")
        ax.legend()
    return fig


@claim(
    id="zeroinit.gradient-asymmetry",
    statement="At B = 0, ∂L/∂A = 0 exactly while ∂L/∂B ≠ 0 (A cannot move until B does); with init_b the "
              "roles swap. Holds with and without dropout at each site.",
    source="paper",
    flaw="zeroinit",
    rule="Over 5 seeds on the OLS toy, for no dropout and each dropout site (input, bottleneck, output, "
         "keep 0.8): supported if with init_a every entry of ∂L/∂A is exactly 0.0 and ||∂L/∂B|| > 0 in every "
         "seed, and with init_b ∂L/∂B is exactly 0.0 and ||∂L/∂A|| > 0; partly supported if only one of the "
         "two inits behaves so; otherwise not supported.",
    verdict=_verdict,
)
def gradient_asymmetry(ctx):
    data, config = asymmetry_data(ctx.seed, ctx.fast)
    ctx.config.update(config)
    ctx.save_figure(plot_asymmetry(data))
    return data
