"""dropout.iterates: sampled-mask iterates track the expected-loss iterates only after many steps, with a
step-size-dependent gap that iterate averaging removes."""

from __future__ import annotations

import dataclasses

import numpy as np

from toyllora import models
from toyllora.claims import Setup, fmt
from toyllora.claims.dropout._common import delta_metrics, linear_switch_objective
from toyllora.config import LoraConfig
from toyllora.data import teacher_student
from toyllora.plotting import figure, legend
from toyllora.theory import dropout as dt
from toyllora.train import Trainer, grid

STATEMENT = ("Dropout acts as its expected (Tikhonov) regularizer only after many steps: within limited steps the "
             "sampled-mask iterates differ from the expected-loss iterates; with a constant step size they keep "
             "a gap that grows with the step size, and iterate averaging recovers the expected-loss minimizer "
             "(Clara, Langer, Schmidt-Hieber 2023).")
SOURCE = "review"
OPTIMIZERS = ("sgd", "adam")


@dataclasses.dataclass(frozen=True)
class Params:
    d_in: int = 12
    d_out: int = 4
    rank: int = 4
    alpha: float = 4.0
    n: int = 64
    n_test: int = 256
    cond: float = 3.0
    noise: float = 0.5
    site: str = "input"
    keep: float = 0.8
    steps: int = 3000
    stride: int = 20
    seeds: int = 8                       # master_seed, master_seed + 1, ...
    sgd_lrs: tuple = (0.1, 0.2, 0.4)
    adam_lrs: tuple = (0.003, 0.01, 0.03)
    tol: float = 0.05                    # d(t) <= tol: the sampled path has settled onto the expected one
    min_stay: float = 0.1                # ... and stays so for at least this share of the budget
    distance: str = "||ΔW_sampled(t) − ΔW_expected(t)|| / ||ΔW*||, ΔW* the weighted-ridge minimizer"
    averaging: str = "mean of the recorded iterates (every stride steps) over the second half"


SETUP = Setup(full=Params(), fast=Params(steps=600, seeds=3))


def lrs(p: Params, opt: str) -> tuple:
    return {"sgd": p.sgd_lrs, "adam": p.adam_lrs}[opt]


def rule(p: Params) -> str:
    return (f"Full-rank LoRA (r {p.rank}) on a teacher–student task (d_in {p.d_in}, d_out {p.d_out}, n {p.n}, "
            f"condition {fmt(p.cond)}, noise {fmt(p.noise)}), {p.site} dropout q = {fmt(p.keep)}, SGD (lr "
            f"{'/'.join(fmt(x) for x in p.sgd_lrs)}) and Adam (lr {'/'.join(fmt(x) for x in p.adam_lrs)}), "
            f"{p.steps} steps, {p.seeds} seeds, each seed paired with an expected-loss run from the same init. "
            "Gap d(t) = ||ΔW_sampled − ΔW_expected|| / ||ΔW*||. 'Limited steps' T_lim := the first recorded step "
            f"after which d(t) stays <= {fmt(p.tol)} to the end (infinite if it never does, or does for less than "
            f"the last {100 * p.min_stay:g} % of the budget). (a) T_lim > 0 (median over seeds) for both optimizers "
            "at the middle lr; (b) for SGD the late gap (mean over the last quarter, median over seeds) increases "
            "strictly with lr; (c) at the largest SGD lr, averaging the second half of the iterates at least halves "
            "the distance to the expected-loss minimizer ΔW*. Supported if (a), (b), (c); partly supported if one "
            "or two hold; not supported if none.")


def settle_step(d, steps, tol_, min_stay=0.1):
    """The first recorded step after which ``d`` stays <= ``tol_`` to the end of the run.

    None (not settled within the budget) if ``d`` ends above ``tol_`` or stays below it for less than
    ``min_stay`` of the budget.
    """
    above = np.nonzero(np.asarray(d) > tol_)[0]
    if len(above) == 0:
        return int(steps[0])
    if above[-1] == len(d) - 1:
        return None
    t = int(steps[above[-1] + 1])
    return t if steps[-1] - t >= min_stay * (steps[-1] - steps[0]) else None


