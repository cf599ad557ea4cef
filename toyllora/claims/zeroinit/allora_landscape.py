"""zeroinit.allora-landscape: how does ALLoRA address the poor landscape of the zero-init start?"""

from __future__ import annotations

import dataclasses

import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.claims.zeroinit._common import (BASE, PLATEAU, EscapeRuns, Units, draw_seeds, escape_runs,
                                              exact_data, holm, interval_test, lr_name, progress, toy_task)
from toyllora.plotting import figure, legend
from toyllora.theory import dynamics
from toyllora.theory import hessian as hess

STATEMENT = ("ALLoRA addresses the poor landscape of LoRA's zero-init start (reviewer question: \"how does ALLoRA "
             "address it?\"): its adaptive factor changes the curvature the optimizer sees at B = 0, or it "
             "rebalances the unbalanced start (A random, B = 0).")
SOURCE = "review"
TOYS = (BASE, PLATEAU)
RTOL = 1e-12            # zero eigenvalues of the float64 closed forms (as zeroinit.hessian)
CHANGE = np.log(1.1)    # (a) holds if the conditioning changes by more than 10 % (or the inertia changes)
SAME = 1e-6             # (a) fails if it changes by less than this (relative): identical up to rounding
REBALANCED = 0.5        # (b) holds if ||Q(end)||/||Q(0)|| is at most this (the imbalance at least halved)
LEVELS = (0.1, 0.5)     # learned fractions at which ALLoRA's factor and conditioning are read on its trajectory


@dataclasses.dataclass(frozen=True)
class Params:
    runs: EscapeRuns = EscapeRuns()   # the runs of zeroinit.escape-time (shared)


SETUP = Setup(full=Params(), fast=Params(runs=EscapeRuns(units=Units(draws=2, seeds=2), steps=400)))


def rule(p: Params) -> str:
    r, u = p.runs, p.runs.units
    top = r.sgd_lrs[-1]
    return (f"On the starts and runs of zeroinit.escape-time (base and plateau toys, {u.draws} task draws × "
            f"{u.seeds} seeds per master seed, A random and B = 0, eta {fmt(r.eta)}). (a) The landscape at the "
            "start: ALLoRA's update field at θ0 against eta × LoRA's gradient (relative error), and the Jacobian "
            "of ALLoRA's field with its factor c held at its value (as the listing computes it: no gradient "
            "through c) — the Hessian of the row-weighted loss, float64 closed form, noiseless target rebuilt in "
            "float64 — against LoRA's Hessian: "
            f"inertia and κ (zero when |λ| <= {RTOL:g}·max|λ|). (a) holds if in some unit the inertia differs or "
            f"|log κ_ALLoRA − log κ_LoRA| > log 1.1; fails if in every unit the inertia is the same and κ agrees "
            f"within {SAME:g} (relative); undecided otherwise. The same quantities are read on ALLoRA's SGD "
            f"trajectory (l_b {lr_name(top / r.eta)}) where its learned fraction first reaches {fmt(LEVELS)}, with "
            "the spread max c_i/min c_i of its factor (reported). (b) Rebalancing: under SGD (ALLoRA at l_b "
            f"{lr_name(top / r.eta)}), the imbalance ratio ||Q(end)||_F/||Q(0)||_F with Q = AAᵀ − BᵀB (which "
            "ALLoRA's gradient flow conserves), its geometric mean over units and t-interval at level "
            f"1 − 0.05/{len(TOYS)} (Bonferroni over the toys; draws as groups); (b) holds if the upper end is <= "
            f"{fmt(REBALANCED)} on both toys, fails if the lower end is > {fmt(REBALANCED)} on both, undecided "
            "otherwise; the violation of the law at the three learning rates (∝ lr: discretization) and LoRA "
            "under SGD and Adam are reported as controls. Supported if (a) and (b) hold; partly supported if one "
            "holds; not supported if both fail; inconclusive otherwise. Control: LoRA at eta·l_b (SGD), whose "
            "first step ALLoRA's equals, and Adam (which breaks the conservation law).")


