"""What the dropout claims share: Monte Carlo over masks against the closed forms (:mod:`toyllora.theory.dropout`),
the metrics and switch objectives of the training runs, the digits MLP set-up, and the LoRA/ALLoRA budget runs
of ``dropout.short-vs-long`` and ``dropout.allora-fix`` (cached in-process: run once for both claims).

The digits MLP is pre-trained once per (seed, loss) by :func:`toyllora.pretrain.digits_mlp`; LoRA fine-tuning
runs through :class:`~toyllora.train.Trainer` with the keep probability carried as a traced scalar in the frozen
part, so one compiled program serves every drop rate.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from toyllora import lora, models, pretrain
from toyllora.claims import Setup, fmt
from toyllora.config import LoraConfig
from toyllora.conventions import DEFAULT_ETA
from toyllora.data import teacher_student
from toyllora.lora import LoraParams
from toyllora.theory import dropout as dt
from toyllora.train import Trainer, grid

Z_MC = 4.0       # |MC mean − closed form| of a loss must stay below Z_MC standard errors
Z_MC_GRAD = 6.0  # ... and of every gradient entry below this many (Bonferroni over the entries)


def as_float64(x) -> float:
    return float(np.asarray(x, dtype=np.float64))


def random_adapter(key, d_in, d_out, r, scale=1.0):
    """A random LoRA adapter ``(A, B)`` with entries of unit-variance rows (``A/√d_in``, ``B/√r``)."""
    ka, kb = jax.random.split(key)
    return LoraParams(A=jax.random.normal(ka, (r, d_in)) / np.sqrt(d_in),
                      B=scale * jax.random.normal(kb, (d_out, r)) / np.sqrt(r))


# ------------------------------------------------------------------ Monte Carlo at a site vs the closed form
@functools.partial(jax.jit, static_argnames=("site", "s", "r", "n_masks"))
def _site_cell(W, X, Y, seed, q, *, site, s, r, n_masks):
    """Loss and gradient under each mask, and the closed forms, at one keep (q traced)."""
    kp, km = jax.random.split(jax.random.key(seed))
    p = random_adapter(kp, X.shape[1], Y.shape[1], r)
    keys = jax.random.split(km, n_masks)
    cfg = LoraConfig(rank=p.A.shape[0], alpha=s * p.A.shape[0], keep=0.5, dropout_site=site)
    f = lambda p, k: dt.sampled_loss_keep(W, p, X, Y, k, q, site, s)
    vals = jax.vmap(f, in_axes=(None, 0))(p, keys)
    grads = jax.vmap(jax.grad(f), in_axes=(None, 0))(p, keys)
    return (vals, grads, dt.expected_loss(W, p, X, Y, cfg, keep=q), dt.expected_loss_grad(W, p, X, Y, cfg, keep=q),
            dt.penalty(p, X, q, site, s))


def mc_site(seed, site, *, keeps, n_masks, n_params, d_in, d_out, rank, n, s, cond, noise):
    """z-scores of Monte Carlo over masks against the closed form (loss, and each gradient entry), at
    ``n_params`` random adapters per keep on a teacher–student task."""
    t = teacher_student(seed=seed, d_in=d_in, d_out=d_out, n_train=n, n_test=8, shift_rank=2, cond=cond,
                        noise=noise)
    X, Y, W = t.data.X, t.data.Y, t.W0
    zs, gz, rel_pen = [], [], []
    for i, q in enumerate(keeps):
        for j in range(n_params):
            vals, g, closed, cg, pen = _site_cell(W, X, Y, 10_000 * seed + 100 * i + j, np.asarray(q, X.dtype),
                                                  site=site, s=s, r=rank, n_masks=n_masks)
            vals = np.asarray(vals, np.float64)
            zs.append((vals.mean() - as_float64(closed)) / (vals.std(ddof=1) / np.sqrt(n_masks)))
            rel_pen.append(as_float64(pen) / as_float64(closed))
            for name in ("A", "B"):
                sg = np.asarray(getattr(g, name), np.float64)
                se_g = sg.std(axis=0, ddof=1) / np.sqrt(n_masks)
                gz.append(float(np.max(np.abs(sg.mean(0) - np.asarray(getattr(cg, name))) / se_g)))
    return {"max_abs_z_loss": float(np.max(np.abs(zs))), "z_loss": [float(z) for z in zs],
            "max_abs_z_grad_entry": float(max(gz)),
            "penalty_share_of_expected_loss": [float(v) for v in rel_pen]}


def mc_agrees(mc: dict) -> bool:
    """The Monte Carlo test of the rules: loss within :data:`Z_MC` SE, every gradient entry within :data:`Z_MC_GRAD`."""
    return mc["max_abs_z_loss"] <= Z_MC and mc["max_abs_z_grad_entry"] <= Z_MC_GRAD


# ------------------------------------------------------------------------- linear runs: metrics, objectives
def delta_metrics(model, base, frozen_keep, params, data):
    """ΔW, the test loss and the closed-form expected loss of a linear LoRA run (``frozen_keep = (W, keep, ...)``)."""
    frozen, keep = frozen_keep[:2]
    return {"delta": lora.delta(params, model.cfg),
            "test_loss": models.loss(model, frozen, params, data.X_test, data.Y_test),
            "expected_loss": dt.expected_loss(frozen, params, data.X, data.Y, model.cfg, keep=keep)}


def linear_switch_objective(model, frozen_keep, params, X, Y, key):
    """``frozen_keep = (W, keep, mode)``: the expected loss if mode = 1, one mask draw if mode = 0 (one compile)."""
    return jax.lax.cond(frozen_keep[2] > 0.5,
                        lambda: dt.linear_expected_objective(model, frozen_keep, params, X, Y, key),
                        lambda: dt.linear_sampled_objective(model, frozen_keep, params, X, Y, key))


def mlp_switch_objective(model, frozen_keep, params, X, Y, key):
    """``frozen_keep = (frozen, keep, mode)``: exact expected squared loss (mode 1) or one mask draw (mode 0)."""
    return jax.lax.cond(frozen_keep[2] > 0.5,
                        lambda: dt.mlp_last_expected_objective(model, frozen_keep, params, X, Y, key),
                        lambda: dt.mlp_last_sampled_objective(model, frozen_keep, params, X, Y, key))


# --------------------------------------------------------------------------------------------- digits MLP
def sizes_text(sizes) -> str:
    """``(64, 64, 64, 10)`` → ``"64-64-64-10"`` (rule text)."""
    return "-".join(str(k) for k in sizes)


@functools.lru_cache(maxsize=None)
def finetune_digits(seed: int = 0, *, sizes=(64, 64, 64, 10), steps: int = 400, lr: float = 1e-2,
                    loss: str = "xent"):
    """The pre-trained digits MLP and its fine-tuning split re-standardized on its own training statistics
    (per-pixel mean/std, std floor 1e-8 → 1): ``(base, finetune data, pre-training held-out accuracy)``.

    Why re-standardize: ``digits`` scales the shifted images with the pre-training statistics; border pixels
    that are ~0 in the pre-training images become 16 after the contrast inversion and blow up (input RMS ~ 67
    vs 1), which makes the first hundred steps of every fine-tuning run a rescaling exercise. Each split
    standardized with its own statistics keeps the shift (moved, inverted digits) without that artefact.
    """
    base, digits, acc = pretrain.digits_mlp(seed, sizes=tuple(sizes), steps=steps, lr=lr, loss=loss)
    ft = digits.finetune
    X, Xt = np.asarray(ft.X, np.float64), np.asarray(ft.X_test, np.float64)
    mu, sd = X.mean(0), X.std(0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    f = lambda Z: jnp.asarray((Z - mu) / sd, dtype=ft.X.dtype)
    return base, type(ft)(f(X), ft.Y, f(Xt), ft.Y_test), acc


def lora_mlp(rank: int, method: str = "lora", eta: float = DEFAULT_ETA):
    """The fine-tuned MLP: LoRA (alpha = r, input dropout on every branch, keep carried in the frozen part)
    or ALLoRA (scaling none, no dropout)."""
    if method == "lora":
        return models.MLPLoRA(LoraConfig(rank=rank, alpha=float(rank), keep=1.0, dropout_site="input"))
    return models.MLPLoRA(LoraConfig(rank=rank, method="allora", scaling="none", eta=eta))


def mlp_metrics(model, base, frozen_keep, params, data):
    """Test cross-entropy, squared loss on one-hot labels and accuracy, and the training loss."""
    frozen = frozen_keep[0]
    logits = model.apply(frozen, params, data.X_test)
    onehot = dt.one_hot_targets(data.Y_test, logits.shape[-1], logits.dtype)
    return {"test_loss": models.xent(logits, data.Y_test), "test_mse": models.mse(logits, onehot),
            "test_acc": jnp.mean(jnp.argmax(logits, -1) == data.Y_test),
            "train_loss": models.loss(model, frozen, params, data.X, data.Y)}


# ------------------------------------------------- dropout.short-vs-long and dropout.allora-fix: one set of runs
@dataclasses.dataclass(frozen=True)
class BudgetRuns:
    """LoRA at each drop rate and ALLoRA (no dropout) on the digits MLP, test loss at doubling budgets."""

    rates: tuple = (0.0, 0.05, 0.1, 0.2, 0.4)
    steps: int = 1600
    stride: int = 50             # the shortest budget; budgets double up to ``steps``
    seeds: int = 5               # master_seed, master_seed + 1, ...
    batch_size: int = 32
    sizes: tuple = (64, 64, 64, 10)
    pretrain_steps: int = 400
    pretrain_lr: float = 1e-2
    rank: int = 8
    lr: float = 3e-3             # LoRA's; ALLoRA runs at lr/eta (the paper's) and at lr
    eta: float = DEFAULT_ETA
    metric: str = "test cross-entropy"


BUDGET_RUNS = Setup(full=BudgetRuns(), fast=BudgetRuns(rates=(0.0, 0.1, 0.4), steps=200, stride=25, seeds=2))


def budgets(p: BudgetRuns) -> list[int]:
    return [p.stride * 2 ** k for k in range(int(np.log2(p.steps // p.stride)) + 1)]


def budget_runs_text(p: BudgetRuns) -> str:
    """The set-up of the budget runs, as rule text."""
    b = budgets(p)
    return (f"Digits MLP {sizes_text(p.sizes)} pre-trained once (Adam, {p.pretrain_steps} steps), on the 256 shifted "
            f"fine-tuning digits (re-standardized on their own statistics) LoRA (r {p.rank}, input dropout on every "
            f"branch) fine-tuned by Adam (lr {fmt(p.lr)}, batch {p.batch_size}), drop rates "
            f"{'/'.join(fmt(r) for r in p.rates)}, {p.seeds} seeds, {p.metric} at budgets {b[0]}…{b[-1]} steps "
            "doubling")


@functools.lru_cache(maxsize=None)
def budget_runs(p: BudgetRuns, seed: int) -> dict:
    """LoRA at each drop rate and ALLoRA (no dropout), test loss/accuracy at each budget, per seed
    (cached: shared by two claims)."""
    seeds = list(range(seed, seed + p.seeds))
    base, ft, _ = finetune_digits(seed, sizes=p.sizes, steps=p.pretrain_steps, lr=p.pretrain_lr, loss="xent")
    dtype = ft.X.dtype
    bs = budgets(p)
    rec = np.arange(p.steps // p.stride + 1) * p.stride
    at = [int(np.nonzero(rec == b)[0][0]) for b in bs]

    def collect(h, g):
        return {k: np.asarray(h.metrics[k], np.float64)[g][:, at].tolist() for k in ("test_loss", "test_acc")}

    tr = Trainer(lora_mlp(p.rank), "adam", steps=p.steps, stride=p.stride, batch_size=p.batch_size,
                 objective=dt.mlp_sampled_xent, init=dt.init_with_keep, metrics=mlp_metrics)
    lora_runs = {str(rate): collect(tr.sweep((base, np.asarray(1 - rate, dtype)), ft, grid(lr=[p.lr]), seeds), 0)
                 for rate in p.rates}
    tra = Trainer(lora_mlp(p.rank, "allora", p.eta), "adam", steps=p.steps, stride=p.stride, batch_size=p.batch_size,
                  objective=dt.mlp_sampled_xent, init=dt.init_with_keep, metrics=mlp_metrics)
    ha = tra.sweep((base, np.asarray(1.0, dtype)), ft, grid(lr=[p.lr / p.eta, p.lr]), seeds)
    return {"budgets": bs, "lora": lora_runs, "allora": {"lr_base": collect(ha, 0), "lr_same_as_lora": collect(ha, 1)}}


def loss_stats(runs) -> tuple:
    """Mean, std and SE over seeds of the test loss at each budget."""
    a = np.asarray(runs["test_loss"])  # (S, B)
    return a.mean(0), a.std(0, ddof=1), a.std(0, ddof=1) / np.sqrt(a.shape[0])
