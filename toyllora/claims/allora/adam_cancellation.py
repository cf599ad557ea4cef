"""allora.adam-cancellation: under Adam ALLoRA's per-row factor is normalized away (trajectory ≈ LoRA's)."""

from __future__ import annotations

import dataclasses

import numpy as np

from toyllora import lora, models, protocol
from toyllora.claims import Setup, fmt
from toyllora.claims.allora._common import EFFECT, cells, compare, decide, diff_table, negligible
from toyllora.config import LoraConfig
from toyllora.data import teacher_student
from toyllora.plotting import figure, legend
from toyllora.protocol import stats
from toyllora.protocol import tasks as tasks_lib
from toyllora.train import Trainer

STATEMENT = ("Under Adam ALLoRA's slowly varying per-row factor is normalized away: ALLoRA — the paper's (factor "
             "on A and B) and the factor on B alone — follows LoRA's trajectory under Adam, but not under SGD.")
SOURCE = "review"
ADAPTS = ("both", "B", "A")            # where ALLoRA's factor acts; "both" is the paper's ALLoRA
DECIDING = ("both", "B")               # the adapts the verdict needs
NEAR = 0.1                             # "follows": max relative distance below this
CONTROL_FACTOR = 3.0                   # ... and below SGD's distance / 3
# The protocol's one-sided ALLoRA methods, scored against LoRA of the same forward function (s = 1, no dropout).
PROTOCOL_PAIRS = (("allora", "lora-s1-d0"), ("allora-B", "lora-s1-d0"), ("allora-A", "lora-s1-d0"))
TUNE_BUDGET = protocol.Budget(short=50, long=100, stride=2, lr_points=8, lr_step=1.0, tune_seeds=2, final_seeds=10,
                              batch_size=64, lora_plus_ratios=(4.0, 16.0), draws=1, max_extension=3)


@dataclasses.dataclass(frozen=True)
class Params:
    # The trajectory toy: tuned on validation with tune_budget's tuning seeds; trajectories on its final seeds
    # (1000·master + 500 + i, disjoint), full batch, tune_budget.long steps, ΔW every tune_budget.stride steps.
    tune_budget: protocol.Budget = TUNE_BUDGET
    adapts: tuple[str, ...] = ADAPTS
    d_in: int = 16
    d_out: int = 8
    n_train: int = 64
    n_test: int = 64
    shift_rank: int = 8
    noise: float = 0.1
    rank: int = 4
    eta: float = protocol.ALLORA_ETA
    task: str = "OLS high-rank shift"
    lora_s: float = 1.0
    # The protocol check of the one-sided methods (reported, not part of the verdict)
    budget: protocol.Budget = protocol.FULL_BUDGET
    protocol_tasks: tuple[str, ...] = ("ols-low",)


SETUP = Setup(full=Params(),
              fast=Params(tune_budget=dataclasses.replace(TUNE_BUDGET, short=20, long=40, lr_points=4, lr_step=2.0,
                                                          final_seeds=4, max_extension=1),
                          adapts=("both", "B"), budget=protocol.FAST_BUDGET, protocol_tasks=protocol.FAST_TASKS))


def rule(p: Params) -> str:
    b = p.tune_budget
    return (f"OLS toy (high-rank shift: d_in {p.d_in}, d_out {p.d_out}, shift rank {p.shift_rank}), rank {p.rank}, "
            f"LoRA with s = {fmt(p.lora_s)} and ALLoRA (eta = {fmt(p.eta)}; factor on {' / '.join(p.adapts)}, "
            "'both' being the paper's ALLoRA), full batch, "
            f"{b.long} steps. The learning rate of every method under each optimizer is chosen by the protocol's "
            f"rule, not by hand: the log2 grid of {b.lr_points} points (SGD up to 1, Adam up to 0.5), extended while "
            f"the pick sits at an edge (up to {b.max_extension} steps), the best mean validation score over "
            f"{b.tune_seeds} tuning seeds; the trajectories then run at each method's own selected lr on "
            f"{b.final_seeds} fresh seeds (disjoint from the tuning seeds). Per seed m = max over steps of "
            "||ΔW_ALLoRA(t) − ΔW_LoRA(t)||_F / ||ΔW_LoRA(T)||_F; a = its median under Adam, s = under SGD. "
            f"Control: SGD, which normalizes nothing — the factor is 'normalized away' (cancels) for an adapt "
            f"only if a < {NEAR:g} and a < s/{CONTROL_FACTOR:g}; cancellation fails if Adam's trajectories are "
            "not close to LoRA's, or if SGD's (at their own tuned lr) are about as close. inconclusive if any "
            "selected lr is still at an edge of its extended grid; otherwise supported if it cancels for both "
            "the paper's ALLoRA (both) and the factor on B; partly supported if for exactly one of them; not "
            "supported if for neither. Reported, not deciding: the distances at LoRA's selected lr for every "
            "method (the same-lr comparison), and the protocol's one-sided methods allora-B / allora-A and "
            f"allora against LoRA with s = 1 and no dropout on {fmt(p.protocol_tasks)} (sign-flip tests, Holm; "
            f"|difference| < {EFFECT:g} points counts as negligible).")


