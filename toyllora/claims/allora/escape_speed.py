"""allora.escape-speed: ALLoRA leaves the B = 0 start faster than LoRA at the same base learning rate."""

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

STATEMENT = ("ALLoRA escapes the B = 0 start faster than LoRA at the same base learning rate l_b, like LoRA at "
             "eta·l_b (the paper's Fig. 5 right).")
SOURCE = "paper"
RUNS = ("allora", "lora@l_b", "lora@eta*l_b")


@dataclasses.dataclass(frozen=True)
class Params:
    steps: int = 80
    seeds: int = 10               # optimization seeds 1000·master + seed_offset + i; the task is drawn from master
    seed_offset: int = 900
    d_in: int = 16
    d_out: int = 8
    n_train: int = 64
    n_test: int = 64
    shift_rank: int = 2
    noise: float = 0.1
    rank: int = 4
    eta: float = protocol.ALLORA_ETA
    lr_sgd: float = 0.01          # l_b under SGD
    lr_adam: float = 0.002        # l_b under Adam
    threshold: float = 0.1        # escape: max row norm of BA >= threshold × mean row norm of the true shift
    faster_factor: float = 0.8    # ALLoRA is faster if its median escape step <= faster_factor × LoRA@l_b's


SETUP = Setup(full=Params(), fast=Params(steps=40, seeds=4))


def rule(p: Params) -> str:
    return (f"OLS toy (d_in {p.d_in}, d_out {p.d_out}, shift rank {p.shift_rank}), rank {p.rank}, LoRA with s = 1 "
            f"and no dropout (so it differs from ALLoRA only by the factor c), eta = {fmt(p.eta)}, l_b = "
            f"{fmt(p.lr_sgd)} (SGD) / {fmt(p.lr_adam)} (Adam), {p.seeds} seeds, {p.steps} steps. Escape step = "
            f"first step where the largest row norm of BA reaches {p.threshold:.0%} of the mean row norm of the "
            "true shift. ALLoRA is faster under an optimizer if its median escape step over seeds is <= "
            f"{fmt(p.faster_factor)} × LoRA@l_b's. supported if faster under both SGD and Adam; partly supported "
            "if under exactly one; not supported if under neither.")


def measure(p: Params, seed: int) -> dict:
    """Row norms of BA over the first steps: ALLoRA at l_b, LoRA (s = 1) at l_b and at eta·l_b."""
    t = teacher_student(seed=seed, d_in=p.d_in, d_out=p.d_out, n_train=p.n_train, n_test=p.n_test,
                        shift_rank=p.shift_rank, noise=p.noise)
    steps, eta, lr = p.steps, p.eta, {"sgd": p.lr_sgd, "adam": p.lr_adam}
    theta = p.threshold * float(np.mean(np.linalg.norm(np.asarray(t.delta), axis=1)))
    seeds = list(range(1000 * seed + p.seed_offset, 1000 * seed + p.seed_offset + p.seeds))
    lora_cfg = LoraConfig(rank=p.rank, alpha=float(p.rank))  # s = 1, no dropout: differs from ALLoRA only by c
    al_cfg = LoraConfig(rank=p.rank, method="allora", scaling="none", eta=eta)
    out = {"theta": theta, "steps": steps, "eta": eta, "lr": lr, "seeds": seeds}
    for name, cfg in (("lora", lora_cfg), ("allora", al_cfg)):
        tr = Trainer(models.LinearLoRA(cfg), optimizer=protocol.ProtocolOptimizer(), steps=steps, stride=1,
                     metrics=rownorm_metrics)
        for o in protocol.OPTIMIZERS:
            lb = lr[o]
            lrs = [lb, eta * lb] if name == "lora" else [lb]
            g = {"lr": np.asarray(lrs), "adam": np.full(len(lrs), float(o == "adam"))}
            h = tr.sweep(t.W0, t.data, g, seeds)
            rn = np.asarray(h.metrics["rownorms"]).max(axis=-1)  # (G, S, records)
            for i in range(len(lrs)):
                key = name if name == "allora" else ("lora@l_b" if i == 0 else "lora@eta*l_b")
                above = rn[i] >= theta
                esc = np.where(above.any(axis=1), above.argmax(axis=1), steps + 1)
                out.setdefault(o, {})[key] = {"escape_step": esc.tolist(),
                                              "median_escape": float(np.median(esc)),
                                              "curve_mean": rn[i].mean(axis=0).tolist()}
    for o in protocol.OPTIMIZERS:
        r_ = out[o]
        r_["ratio_allora_to_lora"] = r_["allora"]["median_escape"] / r_["lora@l_b"]["median_escape"]
        r_["ratio_allora_to_lora_eta"] = r_["allora"]["median_escape"] / r_["lora@eta*l_b"]["median_escape"]
        r_["faster"] = r_["allora"]["median_escape"] <= p.faster_factor * r_["lora@l_b"]["median_escape"]
    rows = [[o, k, f"{out[o][k]['median_escape']:.0f}"] for o in protocol.OPTIMIZERS for k in RUNS]
    out["table_md"] = stats.markdown_table(["optimizer", "run", "median escape step"], rows)
    return out


def verdict(m: dict) -> str:
    n = sum(bool(m[o]["faster"]) for o in protocol.OPTIMIZERS)
    return "supported" if n == 2 else ("partly supported" if n == 1 else "not supported")


def plot(record: dict):
    """Mean over seeds of the largest row norm of BA, per optimizer, with the escape threshold."""
    data = record["measurements"]
    fig, axes = figure(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, o in zip(axes, protocol.OPTIMIZERS):
        for k, st in zip(RUNS, ("-", "--", ":")):
            ax.plot(data[o][k]["curve_mean"], st, label=f"{k} (median escape {data[o][k]['median_escape']:.0f})")
        ax.axhline(data["theta"], color="k", lw=0.7, label="escape threshold")
        ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_title(f"{o.upper()}, l_b = {data['lr'][o]}")
        legend(ax, "below")
    axes[0].set_ylabel("max row norm of BA (mean over seeds)")
    return fig


def _case(sgd_faster, adam_faster):
    return {"sgd": {"faster": sgd_faster}, "adam": {"faster": adam_faster}}


VERDICT_EXAMPLES = [
    (_case(True, True), "supported"),
    (_case(True, False), "partly supported"),
    (_case(False, True), "partly supported"),
    (_case(False, False), "not supported"),
]
