"""zeroinit.nonzero-inits: do non-zero inits (PiSSA, MiLoRA, LoRA-GA) fix the zero-init start of LoRA?"""

from __future__ import annotations

import dataclasses

import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.claims.zeroinit._common import (BASE, PLATEAU, Units, draw_seeds, exact_data, groups, holm,
                                              log_ratio_test, lr_name, opt_seeds, progress, run_units, start,
                                              summary, toy_task)
from toyllora.plotting import figure, legend
from toyllora.protocol import stats
from toyllora.theory import dynamics
from toyllora.theory import hessian as hess

STATEMENT = ("Non-zero inits fix LoRA's zero-init start (reviewer question: compare with PiSSA and other init "
             "variants): PiSSA (top singular triplets of W), MiLoRA (the minor ones) and LoRA-GA (the SVD of the "
             "first gradient, stable scale, residual base) escape faster than init_a (A random, B = 0), end at "
             "least as well, and start from a non-degenerate Hessian (fewer zero eigenvalues).")
SOURCE = "review"
REFERENCE = "init_a"
INITS = ("pissa", "milora", "lora_ga")
TOYS = (BASE, PLATEAU)
OPTIMIZERS = ("SGD", "Adam")
RTOL = 1e-12  # zero eigenvalues of the float64 closed-form Hessian (as zeroinit.hessian)
FASTER = 0.9  # faster: a Holm win with a geometric-mean escape ratio below this (at least 10 % faster)
WORSE = 1.0   # worse: a Holm loss with a mean final-points difference below −WORSE


@dataclasses.dataclass(frozen=True)
class Params:
    units: Units = Units()                       # scoring: fresh draws × seeds
    tune_units: Units = Units(draws=2, seeds=1)  # selection: other units (data and init seeds + 50)
    steps: int = 300                             # at tuned rates every start escapes within tens of steps
    stride: int = 1
    sgd_lrs: tuple = (0.2, 0.4, 0.8, 1.6)        # the same base grid for every init (ascending, log2 steps)
    adam_lrs: tuple = (0.02, 0.04, 0.08, 0.16)
    max_extension: int = 2                       # log2 steps added beyond an edge pick, per side
    threshold: float = 0.5                       # escape: the learned fraction of the target reaches this


SETUP = Setup(full=Params(), fast=Params(units=Units(draws=2, seeds=2), tune_units=Units(draws=1, seeds=1),
                                         steps=400, stride=2, sgd_lrs=(0.4, 0.8), adam_lrs=(0.04, 0.08),
                                         max_extension=1))
TUNE_OFFSET = 50   # tuning units: data and optimization seeds shifted by this (disjoint from the scoring ones)


def _rule(opt, lr):
    return dynamics.Rule(lr=lr, adam=1.0 if opt == "Adam" else 0.0)


def _name(init, opt, lr):
    return f"{init} {opt} lr={lr_name(lr)}"


def _lrs(p, opt):
    return p.sgd_lrs if opt == "SGD" else p.adam_lrs


def rule(p: Params) -> str:
    u, t = p.units, p.tune_units
    k = len(TOYS) * len(OPTIMIZERS) * len(INITS) * 2 + len(TOYS) * len(INITS)
    return (f"Base and plateau toys (as zeroinit.escape-time; the plateau toy's A × {fmt(PLATEAU.init_scale)} "
            f"applies to init_a only), rank 2, s = 1, {p.steps} steps, SGD and Adam, no dropout. Every init gets "
            f"the same learning-rate grid (SGD {fmt(p.sgd_lrs)}, Adam {fmt(p.adam_lrs)}, extended by a log2 step "
            f"beyond an edge pick, up to {p.max_extension} per side; a diverged run scores inf) and picks its rate "
            f"per toy and optimizer by the mean validation loss over the budget on {t.draws} tuning draws × {t.seeds} "
            f"seed (data and init seeds disjoint from the scoring ones); the pick is re-run on {u.draws} fresh draws × "
            f"{u.seeds} seeds and scored there (a pick at a grid edge makes its comparisons count for neither "
            f"side). Against {REFERENCE} (the control: the zero start) for each of {fmt(list(INITS))}: the escape "
            f"step (learned fraction <ΔŴ, ΔW>/||ΔW||² first reaches {fmt(p.threshold)}, interpolated; never = the "
            "budget) as a log ratio, the final quality (test points 100·(1 − test loss / base test loss)) as a "
            "difference, and the Hessian at the start (float64 closed form): zero count (exact) and log κ. "
            f"Paired sign-flip tests by unit (draws as groups), Holm over all {k} comparisons. An init fixes the "
            f"start if it is faster (a Holm win with a geometric-mean ratio < {FASTER:g}) in every toy × "
            f"optimizer cell, is not worse in final points (no Holm loss by more than {WORSE:g} point) in any "
            "cell, and has fewer zero eigenvalues than init_a in every unit of both toys (target rebuilt in "
            "float64, so that the count is structural). Supported if every init fixes the start; partly supported "
            "if some init fixes it or some init "
            "is faster in some cell; not supported if no init is faster in any cell; inconclusive if every "
            "comparison of speed is excluded (edge picks). Control: init_a (B = 0) with the same grid, tuning "
            "budget and units.")


