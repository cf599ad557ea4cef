"""allora.eta-sensitivity: ALLoRA's score barely moves over eta² ∈ {1, 2, 4} — at the paper's fixed base rate
and with the lr re-tuned for every eta²."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from toyllora import protocol
from toyllora.claims import Setup, fmt
from toyllora.claims.allora._common import (ALLORA_ETAS, CORE_TASKS, EFFECT, cell_name, cells, decide, entry,
                                            eta2_text, results)
from toyllora.plotting import figure, legend
from toyllora.protocol import stats

STATEMENT = ("ALLoRA's result does not hinge on eta²: eta² ∈ {1, 2, 4} give about the same score (the paper "
             "reports the best of three at one base rate, without a sweep).")
SOURCE = "review"
PROTOCOLS = ("fixed", "retuned")
REFERENCE = "allora"   # eta² = 4, the listing default: its tuned lr is the fixed base rate


@dataclasses.dataclass(frozen=True)
class Params:
    budget: protocol.Budget = protocol.FULL_BUDGET
    tasks: tuple[str, ...] = CORE_TASKS
    etas: tuple[str, ...] = ALLORA_ETAS    # the ALLoRA methods, eta² = 1, 2, 4


SETUP = Setup(full=Params(), fast=Params(budget=protocol.FAST_BUDGET, tasks=protocol.FAST_TASKS))


def rule(p: Params) -> str:
    return (f"Same protocol on the tasks {fmt(p.tasks)}, ALLoRA at eta² ∈ {eta2_text(p.etas)}, two protocols per "
            "cell (task × budget × optimizer). Fixed base rate (the paper's protocol): every eta² runs at one "
            f"base lr l_b, the lr selected on validation for eta² = {protocol.ETA2[REFERENCE]:g} (the listing "
            "default). Re-tuned: every eta² at its own validation-selected lr (which can absorb eta: at B = 0 "
            "under SGD eta is exactly a learning-rate multiplier, and Adam cancels a constant factor). Control: "
            "the re-tuned protocol against the fixed one, and SGD against Adam. In each, the best and the worst "
            "eta² are chosen on the validation runs (mean over draws × tuning seeds) and re-measured on the "
            "fresh test seeds; best − worst on test, paired by draw and seed, exact sign-flip test, Holm over "
            "both protocols' cells. A cell is sensitive if the test is significant with best > worst and the "
            f"95% interval's lower end is above {EFFECT:g} points, insensitive if the interval's upper end is "
            f"below {EFFECT:g}, undetermined otherwise (and when eta² = 4's lr is still at a grid edge). Per "
            "protocol with N cells, S sensitive and I insensitive: robust if S = 0 and I >= N/2; hinges if "
            "S > N/4. supported if both protocols are robust; partly supported if exactly one is; not "
            "supported if the fixed-rate protocol hinges and the re-tuned one is not robust; otherwise "
            "inconclusive.")


def _val_index(res_m, o, lr):
    lrs = np.asarray(res_m[o]["grid"]["lr"])
    hit = np.flatnonzero(np.isclose(lrs, lr, rtol=1e-9, atol=0.0))
    return int(hit[0]) if hit.size else None


def _selected_val(res_m, cell) -> float:
    """The mean validation score of a method's selected setting in a cell."""
    e = entry(res_m, cell)
    return float(e["val_scores"][_val_index(res_m, cell[2], e["lr"])])


def chunk(budget: protocol.Budget) -> int:
    """The vmapped width of the protocol's sweeps (tune_and_test's), so extra runs reuse its compiled call."""
    return max(budget.tune_seeds * budget.lr_points, len(protocol.BUDGETS) * budget.final_seeds)


