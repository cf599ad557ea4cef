"""dropout.gradient-tails: across masks, the per-entry std of the layer-2 gradient grows heavier-tailed in
training (Fig. 2) — judged on a scale-free tail measure against mini-batch noise without dropout."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from toyllora import models
from toyllora.claims import Setup, fmt
from toyllora.claims.dropout._common import (by_name, digits_draw, draw_seeds, groups_of, holm, lora_mlp,
                                             mlp_sampled_loss, one_sample, paired, run_flat, sizes_text)
from toyllora.data import diabetes
from toyllora.plotting import figure, legend
from toyllora.theory import dropout as dt
from toyllora.train import Trainer

STATEMENT = ("Dropout's gradient noise gets heavier-tailed during training (Fig. 2): per epoch, the per-entry std "
             "of the layer-2 gradient across masks has a mean that falls slightly and an upper tail that grows.")
SOURCE = "paper"
MODELS = ("digits", "diabetes")


@dataclasses.dataclass(frozen=True)
class Params:
    rates: tuple = (0.1, 0.2, 0.4)
    epochs: int = 24
    record_every: int = 3                  # epochs between records
    draws: int = 3
    seeds: int = 4                         # per draw
    batch_size: int = 32
    masks: int = 32                        # masks (or mini-batches, control) per record
    mask_key: int = 1234
    sizes: tuple = (64, 64, 64, 10)        # digits MLP, pre-trained
    pretrain_steps: int = 400
    pretrain_lr: float = 1e-2
    rank: int = 8
    lr: float = 3e-3
    diabetes_sizes: tuple = (10, 32, 32, 1)  # diabetes MLP, He init (no pre-training), squared loss
    diabetes_rank: int = 1                 # <= the width of the output layer
    diabetes_lr: float = 1e-2
    tail: str = "τ = q99 / mean over the entries of the per-entry std across masks (scale-free)"


SETUP = Setup(full=Params(), fast=Params(rates=(0.2,), epochs=2, record_every=1, draws=2, seeds=2, masks=4, pretrain_steps=100))


def rule(p: Params) -> str:
    return (f"Two models: the digits MLP {sizes_text(p.sizes)} pre-trained (Adam, {p.pretrain_steps} steps) and "
            f"LoRA-fine-tuned (r {p.rank}, lr {fmt(p.lr)}) on the shifted digits, and a diabetes MLP "
            f"{sizes_text(p.diabetes_sizes)} (He init, LoRA r {p.diabetes_rank}, lr {fmt(p.diabetes_lr)}, squared "
            f"loss); input dropout on every branch, Adam, batch {p.batch_size}, {p.epochs} epochs, {p.draws} task "
            f"draws × {p.seeds} seeds. Every {p.record_every} epochs: the gradient ∂L/∂W₂ of the hidden→hidden "
            f"layer on one fixed mini-batch under {p.masks} masks, its per-entry std across masks, and the "
            "scale-free tail measure τ = q99/mean over entries (the mask-induced std scales with the adapter, "
            "which grows from B = 0, so the std itself is not compared). Control: the dropout = 0 run of the same "
            f"draw and seed, τ of the per-entry std across {p.masks} random mini-batches (mini-batch noise, no "
            "masks). Per (model, rate > 0): growth g = log(τ at the last record / τ at the first record after the "
            "start); (i) g > 0 (one-sample) and (ii) g larger than the control's (paired by draw and seed); exact "
            "sign-flip tests, every draw agreeing, Holm over all (model, rate, test). Supported if (i) and (ii) "
            "win in every cell; partly supported if in some; not supported if in none while some cell refutes "
            "the claim (τ falls, (i) a loss, or grows less than under mini-batch noise without dropout, (ii) a "
            "loss); inconclusive otherwise. The mean of the std (not scale-free) is reported.")


def _std_stats(g):
    sd = jnp.std(g, axis=0).reshape(-1)
    m, q99 = jnp.mean(sd), jnp.quantile(sd, 0.99)
    return jnp.stack([m, q99, q99 / m])


@functools.lru_cache(maxsize=None)
def tails_metrics(batch_size: int, masks: int, mask_key: int, control: bool):
    """Per record: [mean, q99, q99/mean] over entries of the per-entry std of ∂L/∂W₂ across ``masks`` masks on
    the first ``batch_size`` training rows, or (``control``) across ``masks`` random mini-batches without dropout."""

    def metrics(model, base, frozen_keep, params, data):
        (Ws, bs), keep = frozen_keep[0], frozen_keep[1]

        def grad_w2(X, Y, key, q):
            def f(E):
                frozen = (Ws[:1] + (Ws[1] + E,) + Ws[2:], bs)
                return mlp_sampled_loss(model, (frozen, q), params, X, Y, key)
            return jax.grad(f)(jnp.zeros_like(Ws[1]))

        keys = jax.random.split(jax.random.key(mask_key), masks)
        if control:
            idx = jax.vmap(lambda k: jax.random.randint(k, (batch_size,), 0, data.X.shape[0]))(keys)
            g = jax.vmap(lambda i: grad_w2(data.X[i], data.Y[i], keys[0], jnp.ones((), data.X.dtype)))(idx)
        else:
            Xb, Yb = data.X[:batch_size], data.Y[:batch_size]
            g = jax.vmap(lambda k: grad_w2(Xb, Yb, k, keep))(keys)
        return {"std_stats": _std_stats(g), "test_loss": models.loss(model, (Ws, bs), params, data.X_test, data.Y_test)}

    return metrics


def _model_set(p: Params, name: str, seed: int):
    """Bases, data and the LoRA model of one toy over the master seed's draws."""
    bases, datas = [], []
    for ds in draw_seeds(seed, p.draws):
        if name == "digits":
            base, ft, _, _ = digits_draw(ds, sizes=tuple(p.sizes), steps=p.pretrain_steps, lr=p.pretrain_lr)
            bases.append((base,)), datas.append(ft)
        else:
            d, _ = diabetes(seed=ds)
            bases.append((models.init_mlp(jax.random.key(ds), tuple(p.diabetes_sizes)),)), datas.append(d)
    if name == "digits":
        return bases, datas, lora_mlp(p.rank), p.lr
    return bases, datas, lora_mlp(p.diabetes_rank, task="regression"), p.diabetes_lr


