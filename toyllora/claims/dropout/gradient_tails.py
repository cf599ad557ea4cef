"""dropout.gradient-tails: across masks, the per-entry std of the layer-2 gradient grows heavier-tailed in training."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from toyllora import models
from toyllora.claims import Setup, fmt
from toyllora.claims.dropout._common import finetune_digits, lora_mlp, sizes_text
from toyllora.plotting import figure, legend
from toyllora.theory import dropout as dt
from toyllora.train import Trainer, grid

STATEMENT = ("Dropout's gradient noise gets heavier-tailed during training (Fig. 2): per epoch, the per-entry std "
             "of the layer-2 gradient across masks has a mean that falls slightly and an upper tail that grows.")
SOURCE = "paper"
STAT_NAMES = ("mean", "median", "q90", "q99", "max")
MODES = ("mask_std_minibatch", "mask_std_full", "batch_std_no_dropout")
VERDICT_MODES = MODES[:2]   # the control (no dropout, mini-batch noise) is reported, not judged
MIN_GROWTH = 1.1            # the 99th percentile grows by >= 10 %


@dataclasses.dataclass(frozen=True)
class Params:
    rates: tuple = (0.0, 0.1, 0.2, 0.4)   # 0: the control
    epochs: int = 40
    seeds: int = 3                         # master_seed, master_seed + 1, ...
    batch_size: int = 32
    masks: int = 64                        # masks per record (fixed key)
    mask_key: int = 1234
    sizes: tuple = (64, 64, 64, 10)
    pretrain_steps: int = 400
    pretrain_lr: float = 1e-2
    rank: int = 8
    lr: float = 3e-3
    optimizer: str = "adam"
    site: str = "input of every LoRA branch"
    gradient: str = "∂L/∂W_2 (the effective hidden→hidden weight)"
    growth: str = "q99 at the last epoch / q99 after epoch 1, mean over seeds"


SETUP = Setup(full=Params(), fast=Params(rates=(0.0, 0.2), epochs=10, seeds=2))


def rule(p: Params) -> str:
    rates = [fmt(r) for r in p.rates if r > 0]
    return (f"Digits MLP {sizes_text(p.sizes)} pre-trained once (Adam, {p.pretrain_steps} steps), on the 256 shifted "
            f"fine-tuning digits (re-standardized on their own statistics) LoRA (r {p.rank}, input dropout on every "
            f"branch) fine-tuned by {p.optimizer.capitalize()} (lr {fmt(p.lr)}, batch {p.batch_size}) for {p.epochs} "
            f"epochs, drop rates {'/'.join(rates)} plus the dropout = 0 control, {p.seeds} seeds; {p.masks} masks "
            "per record on one fixed mini-batch and on the full training set. Growth = (statistic at the last "
            "epoch)/(statistic after epoch 1; at epoch 0 B = 0 so masks have no effect), mean over seeds. "
            "Supported if for every rate > 0 and both measurement modes the 99th percentile grows by >= "
            f"{100 * (MIN_GROWTH - 1):.0f} % and the mean grows less than the 99th percentile; partly supported if "
            "that holds in at least half of the (rate, mode) cells; otherwise not supported. The control rows (mask "
            "std exactly 0 at rate 0; mini-batch noise without dropout) are reported for comparison, not used in "
            "the verdict.")


def _std_stats(g):
    sd = jnp.std(g, axis=0).reshape(-1)
    return jnp.stack([jnp.mean(sd), jnp.quantile(sd, 0.5), jnp.quantile(sd, 0.9), jnp.quantile(sd, 0.99),
                      jnp.max(sd)])


@functools.lru_cache(maxsize=None)
def tails_metrics(batch_size: int, masks: int, mask_key: int):
    """The Trainer metrics: per-entry std of the layer-2 weight gradient across ``masks`` masks (one mini-batch /
    full pass) and across mini-batches without dropout (control): [mean, median, q90, q99, max] over entries."""

    def metrics(model, base, frozen_keep, params, data):
        (Ws, bs), keep = frozen_keep[0], frozen_keep[1]

        def grad_w2(X, Y, key, q):
            def f(E):
                return models.xent(dt.mlp_apply_dropout(model, (Ws[:1] + (Ws[1] + E,) + Ws[2:], bs), params, X, key, q),
                                   Y)
            return jax.grad(f)(jnp.zeros_like(Ws[1]))

        keys = jax.random.split(jax.random.key(mask_key), masks)
        Xb, Yb = data.X[:batch_size], data.Y[:batch_size]
        g_mb = jax.vmap(lambda k: grad_w2(Xb, Yb, k, keep))(keys)
        g_full = jax.vmap(lambda k: grad_w2(data.X, data.Y, k, keep))(keys)
        idx = jax.vmap(lambda k: jax.random.permutation(k, data.X.shape[0])[:batch_size])(keys)
        g_ctrl = jax.vmap(lambda i: grad_w2(data.X[i], data.Y[i], keys[0], jnp.ones((), Xb.dtype)))(idx)
        return {"mask_std_minibatch": _std_stats(g_mb), "mask_std_full": _std_stats(g_full),
                "batch_std_no_dropout": _std_stats(g_ctrl),
                "grad_norm_full": jnp.linalg.norm(jnp.mean(g_full, 0)),
                "test_loss": models.xent(model.apply((Ws, bs), params, data.X_test), data.Y_test)}

    return metrics


def measure(p: Params, seed: int) -> dict:
    base, ft, _ = finetune_digits(seed, sizes=p.sizes, steps=p.pretrain_steps, lr=p.pretrain_lr, loss="xent")
    steps_per_epoch = ft.X.shape[0] // p.batch_size
    tr = Trainer(lora_mlp(p.rank), p.optimizer, steps=p.epochs * steps_per_epoch, stride=steps_per_epoch,
                 batch_size=p.batch_size, objective=dt.mlp_sampled_xent, init=dt.init_with_keep,
                 metrics=tails_metrics(p.batch_size, p.masks, p.mask_key))
    seeds = list(range(seed, seed + p.seeds))
    out = {}
    for rate in p.rates:
        h = tr.sweep((base, np.asarray(1 - rate, ft.X.dtype)), ft, grid(lr=[p.lr]), seeds)
        cell = {"test_loss_final_mean": float(np.asarray(h.metrics["test_loss"])[0, :, -1].mean())}
        for mode in MODES:
            a = np.asarray(h.metrics[mode], np.float64)[0]               # (S, epochs+1, 5)
            curves = a.mean(axis=0)                                      # mean over seeds
            cell[mode] = {name: curves[:, i].tolist() for i, name in enumerate(STAT_NAMES)}
            with np.errstate(divide="ignore", invalid="ignore"):
                g = a[:, -1, :] / a[:, 1, :]
            cell[mode]["growth_mean"] = float(np.mean(g[:, 0])) if np.all(a[:, 1, 0] > 0) else None
            cell[mode]["growth_q99"] = float(np.mean(g[:, 3])) if np.all(a[:, 1, 3] > 0) else None
            cell[mode]["growth_q99_per_seed"] = g[:, 3].tolist() if np.all(a[:, 1, 3] > 0) else None
            cell[mode]["max_over_training"] = float(a.max())
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(curves[:, 0] > 0, curves[:, 3] / curves[:, 0], np.nan)
            cell[mode]["q99_over_mean"] = [None if not np.isfinite(v) else float(v) for v in ratio]
        out[str(rate)] = cell
    return out


def verdict(m: dict) -> str:
    cells = []
    for rate, c in m.items():
        if float(rate) == 0.0:
            continue
        for mode in VERDICT_MODES:
            gq, gm = c[mode]["growth_q99"], c[mode]["growth_mean"]
            cells.append(gq is not None and gq >= MIN_GROWTH and gm is not None and gm < gq)
    if cells and all(cells):
        return "supported"
    return "partly supported" if sum(cells) * 2 >= len(cells) and cells else "not supported"


def plot(record: dict):
    """Mean and 99th percentile over entries of the per-entry gradient std, per epoch, in the three modes."""
    data = record["measurements"]
    fig, axes = figure(1, 3, figsize=(14, 4.6), sharey=True)
    titles = {"mask_std_minibatch": "across masks, one mini-batch", "mask_std_full": "across masks, full pass",
              "batch_std_no_dropout": "control: across mini-batches, no dropout"}
    for ax, mode in zip(axes, MODES):
        for i, (rate, c) in enumerate(data.items()):
            ep = np.arange(len(c[mode]["mean"]))
            ax.plot(ep[1:], np.asarray(c[mode]["mean"])[1:], "-", color=f"C{i}", label=f"drop {rate}: mean")
            ax.plot(ep[1:], np.asarray(c[mode]["q99"])[1:], "--", color=f"C{i}", label=f"drop {rate}: 99th pct")
        ax.set_yscale("symlog", linthresh=1e-4)
        ax.set_xlabel("epoch")
        ax.set_title(titles[mode])
    legend(axes[1], "below", ncol=len(data))
    axes[0].set_ylabel("per-entry std of ∂L/∂W₂\n(over entries: mean, 99th pct)")
    return fig


def _cell(gq, gm):
    return {mode: {"growth_q99": gq, "growth_mean": gm} for mode in MODES}


def _case(*cells):
    return {"0.0": _cell(None, None), **{str(0.1 * (i + 1)): c for i, c in enumerate(cells)}}


VERDICT_EXAMPLES = [
    (_case(_cell(1.11, 0.9), _cell(1.5, 1.2)), "supported"),
    (_case(_cell(1.09, 0.9), _cell(1.5, 1.2)), "partly supported"),   # q99 just under +10 % at one rate: half the cells
    (_case(_cell(1.2, 1.21), _cell(1.5, 1.2)), "partly supported"),   # the mean grows more than q99
    (_case(_cell(1.09, 0.9), _cell(1.05, 0.9), _cell(1.5, 1.0)), "not supported"),  # 2 of 6 cells
    (_case(_cell(None, None)), "not supported"),                      # growth undefined (std 0 after epoch 1)
    (_case(_cell(1.0, 0.9)), "not supported"),
]
