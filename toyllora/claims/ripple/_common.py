"""What the ripple claims share: the scales and network kinds of ``ripple.bound`` and ``ripple.normalization``,
and the fine-tuning sweeps of ``ripple.performance`` and ``allora.input-gradient`` (cached per process)."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from toyllora import models
from toyllora.config import LoraConfig
from toyllora.data import deep_teacher
from toyllora.plotting import figure, legend
from toyllora.theory import ripple
from toyllora.train import Trainer, grid

SCALES = (0.25, 1.0, 4.0, 16.0)   # s = alpha / r
KINDS = ripple.KINDS              # ("aligned", "random")
INPUT_SEED_OFFSET = 10_000        # the random inputs of network seed k come from default_rng(10_000 + k)


def random_inputs(seed: int, n: int, d: int):
    """``n`` Gaussian inputs for the networks of seed ``seed`` (NumPy float64)."""
    return np.random.default_rng(INPUT_SEED_OFFSET + seed).standard_normal((n, d))


def exponent_fraction(curve, s, ratio):
    """Measured per-layer log-growth of ``curve`` over depth, as a fraction of the bound's ``log(1 + s m)``."""
    return float(np.log(ripple.growth_rate(curve)) / np.log1p(s * ratio))


# -- fine-tuning a deep multilinear net: ripple.performance and allora.input-gradient -------------------
@dataclasses.dataclass(frozen=True)
class Finetune:
    """The fine-tuning task and budget (one definition: both claims share the sweeps)."""

    depths: tuple = (2, 4, 8)
    log2_lrs: tuple = tuple(range(-10, 0))   # the learning-rate grid 2^k
    n_seeds: int = 4                         # optimization seeds master_seed, master_seed + 1, ...
    steps: int = 200
    stride: int = 20
    short: int = 20                          # the two budgets (steps) at which each method's lr is tuned
    long: int = 200
    d: int = 8
    n_train: int = 64
    n_test: int = 128
    shift_rank: int = 1                      # every layer of the teacher shifted by a rank-1 matrix of norm 1
    shift: float = 1.0
    rank: int = 2                            # LoRA rank
    optimizer: str = "adam"                  # full batch

    @property
    def lrs(self) -> list:
        return [2.0 ** k for k in self.log2_lrs]


FAST_FINETUNE = Finetune(depths=(2,), log2_lrs=tuple(range(-8, 0, 2)), n_seeds=2, steps=40, short=20, long=40)


def method_config(name: str, rank: int) -> LoraConfig:
    """The LoraConfig of a method name: ``LoRA s=<s>`` (alpha = s·r; s = 1 as scaling="none"), ``ALLoRA``
    (eta = the default, s = 1) or ``ALLoRA, input grad scaled`` (``scale_input_grad=True``)."""
    if name == "ALLoRA":
        return LoraConfig(rank=rank, method="allora", scaling="none")
    if name == "ALLoRA, input grad scaled":
        return LoraConfig(rank=rank, method="allora", scaling="none", scale_input_grad=True)
    if name == "LoRA s=1":
        return LoraConfig(rank=rank, scaling="none")
    if name.startswith("LoRA s="):
        return LoraConfig(rank=rank, alpha=float(name[len("LoRA s="):]) * rank)
    raise ValueError(f"method: unknown name {name!r}; use 'LoRA s=<s>', 'ALLoRA' or 'ALLoRA, input grad scaled'")


def _loss_metrics(model, base, frozen, params, data):
    return {"train_loss": models.loss(model, frozen, params, data.X, data.Y),
            "test_loss": models.loss(model, frozen, params, data.X_test, data.Y_test)}


@functools.lru_cache(maxsize=None)
def sweep(method: str, L: int, seed: int, f: Finetune) -> dict:
    """One vmapped ``Trainer.sweep`` (lr grid × seeds) of one method at one depth; cached per process."""
    base, data, _ = deep_teacher(seed, layers=L, d=f.d, n_train=f.n_train, n_test=f.n_test, shift_rank=f.shift_rank,
                                 shift=f.shift, base="gaussian")
    tr = Trainer(models.MultilinearLoRA(method_config(method, f.rank)), optimizer=f.optimizer, steps=f.steps,
                 stride=f.stride, metrics=_loss_metrics)
    h = tr.sweep(base, data, grid(lr=f.lrs), seeds=list(range(seed, seed + f.n_seeds)))
    initial = float(np.asarray(h.metrics["train_loss"])[0, 0, 0])   # the base model's loss (same for all)
    return {"train": np.asarray(h.metrics["train_loss"], np.float64) / initial,
            "test": np.asarray(h.metrics["test_loss"], np.float64) / initial,
            "steps": np.asarray(h.steps)[0, 0], "diverged": np.asarray(h.diverged_step), "initial_loss": initial}


