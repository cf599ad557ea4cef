"""dropout.input-ridge: dropout on the LoRA input is, in expectation, a diag(XᵀX)-weighted ridge penalty on ΔW."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from toyllora import lora, models
from toyllora.claims import Setup, fmt
from toyllora.claims.dropout._common import (Z_MC, Z_MC_GRAD, as_float64, delta_metrics, draw_seeds, mc_agrees,
                                             mc_has_power, mc_site, random_adapter, run_flat)
from toyllora.config import LoraConfig
from toyllora.data import teacher_student
from toyllora.plotting import figure, legend
from toyllora.precision import tol
from toyllora.theory import dropout as dt
from toyllora.train import Trainer

STATEMENT = ("Dropout on the LoRA input (PEFT's placement, B A (m⊙x)) equals, in expectation, a ridge penalty "
             "on ΔW = sBA weighted per input feature by diag(XᵀX) with strength (1−q)/q.")
SOURCE = "extension"
TOL_FACTOR = 100    # (b): the identity to TOL_FACTOR · tol relative
RIDGE_MAX = 0.01    # (c): trained LoRA within 1 % of the weighted-ridge solution


@dataclasses.dataclass(frozen=True)
class Params:
    keeps: tuple = (0.6, 0.8, 0.95)
    n_masks: int = 4000
    n_params: int = 4          # random adapters per keep and draw (Monte Carlo)
    draws: int = 3
    d_in: int = 8
    d_out: int = 4
    rank_mc: int = 2           # the adapters of the Monte Carlo check
    n: int = 48
    n_test: int = 64
    cond: float = 10.0
    noise: float = 0.3
    s: float = 2.0
    n_identity: int = 3        # random full-rank adapters per keep for the identity (b)
    optimizer: str = "adam"    # (c): a full-rank LoRA trained on the closed-form expected loss
    lr: float = 0.01
    steps: int = 3000
    rank: int = 4
    alpha: float = 4.0
    seeds: int = 4             # per draw


SETUP = Setup(full=Params(), fast=Params(keeps=(0.6, 0.9), n_masks=1000, n_params=2, steps=600, seeds=2, draws=1))


def rule(p: Params) -> str:
    return (f"Teacher–student (d_in {p.d_in}, d_out {p.d_out}, n {p.n}, input covariance condition {fmt(p.cond)}), "
            f"{p.draws} task draws, keeps {'/'.join(fmt(q) for q in p.keeps)}. (a) Monte Carlo over {p.n_masks} masks "
            f"at {p.n_params} random adapters (r {p.rank_mc}) per keep and draw agrees with the closed form within "
            f"{Z_MC:g} SE for the loss, and within {Z_MC_GRAD:g} SE for every gradient entry (Bonferroni over "
            "entries); (b) the closed form equals 0.5/n(||R − XΔWᵀ||² + (1−q)/q Σ_j (XᵀX)_jj ||ΔW_{:,j}||²) to "
            f"{TOL_FACTOR}·tol relative; (c) a full-rank LoRA (r = {p.rank}) trained by {p.optimizer.capitalize()} "
            f"(lr {fmt(p.lr)}, {p.steps} steps, {p.seeds} seeds per draw) on the closed-form expected loss ends "
            f"within {100 * RIDGE_MAX:g} % of the weighted-ridge solution in every run. Control: the unweighted "
            "ridge with the same mean weight — the Monte Carlo of (a) must reject its penalty (|z| > "
            f"{Z_MC:g}) in at least half of the cases, and in every draw the trained runs must end more than "
            f"{100 * RIDGE_MAX:g} % from its solution at one keep at least, so that (a) and (c) can tell the weighted "
            "ridge from the plain one. Supported if (a)–(c) and the control; partly supported if (a) and (b) only; "
            "inconclusive if (a)–(c) hold but the control does not; otherwise not supported.")


@jax.jit
def _identity_cell(W, X, Y, seed, q):
    p = random_adapter(jax.random.key(seed), X.shape[1], Y.shape[1], min(X.shape[1], Y.shape[1]))
    cfg = LoraConfig(rank=p.A.shape[0], alpha=float(p.A.shape[0]), keep=0.5, dropout_site="input")
    R = Y - X @ W.T
    e = dt.expected_loss(W, p, X, Y, cfg, keep=q)
    rdg = dt.ridge_objective(lora.delta(p, cfg), X, R, (1 - q) / q, jnp.sum(jnp.square(X), axis=0))
    target = dt.input_dropout_ridge(X, R, q)
    iso = dt.ridge(X, R, (1 - q) / q * jnp.mean(jnp.sum(jnp.square(X), axis=0)))
    return jnp.abs(e - rdg) / jnp.abs(rdg), target, jnp.linalg.norm(target - iso) / jnp.linalg.norm(target)


def measure(p: Params, seed: int) -> dict:
    out = {"mc": mc_site(seed, "input", keeps=p.keeps, n_masks=p.n_masks, n_params=p.n_params, draws=p.draws,
                         d_in=p.d_in, d_out=p.d_out, rank=p.rank_mc, n=p.n, s=p.s, cond=p.cond, noise=p.noise,
                         control="isotropic")}
    model = models.LinearLoRA(LoraConfig(rank=p.rank, alpha=p.alpha, keep=0.5, dropout_site="input"))
    trainer = Trainer(model, p.optimizer, steps=p.steps, stride=p.steps, objective=dt.linear_expected_objective,
                      init=dt.init_with_keep, metrics=delta_metrics)
    seeds = [1000 * seed + 500 + i for i in range(p.seeds)]
    bases, datas, targets, isos, ident = [], [], [], [], []
    for di, ds in enumerate(draw_seeds(seed, p.draws)):
        t = teacher_student(seed=ds, d_in=p.d_in, d_out=p.d_out, n_train=p.n, n_test=p.n_test, shift_rank=2,
                            cond=p.cond, noise=p.noise)
        X, Y, W = t.data.X, t.data.Y, t.W0
        bases.append((W,)), datas.append(t.data)
        for q in p.keeps:
            qa = np.asarray(q, X.dtype)
            for j in range(p.n_identity):
                err, target, iso = _identity_cell(W, X, Y, seed * 7 + 100 * di + j, qa)
                ident.append(as_float64(err))
            R = Y - X @ W.T
            targets.append(np.asarray(target, np.float64))
            isos.append(np.asarray(dt.ridge(X, R, (1 - q) / q * jnp.mean(jnp.sum(jnp.square(X), axis=0))), np.float64))
    idx, keep, sd = [], [], []
    for di in range(p.draws):
        for q in p.keeps:
            for s_ in seeds:
                idx.append(di), keep.append(q), sd.append(s_)
    m, _ = run_flat(trainer, bases, datas, idx, (keep,), {"lr": np.full(len(sd), p.lr)}, sd, chunk=len(sd))
    deltas = np.asarray(m["delta"], np.float64)[:, -1].reshape(p.draws, len(p.keeps), p.seeds, p.d_out, p.d_in)
    train = {str(q): {"rel_dist_to_weighted_ridge": [], "rel_dist_to_isotropic_ridge": [],
                      "weighted_vs_isotropic_ridge_rel_diff": []} for q in p.keeps}
    control_draws = []
    for di in range(p.draws):
        far = False
        for k, q in enumerate(p.keeps):
            T, I = targets[di * len(p.keeps) + k], isos[di * len(p.keeps) + k]
            dw = np.linalg.norm(deltas[di, k] - T, axis=(1, 2)) / np.linalg.norm(T)
            di_ = np.linalg.norm(deltas[di, k] - I, axis=(1, 2)) / np.linalg.norm(T)
            row = train[str(q)]
            row["rel_dist_to_weighted_ridge"] += dw.tolist()
            row["rel_dist_to_isotropic_ridge"] += di_.tolist()
            row["weighted_vs_isotropic_ridge_rel_diff"].append(float(np.linalg.norm(T - I) / np.linalg.norm(T)))
            far = far or bool(np.all(di_ > RIDGE_MAX))
        control_draws.append(far)
    out["identity_rel_error_max"] = float(max(ident))
    out["training_on_expected_loss"] = train
    out["control_trained_far_from_isotropic_per_draw"] = control_draws
    out["tol_identity"] = TOL_FACTOR * tol()
    return out


def verdict(m: dict) -> str:
    a = mc_agrees(m["mc"])
    b = m["identity_rel_error_max"] <= m["tol_identity"]
    c = all(max(v["rel_dist_to_weighted_ridge"]) <= RIDGE_MAX for v in m["training_on_expected_loss"].values())
    control = mc_has_power(m["mc"]) and all(m["control_trained_far_from_isotropic_per_draw"])
    if a and b and c:
        return "supported" if control else "inconclusive"
    return "partly supported" if (a and b) else "not supported"


def plot(record: dict):
    """Left: Monte Carlo z-scores of the loss; right: trained LoRA against the weighted ridge, per keep."""
    data = record["measurements"]
    fig, axes = figure(1, 2, figsize=(12, 4.4))
    z = np.asarray(data["mc"]["z_loss"])
    axes[0].plot(z, "o", label="loss: (MC − closed) / SE")
    axes[0].plot(np.asarray(data["mc"]["z_loss_vs_control"]), "x", color="C3",
                 label="control: vs the unweighted penalty")
    axes[0].set_yscale("symlog", linthresh=10)
    axes[0].axhspan(-Z_MC, Z_MC, color="g", alpha=0.1, label=f"±{Z_MC:g} SE (rule)")
    axes[0].set_xlabel("case index (draw-, then keep-major)")
    axes[0].set_ylabel("z-score (standard errors)")
    axes[0].set_title("Input dropout: Monte Carlo vs closed form")
    legend(axes[0], "below")
    tr = data["training_on_expected_loss"]
    qs = [float(q) for q in tr]
    for i, q in enumerate(tr):
        d = tr[q]["rel_dist_to_weighted_ridge"]
        axes[1].semilogy([qs[i]] * len(d), np.maximum(d, 1e-12), "o", color="C0",
                         label="trained full-rank LoRA vs weighted ridge (per seed)" if i == 0 else None)
    for i, q in enumerate(tr):
        d = tr[q]["rel_dist_to_isotropic_ridge"]
        axes[1].semilogy([qs[i]] * len(d), d, "x", color="C1",
                         label="control: the same runs vs the unweighted ridge" if i == 0 else None)
    axes[1].axhline(RIDGE_MAX, color="k", ls=":", lw=0.8, label=f"{100 * RIDGE_MAX:g} % (rule)")
    axes[1].set_xlabel("keep probability q")
    axes[1].set_ylabel("relative distance ||·|| / ||ΔW*||")
    axes[1].set_title("Training on E L reaches the diag(XᵀX)-weighted ridge")
    legend(axes[1], "below")
    return fig


def _case(z=1.0, zg=2.0, ident=1e-6, dist=1e-3, tol_=0.01, power=0.8, far=(True, True)):
    return {"mc": {"max_abs_z_loss": z, "max_abs_z_grad_entry": zg, "control_rejected_share": power},
            "identity_rel_error_max": ident, "tol_identity": tol_,
            "training_on_expected_loss": {"0.6": {"rel_dist_to_weighted_ridge": [1e-4, dist]},
                                          "0.9": {"rel_dist_to_weighted_ridge": [1e-4, 1e-4]}},
            "control_trained_far_from_isotropic_per_draw": list(far)}


VERDICT_EXAMPLES = [
    (_case(dist=0.0099), "supported"),                   # (c) just inside 1 %
    (_case(dist=0.0101), "partly supported"),            # (c) just outside
    (_case(z=3.9, zg=5.9), "supported"),                 # (a) just inside 4 SE and 6 SE
    (_case(z=4.1), "not supported"),                     # (a) loss z above 4 SE
    (_case(zg=6.1), "not supported"),                    # (a) a gradient entry above 6 SE
    (_case(ident=0.0099), "supported"),                  # (b) just below 100·tol
    (_case(ident=0.0101), "not supported"),              # (b) just above
    (_case(power=0.49), "inconclusive"),                 # control: the MC cannot reject the plain ridge
    (_case(far=(True, False)), "inconclusive"),          # control: training cannot tell the two ridges apart
]