def measure(p: Params, seed: int) -> dict:
    t = teacher_student(seed=seed, d_in=p.d_in, d_out=p.d_out, n_train=p.n, n_test=p.n_test, shift_rank=2,
                        cond=p.cond, noise=p.noise)
    X, Y, W = t.data.X, t.data.Y, t.W0
    target = np.asarray(dt.input_dropout_ridge(X, Y - X @ W.T, p.keep), np.float64)
    tn = np.linalg.norm(target)
    model = models.LinearLoRA(LoraConfig(rank=p.rank, alpha=p.alpha, keep=0.5, dropout_site=p.site))
    seeds = list(range(seed, seed + p.seeds))
    out = {"target_norm": float(tn), "per_optimizer": {}}
    for opt in OPTIMIZERS:
        opt_lrs = lrs(p, opt)
        tr = Trainer(model, opt, steps=p.steps, stride=p.stride, objective=linear_switch_objective,
                     init=dt.init_with_keep, metrics=delta_metrics)
        runs = {kind: tr.sweep((W, np.asarray(p.keep, X.dtype), np.asarray(mode, X.dtype)), t.data,
                               grid(lr=list(opt_lrs)), seeds) for kind, mode in (("sampled", 0.0), ("expected", 1.0))}
        rec_steps = np.asarray(runs["sampled"].steps)[0, 0]
        Ds = np.asarray(runs["sampled"].metrics["delta"], np.float64)   # (G, S, T, d_out, d_in)
        De = np.asarray(runs["expected"].metrics["delta"], np.float64)
        d = np.linalg.norm(Ds - De, axis=(-2, -1)) / tn                  # (G, S, T)
        ds = np.linalg.norm(Ds - target, axis=(-2, -1)) / tn
        de = np.linalg.norm(De - target, axis=(-2, -1)) / tn
        T = d.shape[-1]
        half, quarter = T // 2, T - T // 4
        avg = Ds[:, :, half:].mean(axis=2)
        d_avg = np.linalg.norm(avg - target, axis=(-2, -1)) / tn          # (G, S)
        final_loss = lambda kind, g: float(np.asarray(runs[kind].metrics["test_loss"])[g, :, -1].mean())
        per_lr = {}
        for g, lr in enumerate(opt_lrs):
            settle = [settle_step(d[g, s], rec_steps, p.tol, p.min_stay) for s in range(len(seeds))]
            settle_num = [np.inf if v is None else v for v in settle]
            per_lr[str(lr)] = {
                # the median over seeds, inf (recorded as None) when most seeds never settle
                "settle_step_per_seed": settle, "settle_step_median": float(np.median(settle_num)),
                "max_gap_median": float(np.median(d[g].max(axis=1))),
                "step_of_max_gap_median": float(np.median(rec_steps[d[g].argmax(axis=1)])),
                "floor_gap_median": float(np.median(d[g, :, quarter:].mean(axis=1))),
                "floor_gap_iqr": np.percentile(d[g, :, quarter:].mean(axis=1), [25, 75]).tolist(),
                "last_dist_to_min_median": float(np.median(ds[g, :, quarter:].mean(axis=1))),
                "avg_dist_to_min_median": float(np.median(d_avg[g])),
                "expected_run_dist_to_min_median": float(np.median(de[g, :, -1])),
                "test_loss_sampled_final_mean": final_loss("sampled", g),
                "test_loss_expected_final_mean": final_loss("expected", g),
                "gap_median_curve": np.median(d[g], axis=0).tolist(),
                "gap_q10_curve": np.percentile(d[g], 10, axis=0).tolist(),
                "gap_q90_curve": np.percentile(d[g], 90, axis=0).tolist(),
                "diverged": int(np.sum(np.asarray(runs["sampled"].diverged_step)[g] >= 0)
                                + np.sum(np.asarray(runs["expected"].diverged_step)[g] >= 0)),
            }
        out["per_optimizer"][opt] = {"lrs": list(opt_lrs), "steps": rec_steps.tolist(), "per_lr": per_lr}
    return out