def tails_runs(p: Params, name: str, seed: int) -> dict:
    """τ curves (draws·seeds, records) per rate (masks) and for the control (rate 0, mini-batches)."""
    bases, datas, model, lr = _model_set(p, name, seed)
    n = datas[0].X.shape[0]
    spe = n // p.batch_size
    seeds = [1000 * seed + 500 + i for i in range(p.seeds)]
    out = {}
    for control in (False, True):
        rates = (0.0,) if control else p.rates
        tr = Trainer(model, "adam", steps=p.epochs * spe, stride=p.record_every * spe, batch_size=p.batch_size,
                     objective=mlp_sampled_loss, init=dt.init_with_keep,
                     metrics=tails_metrics(p.batch_size, p.masks, p.mask_key, control))
        idx, keep, sd = [], [], []
        for r in rates:
            for d in range(p.draws):
                for s in seeds:
                    idx.append(d), keep.append(1.0 - r), sd.append(s)
        m, _ = run_flat(tr, bases, datas, idx, (keep,), {"lr": np.full(len(sd), lr)}, sd, chunk=len(sd))
        st = np.asarray(m["std_stats"], np.float64).reshape(len(rates), p.draws * p.seeds, -1, 3)
        for i, r in enumerate(rates):
            out["control" if control else str(r)] = st[i]
    out["epochs"] = (np.arange(p.epochs // p.record_every + 1) * p.record_every).tolist()
    return out


def measure(p: Params, seed: int) -> dict:
    g = groups_of(p.draws, p.seeds)
    out, fam = {}, []
    for name in MODELS:
        runs = tails_runs(p, name, seed)
        growth = lambda st, k: np.log(st[:, -1, k] / st[:, 1, k])
        cell = {"epochs": runs["epochs"]}
        gc = growth(runs["control"], 2)
        for key in ["control"] + [str(r) for r in p.rates]:
            st = runs[key]
            cell[key] = {"tau_curve_mean": st[:, :, 2].mean(0).tolist(), "std_mean_curve": st[:, :, 0].mean(0).tolist(),
                         "tau_growth_per_unit": growth(st, 2).tolist(),
                         "mean_growth_geo": float(np.exp(growth(st, 0).mean())),
                         "tau_first": float(st[:, 1, 2].mean()), "tau_last": float(st[:, -1, 2].mean())}
        for r in p.rates:
            gr = growth(runs[str(r)], 2)
            fam.append(one_sample(gr, g, f"{name} {r:g}: τ grows"))
            fam.append(paired(gr, gc, g, f"{name} {r:g}: τ grows more than control"))
        out[name] = cell
    out["comparisons"] = holm(fam)
    return out


def verdict(m: dict) -> str:
    fam = by_name(m["comparisons"])
    cells = {k.rsplit(":", 1)[0] for k in fam}
    grows = [fam[f"{c}: τ grows"]["win"] == 1 and fam[f"{c}: τ grows more than control"]["win"] == 1 for c in cells]
    shrinks = [fam[f"{c}: τ grows"]["win"] == -1 or fam[f"{c}: τ grows more than control"]["win"] == -1
               for c in cells]
    if grows and all(grows):
        return "supported"
    if any(grows):
        return "partly supported"
    return "not supported" if any(shrinks) else "inconclusive"


def plot(record: dict):
    """τ = q99/mean of the per-entry std over training, per rate and for the mini-batch control, both models;
    the (not scale-free) mean std in the lower row."""
    m = record["measurements"]
    fig, axes = figure(2, 2, figsize=(12, 7.5), sharex="col")
    for j, name in enumerate(MODELS):
        c = m[name]
        ep = np.asarray(c["epochs"])[1:]
        keys = [k for k in c if k not in ("epochs",)]
        for i, k in enumerate(keys):
            lab = "control: mini-batches, no dropout" if k == "control" else f"drop {k}: masks"
            tau = np.asarray([np.nan if v is None else v for v in c[k]["tau_curve_mean"]], float)
            axes[0, j].plot(ep, tau[1:], "o-", color=f"C{i}", ms=3, label=lab)
            axes[1, j].plot(ep, np.asarray(c[k]["std_mean_curve"], float)[1:], "o-", color=f"C{i}", ms=3, label=lab)
        axes[0, j].set_title(f"{name}: tail measure τ (mean over units)")
        axes[0, j].set_ylabel("τ = q99 / mean of per-entry std")
        axes[1, j].set_yscale("log")
        axes[1, j].set_ylabel("mean per-entry std (scales with the adapter)")
        axes[1, j].set_xlabel("epoch")
    legend(axes[1, 0], "below", ncol=2)
    legend(axes[1, 1], "below", ncol=2)
    return fig


def _case(i=(1, 1), ii=(1, 1)):
    fam = []
    for k, (a, b) in enumerate(zip(i, ii)):
        fam.append({"name": f"m {k}: τ grows", "win": a})
        fam.append({"name": f"m {k}: τ grows more than control", "win": b})
    return {"comparisons": fam}


VERDICT_EXAMPLES = [
    (_case(), "supported"),
    (_case(ii=(1, 0)), "partly supported"),       # one cell grows no more than mini-batch noise does
    (_case(i=(1, -1), ii=(1, 0)), "partly supported"),
    (_case(i=(-1, 0), ii=(0, 0)), "not supported"),   # τ falls in a cell, grows in none
    (_case(i=(1, 1), ii=(0, 0)), "inconclusive"),     # grows, but not beyond the control anywhere
    (_case(i=(1, 0), ii=(-1, 0)), "not supported"),   # grows less than under mini-batch noise without dropout
    (_case(i=(0, 0), ii=(0, 0)), "inconclusive"),
]