def trajectory_metrics(model, base, frozen, params, data):
    """The protocol's losses (for tuning) and ΔW itself (for the trajectories)."""
    out = tasks_lib.metrics(model, base, frozen, params, data)
    out["delta"] = lora.delta(params, model.cfg)
    return out


def configs(p: Params) -> dict:
    """``{name: LoraConfig}``: LoRA (s = lora_s, no dropout) and ALLoRA for every adapt."""
    out = {"lora": LoraConfig(rank=p.rank, alpha=p.lora_s * p.rank)}
    for ad in p.adapts:
        out[f"allora-{ad}"] = LoraConfig(rank=p.rank, method="allora", scaling="none", eta=p.eta, adapt=ad)
    return out


def _trajectories(tr, task, lr, optimizer, seeds) -> np.ndarray:
    g = {"lr": np.asarray([lr]), "adam": np.asarray([float(optimizer == "adam")]), "b_ratio": np.asarray([1.0])}
    return np.asarray(tr.sweep(task.base, task.data, g, seeds).metrics["delta"])[0]   # (seeds, records, o, i)


def _distance(x, ref) -> np.ndarray:
    """Per seed: max over records of ||x(t) − ref(t)|| / ||ref(T)||."""
    scale_ = np.linalg.norm(ref[:, -1], axis=(-2, -1))
    return (np.linalg.norm(x - ref, axis=(-2, -1)) / scale_[:, None])


def protocol_check(p: Params, seed: int) -> dict:
    """The protocol's allora / allora-B / allora-A against lora-s1-d0 on ``p.protocol_tasks`` (Holm)."""
    res = {t: {m: protocol.method_results(t, m, seed, p.budget) for pair in PROTOCOL_PAIRS for m in pair}
           for t in p.protocol_tasks}
    diffs = []
    for a, b in PROTOCOL_PAIRS:
        for cell in cells(p.protocol_tasks):
            diffs.append(compare(res[cell[0]][a], res[cell[0]][b], cell, a, b))
    diffs = decide(diffs)
    for d in diffs:
        d["negligible"] = bool(negligible(d))
    summary = {o: {a: {"wins": sum(d["win"] == 1 for d in diffs if d["a"] == a and d["optimizer"] == o),
                       "losses": sum(d["win"] == -1 for d in diffs if d["a"] == a and d["optimizer"] == o),
                       "negligible": sum(d["negligible"] for d in diffs if d["a"] == a and d["optimizer"] == o),
                       "n": sum(1 for d in diffs if d["a"] == a and d["optimizer"] == o)}
                   for a, _ in PROTOCOL_PAIRS} for o in protocol.OPTIMIZERS}
    return {"diffs": diffs, "table_md": diff_table(diffs), "summary": summary}


def measure(p: Params, seed: int) -> dict:
    """Tune every method's lr (validation), then the ΔW trajectories of ALLoRA (each adapt) against LoRA."""
    b = p.tune_budget
    t = teacher_student(seed=seed, d_in=p.d_in, d_out=p.d_out, n_train=p.n_train, n_test=p.n_test,
                        shift_rank=p.shift_rank, noise=p.noise)
    task = protocol.Task("adam-cancellation", lambda cfg: models.LinearLoRA(cfg), t.W0, t.data, t.data_val,
                         p.rank, "regression")
    _, final = protocol.seeds(seed, b)
    trainers = {n: Trainer(models.LinearLoRA(c), optimizer=protocol.ProtocolOptimizer(), steps=b.long,
                           stride=b.stride, metrics=trajectory_metrics) for n, c in configs(p).items()}
    tuned, own, same = {}, {}, {}
    for n, tr in trainers.items():
        for o in protocol.OPTIMIZERS:
            r = protocol.tune_and_test(task, "lora", o, seed, b, trainer=tr)["long"]
            tuned[n, o] = {"lr": r["lr"], "at_edge": r["at_edge"], "extended": r["extended"]}
    for o in protocol.OPTIMIZERS:
        for n, tr in trainers.items():
            own[n, o] = _trajectories(tr, task, tuned[n, o]["lr"], o, final)
            same[n, o] = own[n, o] if n == "lora" else _trajectories(tr, task, tuned["lora", o]["lr"], o, final)
    out = {"steps": b.long, "seeds": final, "adapts": list(p.adapts),
           "lr": {o: {n: tuned[n, o]["lr"] for n in trainers} for o in protocol.OPTIMIZERS},
           "at_edge": {o: {n: bool(tuned[n, o]["at_edge"]) for n in trainers} for o in protocol.OPTIMIZERS},
           "extended": {o: {n: tuned[n, o]["extended"] for n in trainers} for o in protocol.OPTIMIZERS}}
    out["any_at_edge"] = any(v for o in protocol.OPTIMIZERS for v in out["at_edge"][o].values())
    rows = []
    for o in protocol.OPTIMIZERS:
        out[o] = {}
        for ad in p.adapts:
            e = {}
            for label, traj in (("own_lr", own), ("lora_lr", same)):
                diff = _distance(traj[f"allora-{ad}", o], traj["lora", o])
                mx = diff.max(axis=1)
                e[label] = {"max_rel_diff": mx.tolist(), "median_max_rel_diff": float(np.median(mx)),
                            "curve_mean": diff.mean(axis=0).tolist()}
            e["median_max_rel_diff"] = e["own_lr"]["median_max_rel_diff"]
            out[o][ad] = e
            rows.append([o, ad, f"{tuned['lora', o]['lr']:g} / {tuned[f'allora-{ad}', o]['lr']:g}",
                         stats.mean_std(e["own_lr"]["max_rel_diff"]), stats.mean_std(e["lora_lr"]["max_rel_diff"])])
    out["table_md"] = stats.markdown_table(
        ["optimizer", "ALLoRA adapt", "selected lr LoRA / ALLoRA",
         "max_t ||ΔW_ALLoRA − ΔW_LoRA|| / ||ΔW_LoRA(T)||, each at its own lr (mean ± std)",
         "the same, both at LoRA's lr"], rows)
    out["cancels"] = {ad: cancels(out, ad) for ad in p.adapts}
    out["protocol_check"] = protocol_check(p, seed)
    return out