def tuned(sw: dict, budget: int, lrs) -> dict:
    """The lr (on the grid) with the lowest mean train loss at ``budget`` among never-diverged ones."""
    i = int(np.where(sw["steps"] == budget)[0][0])
    train = sw["train"][:, :, i]                                   # (G, S)
    ok = np.all((sw["diverged"] < 0) | (sw["diverged"] >= budget), axis=1) & np.all(np.isfinite(train), axis=1)
    if not ok.any():
        return {"lr": None, "mean": None, "std": None, "se": None, "test_mean": None, "values": []}
    mean = np.where(ok, train.mean(1), np.inf)
    g = int(np.argmin(mean))
    S = train.shape[1]
    std = float(np.std(train[g], ddof=1)) if S > 1 else 0.0
    return {"lr": float(lrs[g]), "lr_index": g, "mean": float(train[g].mean()), "std": std,
            "se": std / np.sqrt(S), "test_mean": float(sw["test"][g, :, i].mean()),
            "test_std": float(np.std(sw["test"][g, :, i], ddof=1)) if S > 1 else 0.0,
            "values": train[g], "edge_of_grid": g in (0, len(lrs) - 1)}


def compare(a: dict, b: dict) -> float:
    """z = (mean_b − mean_a) / sqrt(se_a² + se_b²): positive when ``a`` reaches the lower loss."""
    if a["mean"] is None or b["mean"] is None:
        return float("nan")
    se = np.hypot(a["se"], b["se"])
    diff = b["mean"] - a["mean"]
    return float(diff / se) if se > 0 else float(np.sign(diff) * np.inf)


def finetune_data(f: Finetune, seed: int, methods) -> dict:
    """Tuned loss after the short and the long budget, per depth and method, and the long budget's curve."""
    out = {"depths": list(f.depths), "budgets": {"short": f.short, "long": f.long}, "methods": list(methods),
           "lrs": f.lrs, "results": {}}
    for L in f.depths:
        for m in methods:
            sw = sweep(m, L, seed, f)
            for bname, b in out["budgets"].items():
                out["results"][f"{m}|L={L}|{bname}"] = tuned(sw, b, f.lrs)
            out["results"][f"{m}|L={L}|curve"] = {"steps": sw["steps"], "best_lr_mean": sw["train"][
                out["results"][f"{m}|L={L}|long"].get("lr_index", 0)].mean(0)}
    return out


def plot_finetune(data: dict, methods=None):
    """Tuned loss (relative to the base model) against depth, short and long budget, mean ± std over seeds."""
    methods = methods or data["methods"]
    fig, axes = figure(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, (bname, b) in zip(axes, sorted(data["budgets"].items(), key=lambda kv: kv[1])):
        for i, m in enumerate(methods):
            rs = [data["results"][f"{m}|L={L}|{bname}"] for L in data["depths"]]
            ok = [(L, r) for L, r in zip(data["depths"], rs) if r["mean"] is not None]
            x = np.array([L for L, _ in ok]) * (1 + 0.03 * (i - (len(methods) - 1) / 2))  # dodged apart
            ax.errorbar(x, [r["mean"] for _, r in ok], [r["std"] for _, r in ok], fmt="o-", capsize=3,
                        color=f"C{i}", label=m)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(data["depths"], [str(L) for L in data["depths"]])
        ax.set_xlim(min(data["depths"]) / 1.3, max(data["depths"]) * 1.3)
        ax.set_xlabel("depth L (layers with LoRA)")
        ax.set_title(f"{bname} budget: {b} Adam steps")
    axes[0].set_ylabel("train loss / base model's loss (tuned lr)")
    legend(axes[1])
    return fig