def _T(task, toy):
    """The unit's data with the noiseless target rebuilt in float64 (structural zeros stay exact zeros)."""
    return exact_data(task, toy.shift_rank)


def _landscape(A, B, X, Y, W, eta):
    """LoRA's Hessian and ALLoRA's frozen-c Jacobian at (A, B): inertia, κ and the factor's spread."""
    T = Y - X @ W.T
    c = 1.0 / np.sqrt(np.linalg.norm(B @ A, axis=1) + 1.0 / eta ** 2)
    h = hess.spectrum_summary(np.linalg.eigvalsh(hess.hessian64(A, B, X, T)), RTOL)
    j = hess.spectrum_summary(np.linalg.eigvalsh(hess.hessian64(A, B, X, T, row_weights=c)), RTOL)
    return {"lora": h, "allora": j, "same_inertia": (h["negative"], h["zero"], h["positive"])
            == (j["negative"], j["zero"], j["positive"]),
            "log_condition_ratio": float(np.log(j["condition"] / h["condition"])),
            "c_spread": float(c.max() / c.min()), "c_over_eta_mean": float(c.mean() / eta)}


def measure(p: Params, seed: int) -> dict:
    r = p.runs
    u = r.units
    runs, steps = escape_runs(r, seed)
    top = r.sgd_lrs[-1]
    al_sgd, lora_sgd = f"ALLoRA SGD l_b={lr_name(top / r.eta)}", f"LoRA SGD lr={lr_name(top)}"
    al_adam, lora_adam = f"ALLoRA Adam l_b={lr_name(r.adam_lrs[-1] / r.eta)}", f"LoRA Adam lr={lr_name(r.adam_lrs[-1])}"
    al_rule = dynamics.Rule(lr=top / r.eta, allora=1.0, eta=r.eta)
    out = {"steps": steps, "toys": {}}
    fam = {}
    for toy in TOYS:
        tasks = [toy_task(toy, ds) for ds in draw_seeds(seed, u)]
        run = runs[(toy.name, al_sgd)]
        prog = progress(run)
        start, along = [], {lv: [] for lv in LEVELS}
        field_err = []
        for i in range(u.n):
            X, Y = _T(tasks[i // u.seeds], toy)
            W = run["W"][i].astype(np.float64)
            A0, B0 = run["A"][i, 0].astype(np.float64), run["B"][i, 0].astype(np.float64)
            start.append(_landscape(A0, B0, X, Y, W, r.eta))
            gA, gB = dynamics.gradients(A0, B0, X, Y, W, al_rule)
            lA, lB = dynamics.gradients(A0, B0, X, Y, W, dynamics.Rule(lr=1.0))
            ref = np.sqrt(np.sum(lA ** 2) + np.sum(lB ** 2)) * r.eta
            field_err.append(float(np.sqrt(np.sum((gA - r.eta * lA) ** 2) + np.sum((gB - r.eta * lB) ** 2)) / ref))
            for lv in LEVELS:
                hit = np.nonzero(prog[i] >= lv)[0]
                if hit.size:
                    k = hit[0]
                    along[lv].append(_landscape(run["A"][i, k].astype(np.float64), run["B"][i, k].astype(np.float64),
                                                X, Y, W, r.eta))
        rec = {"field_rel_error_max": float(max(field_err)),
               "start_same_inertia_all": bool(all(s["same_inertia"] for s in start)),
               "start_abs_log_condition_ratio_max": float(max(abs(s["log_condition_ratio"]) for s in start)),
               "start_inertia_lora": [start[0]["lora"][k] for k in ("negative", "zero", "positive")],
               "start_log10_condition_lora": np.log10([s["lora"]["condition"] for s in start]),
               "along": {}}
        for lv in LEVELS:
            a = along[lv]
            rec["along"][f"{lv:g}"] = {
                "reached": len(a), "same_inertia": int(sum(x["same_inertia"] for x in a)),
                "log_condition_ratio": [x["log_condition_ratio"] for x in a],
                "c_spread": [x["c_spread"] for x in a], "c_over_eta_mean": [x["c_over_eta_mean"] for x in a]}
        # (b) the imbalance ratio ||Q(end)|| / ||Q(0)||, ALLoRA and the controls
        ratios = {}
        for name in (al_sgd, lora_sgd, al_adam, lora_adam):
            R = runs[(toy.name, name)]
            Q = dynamics.balance_matrix(R["A"], R["B"])
            ratio = np.linalg.norm(Q[:, -1], axis=(-2, -1)) / np.linalg.norm(Q[:, 0], axis=(-2, -1))
            d = interval_test(np.log(ratio), u, alpha=0.05 / len(TOYS))
            d.update(ratio=float(np.exp(d["mean"])), ratio_lo=float(np.exp(d["lo"])), ratio_hi=float(np.exp(d["hi"])))
            # scale-free: ||Q|| / (||AAᵀ|| + ||BᵀB||), 1 at B = 0, 0 when balanced (falls by growth alone)
            AA = np.einsum("ukj,ulj->ukl", R["A"][:, -1], R["A"][:, -1])
            BB = np.einsum("uik,uil->ukl", R["B"][:, -1], R["B"][:, -1])
            d["relative_imbalance_end_median"] = float(np.median(
                np.linalg.norm(Q[:, -1], axis=(-2, -1)) / (np.linalg.norm(AA, axis=(-2, -1))
                                                           + np.linalg.norm(BB, axis=(-2, -1)))))
            ratios[name] = d
        rec["imbalance_ratio"] = ratios
        rec["allora_sgd"], rec["lora_sgd"], rec["allora_adam"], rec["lora_adam"] = al_sgd, lora_sgd, al_adam, lora_adam
        fam[toy.name] = ratios[al_sgd]
        # the conservation law at the three SGD learning rates (drift ∝ lr), at equal flow time
        lrs = np.asarray(r.sgd_lrs, float)
        idx = np.rint(r.steps * lrs[0] / lrs / r.stride).astype(int)
        if toy is BASE:
            v = [dynamics.conservation_violation(runs[(toy.name, f"ALLoRA SGD l_b={lr_name(lr / r.eta)}")]["A"],
                                                 runs[(toy.name, f"ALLoRA SGD l_b={lr_name(lr / r.eta)}")]["B"])[:, j]
                 for lr, j in zip(lrs, idx)]
            rec["law_violation_by_lr"] = {lr_name(lr / r.eta): float(np.median(x)) for lr, x in zip(lrs, v)}
        rec["q_curves"] = {name: np.median(np.linalg.norm(dynamics.balance_matrix(runs[(toy.name, name)]["A"],
                                                                                   runs[(toy.name, name)]["B"]),
                                                          axis=(-2, -1)), 0)
                           for name in (al_sgd, lora_sgd, al_adam, lora_adam)}
        out["toys"][toy.name] = rec
    for k, d in holm(fam).items():
        out["toys"][k]["imbalance_ratio"][out["toys"][k]["allora_sgd"]] = d
    return out


def parts(m: dict) -> dict:
    toys = m["toys"].values()
    changed = any((not t["start_same_inertia_all"]) or t["start_abs_log_condition_ratio_max"] > CHANGE for t in toys)
    same = all(t["start_same_inertia_all"] and t["start_abs_log_condition_ratio_max"] <= SAME for t in toys)
    a = "holds" if changed else "fails" if same else "undecided"
    rs = [t["imbalance_ratio"][t["allora_sgd"]] for t in toys]
    b = ("holds" if all(d["ratio_hi"] <= REBALANCED for d in rs) else
         "fails" if all(d["ratio_lo"] > REBALANCED for d in rs) else "undecided")
    return {"changes_landscape": a, "rebalances": b}


def verdict(m: dict) -> str:
    pt = list(parts(m).values())
    if all(v == "holds" for v in pt):
        return "supported"
    if any(v == "holds" for v in pt):
        return "partly supported"
    return "not supported" if all(v == "fails" for v in pt) else "inconclusive"


def plot(record: dict):
    """ALLoRA's conditioning relative to LoRA's (start and escape), its factor's spread, and the imbalance."""
    data = record["measurements"]
    fig, axes = figure(1, 3, figsize=(16, 5.0))
    for i, (toy, t) in enumerate(data["toys"].items()):
        xs = [0.0] + [float(k) for k in t["along"]]
        ys = [[t["start_abs_log_condition_ratio_max"]]] + [np.abs(np.asarray(v["log_condition_ratio"], float))
                                                           for v in t["along"].values()]
        for x, y in zip(xs, ys):
            axes[0].scatter(np.full(len(y), x) + 0.01 * (i - 0.5), np.maximum(y, 1e-16), s=12,
                            color=("tab:blue", "tab:orange")[i], label=f"{toy} toy" if x == 0.0 else None)
        cs = [[1.0]] + [np.asarray(v["c_spread"], float) for v in t["along"].values()]
        for x, y in zip(xs, cs):
            axes[1].scatter(np.full(len(y), x) + 0.01 * (i - 0.5), y, s=12, color=("tab:blue", "tab:orange")[i],
                            label=f"{toy} toy" if x == 0.0 else None)
        steps = np.maximum(np.asarray(data["steps"], float), 1)
        for name, curve in t["q_curves"].items():
            axes[2].plot(steps, np.asarray(curve, float), ls=("-", "--")[i],
                         label=f"{toy}: {name}")
    axes[0].axhline(CHANGE, color="k", ls=":", lw=0.8)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("learned fraction on ALLoRA's trajectory (0: the start)")
    axes[0].set_ylabel("|log κ(ALLoRA field Jacobian) − log κ(LoRA Hessian)|")
    axes[0].set_title("dotted: a 10 % change\nat the start they agree to rounding (drawn at 1e-16)", fontsize=9)
    axes[1].set_xlabel("learned fraction on ALLoRA's trajectory (0: the start)")
    axes[1].set_ylabel("max c_i / min c_i (1: a scalar learning rate)")
    axes[2].set_xscale("log")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("||AAᵀ − BᵀB||_F (median over units)")
    pt = parts(data)
    axes[2].set_title(f"changes landscape: {pt['changes_landscape']}; rebalances: {pt['rebalances']}", fontsize=9)
    for ax in axes:
        legend(ax, "below", fontsize=7)
    fig.suptitle("At BA = 0 ALLoRA's field is eta × LoRA's gradient (same inertia, same κ); under SGD it keeps "
                 "AAᵀ − BᵀB, so the unbalanced start stays unbalanced", fontsize=10)
    return fig


def _toy(same=True, dk=0.0, lo=0.9, hi=1.1):
    return {"start_same_inertia_all": same, "start_abs_log_condition_ratio_max": dk, "allora_sgd": "a",
            "imbalance_ratio": {"a": {"ratio_lo": lo, "ratio_hi": hi}}}


def _case(*toys):
    return {"toys": dict(zip(("base", "plateau"), toys))}


VERDICT_EXAMPLES = [
    (_case(_toy(dk=0.2, lo=0.2, hi=0.5), _toy(lo=0.1, hi=0.3)), "supported"),          # 0.5 counts
    (_case(_toy(same=False), _toy()), "partly supported"),                             # inertia changes
    (_case(_toy(), _toy(dk=0.1)), "partly supported"),                                 # κ changes > 10 %
    (_case(_toy(lo=0.2, hi=0.4), _toy(lo=0.1, hi=0.45)), "partly supported"),          # rebalances only
    (_case(_toy(), _toy()), "not supported"),
    (_case(_toy(dk=1e-6, lo=0.51, hi=0.6), _toy()), "not supported"),                  # both edges on "fails"
    (_case(_toy(dk=1e-3), _toy()), "inconclusive"),                                    # (a) undecided
    (_case(_toy(), _toy(lo=0.4, hi=0.6)), "inconclusive"),                             # (b) undecided
]
