"""lora.rank-stability: rsLoRA's claim — with s = α/√r learning is rank-stable, with s = α/r it collapses as r grows."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from toyllora import models, protocol
from toyllora.claims import Setup, fmt
from toyllora.config import LoraConfig
from toyllora.data import teacher_student
from toyllora.plotting import figure, legend
from toyllora.protocol import stats
from toyllora.train import Trainer

STATEMENT = ("rsLoRA (Kalajdzievski 2023): with the scaling s = α/√r LoRA's learning is rank-stable — the "
             "same learning rate learns as fast at every rank — while with s = α/r it slows down as r grows.")
SOURCE = "extension"
FLAW = "allora"           # the ledger's flaws have no "lora"; rsLoRA is one of ALLoRA's baselines
SCALINGS = {"lora": "α/r", "rslora": "α/√r"}
TOL = 0.2                 # |log-log slope| below this: rank-stable


@dataclasses.dataclass(frozen=True)
class Params:
    ranks: tuple[int, ...] = (2, 4, 8, 16, 32)
    alpha: float = 4.0
    lrs_sgd: tuple[float, ...] = (0.02, 0.005)
    lrs_adam: tuple[float, ...] = (0.002, 0.0005)
    steps: int = 20
    stride: int = 10
    seeds: int = 8                 # optimization seeds 1000·master + 700 + i; the task is drawn from master
    d_in: int = 64
    d_out: int = 32
    n_train: int = 128
    n_test: int = 128
    shift_rank: int = 32
    noise: float = 0.1

    def lrs(self, optimizer: str) -> tuple[float, ...]:
        return {"sgd": self.lrs_sgd, "adam": self.lrs_adam}[optimizer]


SETUP = Setup(full=Params(), fast=Params(ranks=(2, 8, 32), seeds=4))


def rule(p: Params) -> str:
    lrs = "; ".join(f"{o.upper()} {fmt(p.lrs(o))}" for o in protocol.OPTIMIZERS)
    return (f"OLS teacher–student (d_in {p.d_in}, d_out {p.d_out}, full-rank shift {p.shift_rank}), LoRA of rank "
            f"r ∈ {fmt(p.ranks)} with s = α/r and s = α/√r (α = {fmt(p.alpha)}), the same learning rates at "
            f"every rank ({lrs}), {p.seeds} seeds, full batch. Learning speed = the fraction of the training loss "
            f"removed in {p.steps} steps; per seed the least-squares slope of log speed against log r; its mean "
            f"with the 95% t-interval over seeds. A scaling is rank-stable at an lr if that interval lies inside "
            f"(−{TOL:g}, {TOL:g}), and collapses if it lies below −{TOL:g}. Control: the other scaling at the same "
            "lr and ranks — rsLoRA's claim holds under an optimizer if, at every lr, α/√r is rank-stable and α/r "
            "collapses. supported if it holds under both SGD and Adam; partly supported if under one; not "
            "supported if under neither. Reported: the same slopes of ||∇_B L|| at init (theory: 0 for α/√r, "
            "−1/2 for α/r) and whether α/r is rank-stable under Adam (theory: Adam's per-coordinate steps make "
            "s·r, i.e. α/r, the rank-stable choice).")


def grad_metrics(model, base, frozen, params, data):
    """Training loss and the norms of the full-batch gradients of A and B."""
    def f(q):
        return models.loss(model, frozen, q, data.X, data.Y)
    loss, g = jax.value_and_grad(f)(params)
    return {"train_loss": loss, "grad_B": jnp.linalg.norm(g.B), "grad_A": jnp.linalg.norm(g.A)}


def _slopes(ranks, y) -> np.ndarray:
    """Per seed (rows of ``y``: seeds × ranks): the least-squares slope of log y against log r (NaN if y <= 0)."""
    y = np.asarray(y, dtype=np.float64)
    x = np.log(np.asarray(ranks, dtype=np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        ly = np.where(y > 0, np.log(np.where(y > 0, y, 1.0)), np.nan)
    xc = x - x.mean()
    return (ly - ly.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)


def slope_summary(slopes) -> dict:
    """Mean slope and its 95% t-interval over seeds (``None`` where a run diverged or removed no loss)."""
    s = np.asarray(slopes, dtype=np.float64)
    if not np.all(np.isfinite(s)):
        return {"mean": None, "lo": None, "hi": None, "n": len(s), "failed": int((~np.isfinite(s)).sum())}
    d = stats.paired_difference(s, np.zeros_like(s))
    return {"mean": d["mean"], "lo": d["lo"], "hi": d["hi"], "n": len(s), "failed": 0}


def stable(e: dict) -> bool:
    """The slope's interval lies inside (−TOL, TOL)."""
    return e["lo"] is not None and e["lo"] > -TOL and e["hi"] < TOL


def collapses(e: dict) -> bool:
    """The slope's interval lies below −TOL."""
    return e["hi"] is not None and e["hi"] < -TOL


def holds(m: dict, optimizer: str) -> bool:
    """rsLoRA's claim under one optimizer: at every lr, α/√r rank-stable and α/r collapsing."""
    return all(stable(e["rslora"]) and collapses(e["lora"]) for e in m[optimizer]["per_lr"])