def cancels(m: dict, adapt: str) -> bool:
    """Adam's median distance below NEAR and below SGD's / CONTROL_FACTOR, for one adapt."""
    a, s = m["adam"][adapt]["median_max_rel_diff"], m["sgd"][adapt]["median_max_rel_diff"]
    return bool(a < NEAR and a < s / CONTROL_FACTOR)


def verdict(m: dict) -> str:
    if m["any_at_edge"]:
        return "inconclusive"
    n = sum(cancels(m, ad) for ad in DECIDING)
    return "supported" if n == 2 else ("partly supported" if n == 1 else "not supported")


def plot(record: dict):
    """Relative distance of ALLoRA's ΔW trajectory from LoRA's (each at its own tuned lr), SGD and Adam."""
    data = record["measurements"]
    stride = record["config"]["setup"]["tune_budget"]["stride"]
    fig, axes = figure(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, o in zip(axes, protocol.OPTIMIZERS):
        for k, ad in enumerate(data["adapts"]):
            for label, ls in (("own_lr", "-"), ("lora_lr", ":")):
                c = data[o][ad][label]["curve_mean"]
                ax.plot(np.arange(len(c)) * stride, c, ls, color=f"C{k}",
                        label=f"adapt = {ad}" + (" (at LoRA's lr)" if label == "lora_lr" else ""))
        ax.axhline(NEAR, color="k", lw=0.8, ls="--")
        ax.set_xlabel("optimizer step")
        ax.set_title(f"{o.upper()} (LoRA's tuned lr {data['lr'][o]['lora']:g})")
    axes[0].set_ylabel("||ΔW_ALLoRA − ΔW_LoRA|| / ||ΔW_LoRA(T)||")
    legend(axes[1])
    return fig


def _case(both=(0.01, 0.5), b=(0.01, 0.5), edge=False):
    """Synthetic measurements: (Adam, SGD) medians per adapt."""
    return {"any_at_edge": edge, "adam": {"both": {"median_max_rel_diff": both[0]}, "B": {"median_max_rel_diff": b[0]}},
            "sgd": {"both": {"median_max_rel_diff": both[1]}, "B": {"median_max_rel_diff": b[1]}}}


VERDICT_EXAMPLES = [
    (_case(), "supported"),
    (_case(both=(0.099, 0.3), b=(0.099, 0.3)), "supported"),       # a just below 0.1, a < s/3 = 0.1
    (_case(edge=True), "inconclusive"),                              # a selected lr still at a grid edge
    (_case(both=(0.1, 0.5)), "partly supported"),                     # a = 0.1 for both is not < 0.1
    (_case(b=(0.05, 0.15)), "partly supported"),                      # B: a = s/3, not below
    (_case(both=(0.3, 0.31)), "partly supported"),                    # both: Adam not close
    (_case(both=(0.1, 0.5), b=(0.1, 0.5)), "not supported"),
    (_case(both=(0.05, 0.15), b=(0.05, 0.15)), "not supported"),      # SGD about as close: no cancellation
    (_case(both=(0.5, 0.2), b=(0.5, 0.2)), "not supported"),
]
