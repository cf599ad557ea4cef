"""allora.adam-cancellation: under Adam ALLoRA's per-row factor on B is normalized away (trajectory ≈ LoRA's)."""

from __future__ import annotations

import dataclasses

import numpy as np

from toyllora import models, protocol
from toyllora.claims import Setup, fmt
from toyllora.claims.allora._common import rownorm_metrics
from toyllora.config import LoraConfig
from toyllora.data import teacher_student
from toyllora.plotting import figure, legend
from toyllora.protocol import stats
from toyllora.train import Trainer

STATEMENT = ("Under Adam a slowly varying per-row factor on B's gradient is normalized away: ALLoRA with the "
             "factor on B only follows LoRA's trajectory under Adam, but not under SGD.")
SOURCE = "review"


@dataclasses.dataclass(frozen=True)
class Params:
    steps: int = 100
    stride: int = 2               # ΔW recorded every `stride` steps
    seeds: int = 10               # optimization seeds 1000·master + seed_offset + i; the task is drawn from master
    seed_offset: int = 800
    adapts: tuple[str, ...] = ("both", "B", "A")   # where ALLoRA's factor acts
    d_in: int = 16
    d_out: int = 8
    n_train: int = 64
    n_test: int = 64
    shift_rank: int = 8
    noise: float = 0.1
    rank: int = 4
    eta: float = protocol.ALLORA_ETA
    lr_sgd: float = 0.05
    lr_adam: float = 0.005
    task: str = "OLS high-rank shift"
    lora_s: float = 1.0


SETUP = Setup(full=Params(), fast=Params(steps=40, seeds=4, adapts=("both", "B")))


def rule(p: Params) -> str:
    return (f"OLS toy (high-rank shift: d_in {p.d_in}, d_out {p.d_out}, shift rank {p.shift_rank}), rank {p.rank}, "
            f"LoRA with s = {fmt(p.lora_s)} and ALLoRA (eta = {fmt(p.eta)}, adapt {' / '.join(p.adapts)}) from the "
            f"same {p.seeds} seeds and lr ({fmt(p.lr_sgd)} SGD, {fmt(p.lr_adam)} Adam), {p.steps} steps. Measure "
            "per seed m = max over steps of ||ΔW_ALLoRA(t) − ΔW_LoRA(t)||_F / ||ΔW_LoRA(T)||_F. With medians a "
            "(Adam, adapt B) and s (SGD, adapt B): supported if a < 0.1 and a < s/3; partly supported if a < s; "
            "otherwise not supported.")


def measure(p: Params, seed: int) -> dict:
    """Trajectory of ΔW for ALLoRA (each adapt) against LoRA (s = 1), same lr and seeds."""
    t = teacher_student(seed=seed, d_in=p.d_in, d_out=p.d_out, n_train=p.n_train, n_test=p.n_test,
                        shift_rank=p.shift_rank, noise=p.noise)
    seeds = list(range(1000 * seed + p.seed_offset, 1000 * seed + p.seed_offset + p.seeds))
    lrs = {"sgd": p.lr_sgd, "adam": p.lr_adam}
    cfgs = {"lora": LoraConfig(rank=p.rank, alpha=p.lora_s * p.rank)}
    for ad in p.adapts:
        cfgs[f"allora-{ad}"] = LoraConfig(rank=p.rank, method="allora", scaling="none", eta=p.eta, adapt=ad)
    deltas = {}
    for name, cfg in cfgs.items():
        tr = Trainer(models.LinearLoRA(cfg), optimizer=protocol.ProtocolOptimizer(), steps=p.steps, stride=p.stride,
                     metrics=rownorm_metrics)
        for o in protocol.OPTIMIZERS:
            g = {"lr": np.asarray([lrs[o]]), "adam": np.asarray([float(o == "adam")])}
            deltas[name, o] = np.asarray(tr.sweep(t.W0, t.data, g, seeds).metrics["delta"])[0]  # (S, R, o, i)
    out = {"lr": lrs, "steps": p.steps, "seeds": seeds, "adapts": list(p.adapts)}
    rows = []
    for o in protocol.OPTIMIZERS:
        ref = deltas["lora", o]
        scale_ = np.linalg.norm(ref[:, -1], axis=(-2, -1))  # ||ΔW_LoRA(T)|| per seed
        out[o] = {}
        for ad in p.adapts:
            diff = np.linalg.norm(deltas[f"allora-{ad}", o] - ref, axis=(-2, -1)) / scale_[:, None]
            mx = diff.max(axis=1)
            out[o][ad] = {"max_rel_diff": mx.tolist(), "median_max_rel_diff": float(np.median(mx)),
                          "curve_mean": diff.mean(axis=0).tolist()}
            rows.append([o, ad, stats.mean_std(mx)])
    out["table_md"] = stats.markdown_table(
        ["optimizer", "ALLoRA adapt", "max_t ||ΔW_ALLoRA(t) − ΔW_LoRA(t)|| / ||ΔW_LoRA(T)||, mean ± std"], rows)
    out["ratio_adam_to_sgd_B"] = out["adam"]["B"]["median_max_rel_diff"] / out["sgd"]["B"]["median_max_rel_diff"]
    return out


def verdict(m: dict) -> str:
    a, s = m["adam"]["B"]["median_max_rel_diff"], m["sgd"]["B"]["median_max_rel_diff"]
    if a < 0.1 and a < s / 3:
        return "supported"
    return "partly supported" if a < s else "not supported"


def plot(record: dict):
    """Relative distance of ALLoRA's ΔW trajectory from LoRA's, per adapt, under SGD and Adam."""
    data = record["measurements"]
    stride = record["config"]["setup"]["stride"]
    fig, axes = figure(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, o in zip(axes, protocol.OPTIMIZERS):
        for ad in data["adapts"]:
            c = data[o][ad]["curve_mean"]
            ax.plot(np.arange(len(c)) * stride, c, label=f"adapt = {ad}")
        ax.set_xlabel("optimizer step")
        ax.set_title(f"{o.upper()} (lr {data['lr'][o]})")
    axes[0].set_ylabel("||ΔW_ALLoRA − ΔW_LoRA|| / ||ΔW_LoRA(T)||")
    legend(axes[1])
    return fig


def _case(adam_b, sgd_b):
    return {"adam": {"B": {"median_max_rel_diff": adam_b}}, "sgd": {"B": {"median_max_rel_diff": sgd_b}}}


VERDICT_EXAMPLES = [
    (_case(0.01, 0.5), "supported"),
    (_case(0.099, 0.3), "supported"),         # a just below 0.1, a < s/3 = 0.1
    (_case(0.1, 0.5), "partly supported"),    # a = 0.1 is not < 0.1
    (_case(0.05, 0.15), "partly supported"),  # a < 0.1 but a = s/3, not below
    (_case(0.3, 0.31), "partly supported"),   # a just below s
    (_case(0.3, 0.3), "not supported"),       # a = s
    (_case(0.5, 0.2), "not supported"),
]