def _settle(v):
    """A recorded settle step: None is infinite (never settled within the budget)."""
    return np.inf if v is None else v


def verdict(m: dict) -> str:
    po = m["per_optimizer"]
    a = all(_settle(po[o]["per_lr"][str(po[o]["lrs"][1])]["settle_step_median"]) > 0 for o in po)
    floors = [po["sgd"]["per_lr"][str(lr)]["floor_gap_median"] for lr in po["sgd"]["lrs"]]
    b = all(x < y for x, y in zip(floors, floors[1:]))
    big = po["sgd"]["per_lr"][str(po["sgd"]["lrs"][-1])]
    c = big["avg_dist_to_min_median"] * 2 <= big["last_dist_to_min_median"]
    n_ok = sum([a, b, c])
    return "supported" if n_ok == 3 else ("partly supported" if n_ok else "not supported")


def plot(record: dict):
    """The gap d(t) per optimizer and lr (median and 10–90 % band over seeds), the tolerance and T_lim."""
    data, p = record["measurements"], record["config"]["setup"]
    fig, axes = figure(1, 2, figsize=(12, 4.6))
    for ax, opt in zip(axes, [o for o in OPTIMIZERS if o in data["per_optimizer"]]):
        o = data["per_optimizer"][opt]
        steps = np.asarray(o["steps"])
        for i, lr in enumerate(o["lrs"]):
            r = o["per_lr"][str(lr)]
            ax.plot(steps[1:], np.asarray(r["gap_median_curve"])[1:], color=f"C{i}",
                    label=f"lr {lr}: median over seeds")
            ax.fill_between(steps[1:], np.asarray(r["gap_q10_curve"])[1:], np.asarray(r["gap_q90_curve"])[1:],
                            color=f"C{i}", alpha=0.15)
            if np.isfinite(_settle(r["settle_step_median"])):
                ax.axvline(r["settle_step_median"], color=f"C{i}", ls=":", lw=1, label=f"lr {lr}: T_lim (median)")
        ax.axhline(p["tol"], color="k", ls="--", lw=0.8, label=f"tolerance {p['tol']:g}")
        ax.set_yscale("log")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("||ΔW_sampled − ΔW_expected|| / ||ΔW*||")
        ax.set_title(f"{opt}: sampled dropout vs expected-loss path (q = {p['keep']:g})")
        legend(ax, "below", ncol=2)
    return fig


def _case(settle_sgd=280.0, settle_adam=None, floors=(0.05, 0.1, 0.2), avg=0.1, last=0.3):
    def opt(lrs_, settle, fl):
        per = {str(lr): {"settle_step_median": settle if k == 1 else 0.0, "floor_gap_median": f,
                         "avg_dist_to_min_median": avg, "last_dist_to_min_median": last}
               for k, (lr, f) in enumerate(zip(lrs_, fl))}
        return {"lrs": list(lrs_), "per_lr": per}
    return {"per_optimizer": {"sgd": opt((0.1, 0.2, 0.4), settle_sgd, floors),
                              "adam": opt((0.003, 0.01, 0.03), settle_adam, (0.01, 0.01, 0.01))}}


VERDICT_EXAMPLES = [
    (_case(), "supported"),                              # Adam never settles (inf, recorded as None): T_lim > 0
    (_case(settle_sgd=20.0, settle_adam=40.0), "supported"),
    (_case(settle_sgd=0.0), "partly supported"),         # (a) fails: SGD settled from the start
    (_case(floors=(0.05, 0.2, 0.2)), "partly supported"),  # (b) fails: not strictly increasing
    (_case(avg=0.15, last=0.3), "supported"),            # (c) exactly halved
    (_case(avg=0.16, last=0.3), "partly supported"),     # (c) just short of halving
    (_case(settle_adam=0.0, floors=(0.2, 0.1, 0.05)), "partly supported"),  # only (c)
    (_case(settle_adam=0.0, floors=(0.2, 0.1, 0.05), avg=0.3), "not supported"),
]