def _val_test_losses(run, tasks, u: Units):
    """Validation and test losses ``½ mean ||X (W + BA)ᵀ − Y||²`` per unit and record."""
    Wt = run["W"][:, None] + np.einsum("strk,stkj->strj", run["B"], run["A"])
    out = {}
    for split, (xs, ys) in (("val", ("data_val", "X_test")), ("test", ("data", "X_test"))):
        losses = []
        for i in range(Wt.shape[0]):
            data = getattr(tasks[i // u.seeds], xs)
            X, Y = np.asarray(data.X_test, np.float64), np.asarray(data.Y_test, np.float64)
            E = np.einsum("nj,tij->tni", X, Wt[i]) - Y[None]
            # a diverged run's loss overflows to inf (or NaN); both callers score that case explicitly
            with np.errstate(over="ignore", invalid="ignore"):
                losses.append(0.5 * np.mean(np.sum(E * E, -1), -1))
        out[split] = np.asarray(losses)
    return out


def _tune_draws(seed, u):
    return [ds + TUNE_OFFSET for ds in draw_seeds(seed, u)]


def measure(p: Params, seed: int) -> dict:
    u, tu = p.units, p.tune_units
    everyone = (REFERENCE,) + INITS
    # 1. tuning on other units: every init × lr, pick by the mean validation loss over the budget; a pick at
    #    an edge of the grid extends it by a log2 step on that side (up to p.max_extension per side)
    scores = {}     # (toy, opt, init) → {lr: score}
    todo = [(toy, o, i, lr) for toy in TOYS for o in OPTIMIZERS for i in everyone for lr in _lrs(p, o)]
    for _ in range(2 * p.max_extension + 1):
        if not todo:
            break
        plan = [(toy, [(_name(i, o, lr), i, _rule(o, lr)) for t, o, i, lr in todo if t is toy]) for toy in TOYS]
        tune_runs, _ = run_units([(t, ms) for t, ms in plan if ms], seed, tu, steps=p.steps, stride=p.stride,
                                 offset=TUNE_OFFSET)
        for toy, o, i, lr in todo:
            tasks = [toy_task(toy, ds) for ds in _tune_draws(seed, tu)]
            v = float(np.mean(_val_test_losses(tune_runs[(toy.name, _name(i, o, lr))], tasks, tu)["val"]))
            scores.setdefault((toy.name, o, i), {})[lr] = v if np.isfinite(v) else np.inf
        todo = []
        for toy in TOYS:
            for o in OPTIMIZERS:
                for i in everyone:
                    sc = scores[(toy.name, o, i)]
                    grid = sorted(sc)
                    best = min(grid, key=lambda lr: sc[lr])
                    n_low = sum(lr < min(_lrs(p, o)) for lr in grid)
                    n_high = sum(lr > max(_lrs(p, o)) for lr in grid)
                    if best == grid[-1] and np.isfinite(sc[best]) and n_high < p.max_extension:
                        todo.append((toy, o, i, 2.0 * grid[-1]))
                    elif best == grid[0] and np.isfinite(sc[best]) and n_low < p.max_extension:
                        todo.append((toy, o, i, 0.5 * grid[0]))
    picks = {}
    for (toy, o, i), sc in scores.items():
        grid = sorted(sc)
        j = int(np.argmin([sc[lr] for lr in grid]))
        picks[f"{toy}|{o}|{i}"] = {"lr": grid[j], "grid": grid, "val_scores": [sc[lr] for lr in grid],
                                   "at_edge": j in (0, len(grid) - 1)}
    # 2. scoring on fresh draws × seeds
    plan = [(toy, [(_name(i, o, picks[f"{toy.name}|{o}|{i}"]["lr"]), i,
                    _rule(o, picks[f"{toy.name}|{o}|{i}"]["lr"])) for o in OPTIMIZERS for i in everyone])
            for toy in TOYS]
    runs, steps = run_units(plan, seed, u, steps=p.steps, stride=p.stride)
    out = {"steps": steps, "picks": picks, "cells": {}, "hessian": {}, "curves": {}}
    family = {}
    for toy in TOYS:
        tasks = [toy_task(toy, ds) for ds in draw_seeds(seed, u)]
        base = {}
        for i in range(u.n):   # the base model's test loss (every init starts at the base model's output)
            data = tasks[i // u.seeds].data
            X, Y, W0 = (np.asarray(a, np.float64) for a in (data.X_test, data.Y_test, tasks[i // u.seeds].W0))
            base[i] = 0.5 * np.mean(np.sum((X @ W0.T - Y) ** 2, -1))
        base = np.asarray([base[i] for i in range(u.n)])
        metrics = {}
        for o in OPTIMIZERS:
            for i in everyone:
                pick = picks[f"{toy.name}|{o}|{i}"]
                run = runs[(toy.name, _name(i, o, pick["lr"]))]
                prog = progress(run)
                esc = dynamics.escape_time(prog, p.threshold, steps, interpolate=True)
                test = _val_test_losses(run, tasks, u)["test"]
                points = 100.0 * (1.0 - test[:, -1] / base)
                points = np.where(np.isfinite(points) & (run["diverged"] < 0), points, 0.0)  # failure: base model
                metrics[(o, i)] = {"escape": esc, "points": points}
                out["curves"][f"{toy.name}|{o}|{i}"] = {"median": np.median(prog, 0), "escape": summary(esc),
                                                        "points": summary(points), "lr": pick["lr"]}
        for o in OPTIMIZERS:
            ref = metrics[(o, REFERENCE)]
            for i in INITS:
                m = metrics[(o, i)]
                edge = picks[f"{toy.name}|{o}|{i}"]["at_edge"] or picks[f"{toy.name}|{o}|{REFERENCE}"]["at_edge"]
                e = log_ratio_test(m["escape"], ref["escape"], u, budget=p.steps)
                q = stats.paired_difference(m["points"], ref["points"], groups=groups(u))
                out["cells"][f"{toy.name}|{o}|{i}"] = {"at_edge": bool(edge)}
                family[f"{toy.name}|{o}|{i}|escape"] = e
                family[f"{toy.name}|{o}|{i}|points"] = q
        # the Hessian at the start, on the scoring units
        H = {i: {"zero": [], "condition": [], "negative": []} for i in everyone}
        for d, ds in enumerate(draw_seeds(seed, u)):
            task = tasks[d]
            X, Y = exact_data(task, toy.shift_rank)
            for s in opt_seeds(seed, u, d):
                for i in everyone:
                    W, A, B = start(task, i, s, toy.rank, init_scale=toy.init_scale)
                    T = Y - X @ np.asarray(W, np.float64).T
                    sm = hess.spectrum_summary(np.linalg.eigvalsh(hess.hessian64(A, B, X, T)), RTOL)
                    for f in H[i]:
                        H[i][f].append(sm[f])
        out["hessian"][toy.name] = {i: {f: np.asarray(v, float) for f, v in h.items()} for i, h in H.items()}
        for i in INITS:
            family[f"{toy.name}|hessian|{i}|log_condition"] = stats.paired_difference(
                np.log(H[i]["condition"]), np.log(H[REFERENCE]["condition"]), groups=groups(u))
            out["hessian"][toy.name][i]["fewer_zeros_all_units"] = bool(
                np.all(np.asarray(H[i]["zero"]) < np.asarray(H[REFERENCE]["zero"])))
    out["tests"] = holm(family)
    return out


def init_outcomes(m: dict) -> dict:
    """Per init: ``{"faster_cells", "cells", "excluded", "worse_cells", "fewer_zeros", "fixes"}``."""
    out = {}
    for i in INITS:
        cells = [k for k in m["cells"] if k.split("|")[2] == i]
        used = [k for k in cells if not m["cells"][k]["at_edge"]]
        faster = [k for k in used if m["tests"][f"{k}|escape"]["win"] == -1
                  and m["tests"][f"{k}|escape"]["ratio"] < FASTER]
        worse = [k for k in used if m["tests"][f"{k}|points"]["win"] == -1
                 and m["tests"][f"{k}|points"]["mean"] < -WORSE]
        fewer = all(h[i]["fewer_zeros_all_units"] for h in m["hessian"].values())
        out[i] = {"cells": len(cells), "excluded": len(cells) - len(used), "faster_cells": len(faster),
                  "worse_cells": len(worse), "fewer_zeros": fewer,
                  "fixes": bool(used) and len(used) == len(cells) and len(faster) == len(cells)
                  and not worse and fewer}
    return out


def verdict(m: dict) -> str:
    o = init_outcomes(m).values()
    if all(x["excluded"] == x["cells"] for x in o):
        return "inconclusive"
    if all(x["fixes"] for x in o):
        return "supported"
    if any(x["fixes"] or x["faster_cells"] > 0 for x in o):
        return "partly supported"
    return "not supported"


COLORS = {"init_a": "k", "pissa": "tab:blue", "milora": "tab:green", "lora_ga": "tab:red"}


def plot(record: dict):
    """Learned fraction against steps per toy and optimizer (median over units, each init at its picked lr)."""
    data = record["measurements"]
    thr = record["config"]["setup"]["threshold"]
    fig, axes = figure(1, 4, figsize=(19, 5.4), sharey=True)
    x = np.maximum(np.asarray(data["steps"], float), 1)
    for ax, (toy, o) in zip(axes, [(t.name, o) for t in TOYS for o in OPTIMIZERS]):
        for i in (REFERENCE,) + INITS:
            c = data["curves"][f"{toy}|{o}|{i}"]
            esc = c["escape"]["median"]
            ax.plot(x, np.asarray(c["median"], float), color=COLORS[i],
                    label=f"{i} lr {c['lr']:g}: escape {'never' if esc is None else f'{esc:.0f}'}, "
                          f"{c['points']['median']:.1f} pts")
        ax.axhline(thr, color="k", ls=":", lw=0.6)
        ax.set_xscale("log")
        ax.set_xlabel("step")
        zeros = {i: int(np.median(data["hessian"][toy][i]["zero"])) for i in (REFERENCE,) + INITS}
        ax.set_title(f"{toy} toy, {o}\nzero Hessian eigenvalues at the start: "
                     + ", ".join(f"{k} {v}" for k, v in zeros.items()), fontsize=8)
        legend(ax, "below", fontsize=7)
    axes[0].set_ylabel("learned fraction <ΔŴ,ΔW>/||ΔW||²")
    fig.suptitle("Non-zero inits against the zero start (each init at the lr it picked on other draws)",
                 fontsize=10)
    return fig


def _m(faster=(1, 1), worse=(0, 0), fewer=True, edge=False):
    cells, tests = {}, {}
    for i in INITS:
        for j, (f, w) in enumerate(zip(faster, worse)):
            k = f"base|SGD{j}|{i}"
            cells[k] = {"at_edge": edge}
            tests[f"{k}|escape"] = {"win": -1 if f else 0, "ratio": 0.5 if f else 1.0}
            tests[f"{k}|points"] = {"win": -1 if w else 0, "mean": -5.0 if w else 0.0}
    h = {i: {"fewer_zeros_all_units": fewer} for i in INITS}
    return {"cells": cells, "tests": tests, "hessian": {"base": h}}


VERDICT_EXAMPLES = [
    (_m(), "supported"),
    (_m(worse=(1, 0)), "partly supported"),        # faster but worse in a cell
    (_m(faster=(1, 0)), "partly supported"),       # faster in one cell only
    (_m(fewer=False), "partly supported"),         # no fewer zero eigenvalues
    (_m(faster=(0, 0)), "not supported"),
    (_m(faster=(0, 0), worse=(1, 1)), "not supported"),
    (_m(edge=True), "inconclusive"),               # every speed comparison excluded
]
