"""ripple.coupling: the larger s and the deeper the net, the larger the cross-layer Hessian blocks relative to
the diagonal ones."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.claims.ripple._common import SCALES
from toyllora.data import as_float, deep_teacher
from toyllora.plotting import figure, legend
from toyllora.theory import ripple

STATEMENT = ("The scaling factor couples the layers ('short-sighted' updates): when one layer's adapter moves, the "
             "other layers' gradients change more, the larger s and the deeper the network — the cross-layer "
             "Hessian blocks grow relative to the diagonal ones.")
SOURCE = "paper"
GROWTH = 0.2  # the verdict: κ̄ grows by at least this (20 %)


@dataclasses.dataclass(frozen=True)
class Params:
    depths: tuple = (2, 4, 8)
    scales: tuple = SCALES
    seeds: int = 4            # task and adapter seeds master_seed, master_seed + 1, ...
    d: int = 8
    n: int = 64               # training inputs of the task
    n_test: int = 8
    rank: int = 2
    ratio: float = 0.1        # Gaussian adapters rescaled to ||B_l A_l|| / ||W_l|| = ratio
    shift_rank: int = 1       # the task: every layer shifted by a rank-1 matrix of norm 1 (gaussian base)
    shift: float = 1.0


SETUP = Setup(full=Params(), fast=Params(depths=(2, 4), scales=(0.25, 16.0), seeds=2))


def rule(p: Params) -> str:
    return (f"Deep multilinear regression task (data.deep_teacher, gaussian base, width {p.d}, n = {p.n}), LoRA rank "
            f"{p.rank} on every layer with Gaussian adapters at ||B_lA_l||/||W_l|| = {fmt(p.ratio)}, L in "
            f"{fmt(p.depths)}, s in {fmt(p.scales)}, {p.seeds} seeds. κ̄ = mean over k != l of ||H_kl||_F / "
            "sqrt(||H_kk||_F ||H_ll||_F), H the loss Hessian in the adapter parameters (exact, autodiff). "
            f"supported: κ̄ grows by >= {100 * GROWTH:.0f} % from the smallest to the largest s at every L, and at "
            f"the largest s by >= {100 * GROWTH:.0f} % from the smallest to the largest L; partly supported: only "
            "one of the two; not supported: neither.")


@jax.jit
def _coupling_batch(Ws, As, Bs, X, Y, scales):
    """Hessian block norms ``(seeds, scales, L, L)`` for every (seed, s): one compiled call."""
    def one(W, A, B, x, y, s):
        return ripple.layer_blocks(W, A, B, x, y, s)

    inner = jax.vmap(one, (None, None, None, None, None, 0))
    return jax.vmap(inner, (0, 0, 0, 0, 0, None))(Ws, As, Bs, X, Y, scales)


def measure(p: Params, seed: int) -> dict:
    seeds = list(range(seed, seed + p.seeds))
    out = {"depths": list(p.depths), "scales": list(p.scales), "kappa": {}, "kappa_std": {}, "offdiag_abs": {},
           "kappa_by_distance": {}}
    # every depth padded to the largest with identity layers and zero adapters (the same function and, on
    # the real layers, the same Hessian): one compiled call for all depths, seeds and s
    Lmax = max(p.depths)
    Ws, As, Bs, X, Y = [], [], [], [], []
    for L in p.depths:
        for sd in seeds:
            base, task, _ = deep_teacher(sd, layers=L, d=p.d, n_train=p.n, n_test=p.n_test, shift_rank=p.shift_rank,
                                         shift=p.shift, base="gaussian")
            A, B = ripple.random_adapters(np.random.default_rng(sd), np.stack(base), p.rank, p.ratio)
            pad = Lmax - L
            Ws.append(np.concatenate([np.stack(base), np.broadcast_to(np.eye(p.d), (pad, p.d, p.d))]))
            As.append(np.concatenate([A, np.zeros((pad,) + A.shape[1:])]))
            Bs.append(np.concatenate([B, np.zeros((pad,) + B.shape[1:])]))
            X.append(task.X)
            Y.append(task.Y)
    H_all = np.asarray(_coupling_batch(*(as_float(np.stack(a)) for a in (Ws, As, Bs, X, Y)),
                                       jnp.asarray(p.scales)), np.float64)
    for iL, L in enumerate(p.depths):
        H = H_all[iL * len(seeds):(iL + 1) * len(seeds), :, :L, :L]
        for j, s in enumerate(p.scales):
            ks, absn, dist = [], [], []
            for i in range(len(seeds)):
                kappa, mean = ripple.coupling(H[i, j])
                ks.append(mean)
                absn.append(float((H[i, j].sum() - np.trace(H[i, j])) / (L * (L - 1))))
                dist.append([float(np.mean(np.diagonal(kappa, k))) for k in range(1, L)])
            key = f"L={L},s={s:g}"
            out["kappa"][key] = float(np.mean(ks))
            out["kappa_std"][key] = float(np.std(ks, ddof=1))
            out["offdiag_abs"][key] = float(np.mean(absn))
            out["kappa_by_distance"][key] = np.mean(dist, 0)
    lo, hi = p.scales[0], p.scales[-1]
    out["growth_with_s"] = {str(L): out["kappa"][f"L={L},s={hi:g}"] / out["kappa"][f"L={L},s={lo:g}"] - 1.0
                            for L in p.depths}
    out["growth_with_L_at_max_s"] = (out["kappa"][f"L={p.depths[-1]},s={hi:g}"]
                                     / out["kappa"][f"L={p.depths[0]},s={hi:g}"] - 1.0)
    return out


def verdict(m: dict) -> str:
    with_s = all(g >= GROWTH for g in m["growth_with_s"].values())
    with_L = m["growth_with_L_at_max_s"] >= GROWTH
    if with_s and with_L:
        return "supported"
    return "partly supported" if (with_s or with_L) else "not supported"


def plot(record: dict):
    """Mean normalized cross-layer coupling against s, one line per depth; absolute off-diagonal blocks."""
    data = record["measurements"]
    fig, axes = figure(1, 2, figsize=(11, 4.2))
    for i, L in enumerate(data["depths"]):
        keys = [f"L={L},s={s:g}" for s in data["scales"]]
        axes[0].errorbar(data["scales"], [data["kappa"][k] for k in keys],
                         np.asarray([data["kappa_std"][k] for k in keys], float),
                         fmt="o-", color=f"C{i}", capsize=3, label=f"L = {L}")
        axes[1].plot(data["scales"], [data["offdiag_abs"][k] for k in keys], "o-", color=f"C{i}", label=f"L = {L}")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("scaling factor s = alpha / r")
    axes[0].set_ylabel("κ̄ = mean_k≠l ||H_kl|| / sqrt(||H_kk|| ||H_ll||)")
    axes[1].set_yscale("log")
    axes[1].set_ylabel("mean_k≠l ||H_kl||_F (loss units / param²)")
    axes[0].set_title("normalized cross-layer coupling (mean ± std of seeds)")
    axes[1].set_title("absolute cross-layer Hessian blocks")
    legend(axes[1])
    return fig


def _case(with_s=(0.5, 0.3), with_L=0.5):
    return {"growth_with_s": {str(L): g for L, g in zip((2, 4, 8), with_s)}, "growth_with_L_at_max_s": with_L}


VERDICT_EXAMPLES = [
    (_case(), "supported"),
    (_case((0.2, 0.2, 0.2), 0.2), "supported"),     # 20 % counts (>=)
    (_case((0.5, 0.19), 0.5), "partly supported"),  # one depth just under 20 %
    (_case((0.5, 0.3), 0.19), "partly supported"),  # depth growth just under 20 %
    (_case((0.0, 0.1), -0.2), "not supported"),
]