@functools.lru_cache(maxsize=None)
def _runs_at(task_name: str, method: str, optimizer: str, lrs: tuple, split: str, seed: int,
             budget: protocol.Budget) -> dict:
    """Scores at each budget of ``method`` run at the learning rates ``lrs`` (one per budget, short then
    long), every draw, on the tuning seeds and the validation split (``split="val"``) or on the final seeds
    and the test split (``"test"``): ``{budget: (scores, failed)}`` draw-major."""
    draws = protocol.draw_tasks(task_name, seed, budget)
    trainer = protocol.make_trainer(draws[0], method, budget)
    tune, final = protocol.seeds(seed, budget)
    flags = protocol.optimizer_hp(optimizer, method)
    g = {"lr": np.asarray(lrs, np.float64), "b_ratio": np.full(len(lrs), flags["b_ratio"]),
         "adam": np.full(len(lrs), flags["adam"])}
    out = {b: ([], []) for b in protocol.BUDGETS}
    steps = {"short": budget.short, "long": budget.long}
    for task in draws:
        data = task.data_val if split == "val" else task.data
        h = trainer.sweep(task.base, data, g, tune if split == "val" else final, chunk_size=chunk(budget))
        for row, b in enumerate(protocol.BUDGETS):
            T = steps[b]
            m = {k: np.asarray(v)[row] for k, v in h.metrics.items()}
            sc, failed = protocol.score_runs(task.kind, m, np.asarray(h.diverged_step)[row], T // budget.stride, T)
            out[b][0].append(sc), out[b][1].append(failed)
    return {b: (np.concatenate(v[0]), np.concatenate(v[1])) for b, v in out.items()}


def _fixed_rate(p: Params, seed: int, task: str, res: dict) -> dict:
    """Per (budget, optimizer) and eta²: validation mean and test scores at the fixed base rate."""
    out = {}
    for o in protocol.OPTIMIZERS:
        lb = tuple(res[REFERENCE][o][b]["lr"] for b in protocol.BUDGETS)
        for m in p.etas:
            own = tuple(res[m][o][b]["lr"] for b in protocol.BUDGETS)
            idx = [_val_index(res[m], o, lr) for lr in lb]
            val = test = None
            if any(i is None for i in idx):
                val = _runs_at(task, m, o, lb, "val", seed, p.budget)
            if own != lb:
                test = _runs_at(task, m, o, lb, "test", seed, p.budget)
            for k, b in enumerate(protocol.BUDGETS):
                v = res[m][o][b]["val_scores"][idx[k]] if idx[k] is not None else float(val[b][0].mean())
                if own[k] == lb[k]:
                    s, nf = np.asarray(res[m][o][b]["scores"]), int(res[m][o][b]["n_failed"])
                else:
                    s, nf = test[b][0], int(test[b][1].sum())
                out[(b, o, m)] = {"lr": lb[k], "val": float(v), "scores": s, "n_failed": nf}
    return out


def measure(p: Params, seed: int) -> dict:
    diffs, per_cell = [], []
    for t in p.tasks:
        res = {m: results(t, m, seed, p.budget) for m in p.etas}
        fixed = _fixed_rate(p, seed, t, res)
        for cell in cells((t,)):
            _, b, o = cell
            groups = np.asarray(entry(res[REFERENCE], cell)["groups"])
            arms = {"retuned": {m: {"lr": entry(res[m], cell)["lr"], "val": _selected_val(res[m], cell),
                                    "scores": np.asarray(entry(res[m], cell)["scores"]),
                                    "n_failed": int(entry(res[m], cell)["n_failed"])} for m in p.etas},
                    "fixed": {m: fixed[(b, o, m)] for m in p.etas}}
            row = {"cell": cell_name(cell)}
            for proto in PROTOCOLS:
                a = arms[proto]
                order = sorted(p.etas, key=lambda m: -a[m]["val"])        # best first (validation)
                best, worst = order[0], order[-1]
                d = stats.paired_difference(a[best]["scores"], a[worst]["scores"], groups=groups)
                edge = bool(entry(res[REFERENCE], cell)["at_edge"]) if proto == "fixed" else \
                    bool(entry(res[best], cell)["at_edge"] or entry(res[worst], cell)["at_edge"])
                d.update(cell=cell_name(cell), task=t, budget=b, optimizer=o, protocol=proto, best=best,
                         worst=worst, edge=edge, a=best, b=worst)
                diffs.append(d)
                row[proto] = {"lr": {m: a[m]["lr"] for m in p.etas}, "val": {m: a[m]["val"] for m in p.etas},
                              "test_mean": {m: float(np.mean(a[m]["scores"])) for m in p.etas},
                              "failed": {m: a[m]["n_failed"] for m in p.etas}, "best": best, "worst": worst}
            per_cell.append(row)
    diffs = decide(diffs)
    for d in diffs:
        d["class"] = ("undetermined" if d["edge"] else "sensitive" if d["win"] == 1 and d["lo"] > EFFECT
                      else "insensitive" if d["hi"] < EFFECT else "undetermined")
    summary = {}
    for proto in PROTOCOLS:
        ds = [d for d in diffs if d["protocol"] == proto]
        summary[proto] = {"n": len(ds), "sensitive": sum(d["class"] == "sensitive" for d in ds),
                          "insensitive": sum(d["class"] == "insensitive" for d in ds),
                          "per_optimizer": {o: {k: sum(d["class"] == k for d in ds if d["optimizer"] == o)
                                                for k in ("sensitive", "insensitive", "undetermined")}
                                            for o in protocol.OPTIMIZERS},
                          "mean_best_minus_worst": float(np.mean([d["mean"] for d in ds]))}
        summary[proto]["status"] = status(summary[proto])
    rows = [[d["cell"], d["protocol"], f"{protocol.ETA2[d['best']]:g}", f"{protocol.ETA2[d['worst']]:g}",
             stats.ci_text(d), d["class"]] for d in diffs]
    table = stats.markdown_table(["cell", "protocol", "best eta² (val)", "worst eta² (val)",
                                  "best − worst on test [95% CI], draws, p_holm", "class"], rows)
    return {"summary": summary, "per_cell": per_cell, "diffs": diffs, "margin": EFFECT, "table_md": table}


def status(s: dict) -> str:
    if s["sensitive"] == 0 and s["insensitive"] >= s["n"] / 2:
        return "robust"
    return "hinges" if s["sensitive"] > s["n"] / 4 else "mixed"


def verdict(m: dict) -> str:
    st = {k: status(m["summary"][k]) for k in PROTOCOLS}
    robust = [k for k in PROTOCOLS if st[k] == "robust"]
    if len(robust) == 2:
        return "supported"
    if len(robust) == 1:
        return "partly supported"
    if st["fixed"] == "hinges":
        return "not supported"
    return "inconclusive"


def plot(record: dict):
    """Mean test score of each eta² per cell, at the fixed base rate (left) and re-tuned (right)."""
    data = record["measurements"]
    etas = record["config"]["setup"]["etas"]
    cell_names = [c["cell"] for c in data["per_cell"]]
    fig, axes = figure(1, 2, figsize=(max(10.0, 0.5 * len(cell_names) + 4.0), 4.4), sharey=True)
    x = np.arange(len(cell_names))
    for ax, proto, title in zip(axes, PROTOCOLS, ("fixed base rate (eta² = 4's tuned lr)", "lr re-tuned per eta²")):
        for k, m in enumerate(etas):
            ax.plot(x + (k - 1) * 0.15, [c[proto]["test_mean"][m] for c in data["per_cell"]], "o", alpha=0.85,
                    ms=4, label=f"eta² = {protocol.ETA2[m]:g}")
        ax.set_xticks(x, cell_names, rotation=60, ha="right", fontsize=6)
        ax.set_title(title)
    axes[0].set_ylabel("test score (points, mean over draws × seeds)")
    legend(axes[1])
    return fig


def _case(fixed, retuned, n=12):
    """(sensitive, insensitive) counts per protocol."""
    return {"summary": {k: {"n": n, "sensitive": s, "insensitive": i}
                        for k, (s, i) in (("fixed", fixed), ("retuned", retuned))}}


VERDICT_EXAMPLES = [
    (_case((0, 6), (0, 12)), "supported"),           # I = N/2 exactly, S = 0: robust both
    (_case((1, 10), (0, 12)), "partly supported"),   # one sensitive cell at the fixed rate: not robust
    (_case((4, 2), (0, 8)), "partly supported"),     # the fixed rate hinges, re-tuning absorbs eta
    (_case((0, 12), (2, 5)), "partly supported"),
    (_case((4, 0), (1, 4)), "not supported"),        # S = 4 > N/4 = 3 at the fixed rate, re-tuned mixed
    (_case((12, 0), (12, 0)), "not supported"),
    (_case((3, 0), (1, 4)), "inconclusive"),         # S = N/4 exactly: mixed, not "hinges"
    (_case((0, 5), (0, 5)), "inconclusive"),         # I just below N/2 in both
]