def measure(p: Params, seed: int) -> dict:
    t = teacher_student(seed=seed, d_in=p.d_in, d_out=p.d_out, n_train=p.n_train, n_test=p.n_test,
                        shift_rank=p.shift_rank, noise=p.noise)
    seeds = list(range(1000 * seed + 700, 1000 * seed + 700 + p.seeds))
    points = [(o, lr) for o in protocol.OPTIMIZERS for lr in p.lrs(o)]
    g = {"lr": np.asarray([lr for _, lr in points]), "adam": np.asarray([float(o == "adam") for o, _ in points]),
         "b_ratio": np.ones(len(points))}
    speed, gradb = {}, {}
    for sc in SCALINGS:
        rows_s, rows_g = [], []
        for r in p.ranks:
            cfg = LoraConfig(rank=r, alpha=p.alpha, scaling=sc)
            tr = Trainer(models.LinearLoRA(cfg), optimizer=protocol.ProtocolOptimizer(), steps=p.steps,
                         stride=p.stride, metrics=grad_metrics)
            h = tr.sweep(t.W0, t.data, g, seeds)
            loss = np.asarray(h.metrics["train_loss"], dtype=np.float64)      # (points, seeds, records)
            ok = np.asarray(h.diverged_step) < 0
            rows_s.append(np.where(ok, 1.0 - loss[..., -1] / loss[..., 0], np.nan))
            rows_g.append(np.asarray(h.metrics["grad_B"], dtype=np.float64)[0, :, 0])   # at init, any point
        speed[sc] = np.stack(rows_s, axis=-1)       # (points, seeds, ranks)
        gradb[sc] = np.stack(rows_g, axis=-1)       # (seeds, ranks)
    out = {"ranks": list(p.ranks), "points": [{"optimizer": o, "lr": lr} for o, lr in points], "seeds": seeds}
    res, rows = {}, []
    for o in protocol.OPTIMIZERS:
        res[o] = []
        for lr in p.lrs(o):
            i = points.index((o, lr))
            e = {"lr": lr}
            for sc in SCALINGS:
                e[sc] = slope_summary(_slopes(p.ranks, speed[sc][i]))
                e[sc]["speed_mean"] = np.nanmean(speed[sc][i], axis=0).tolist()
                rows.append([o, f"{lr:g}", SCALINGS[sc], " ".join(f"{v:.3g}" for v in e[sc]["speed_mean"]),
                             "—" if e[sc]["mean"] is None else f"{e[sc]['mean']:+.3f} [{e[sc]['lo']:+.3f}, "
                                                              f"{e[sc]['hi']:+.3f}]"])
            res[o].append(e)
        out[o] = {"per_lr": res[o]}
        out[o]["holds"] = holds(out, o)
        out[o]["lora_stable"] = all(stable(e["lora"]) for e in res[o])
    out["grad_B_init"] = {sc: {**slope_summary(_slopes(p.ranks, gradb[sc])),
                               "mean_norm": gradb[sc].mean(axis=0).tolist()} for sc in SCALINGS}
    out["table_md"] = stats.markdown_table(
        ["optimizer", "lr", "scaling", f"speed (loss fraction removed in {p.steps} steps) per rank",
         "slope of log speed vs log r [95% CI]"], rows)
    return out


def verdict(m: dict) -> str:
    n = sum(holds(m, o) for o in protocol.OPTIMIZERS)
    return "supported" if n == 2 else ("partly supported" if n == 1 else "not supported")


def plot(record: dict):
    """Learning speed against rank (log-log), per optimizer and lr, for s = α/r and s = α/√r."""
    data = record["measurements"]
    ranks = data["ranks"]
    fig, axes = figure(1, 3, figsize=(13, 4.2))
    for ax, o in zip(axes[:2], protocol.OPTIMIZERS):
        for k, e in enumerate(data[o]["per_lr"]):
            for sc, ls in (("lora", "-"), ("rslora", "--")):
                ax.plot(ranks, e[sc]["speed_mean"], ls, marker="o", color=f"C{k}",
                        label=f"{SCALINGS[sc]}, lr {e['lr']:g}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("rank r")
        ax.set_title(f"{o.upper()}: loss fraction removed")
        legend(ax)
    for sc, ls in (("lora", "-"), ("rslora", "--")):
        axes[2].plot(ranks, data["grad_B_init"][sc]["mean_norm"], ls, marker="o", label=SCALINGS[sc])
    axes[2].set_xscale("log", base=2)
    axes[2].set_yscale("log")
    axes[2].set_xlabel("rank r")
    axes[2].set_title("||∇_B L|| at init")
    legend(axes[2])
    axes[0].set_ylabel("speed (mean over seeds)")
    return fig


def _ci(lo, hi):
    return {"lo": lo, "hi": hi}


GOOD = {"rslora": _ci(-0.1, 0.1), "lora": _ci(-1.1, -0.9)}


def _case(sgd=(GOOD,), adam=(GOOD,)):
    """Per optimizer: one {scaling: slope interval} per lr."""
    return {"sgd": {"per_lr": list(sgd)}, "adam": {"per_lr": list(adam)}}


def _lr(rslora=(-0.1, 0.1), lora=(-1.1, -0.9)):
    return {"rslora": _ci(*rslora), "lora": _ci(*lora)}


VERDICT_EXAMPLES = [
    (_case(), "supported"),
    (_case(sgd=(GOOD, _lr(rslora=(-0.199, 0.199), lora=(-0.5, -0.201)))), "supported"),   # just inside
    (_case(adam=(_lr(rslora=(0.3, 0.7), lora=(-0.1, 0.1)),)), "partly supported"),        # Adam: the reverse
    (_case(sgd=(GOOD, _lr(rslora=(-0.2, 0.1)))), "partly supported"),     # α/√r's interval touches −0.2
    (_case(sgd=(_lr(rslora=(-0.1, 0.2)),)), "partly supported"),          # ... or +0.2
    (_case(adam=(_lr(lora=(-0.5, -0.2)),)), "partly supported"),          # α/r's upper end at −0.2: no collapse
    (_case(adam=(_lr(rslora=(None, None)),)), "partly supported"),        # a run failed: no slope
    (_case(sgd=(_lr(lora=(-0.3, 0.0)),), adam=(_lr(rslora=(0.1, 0.5)),)), "not supported"),
]
