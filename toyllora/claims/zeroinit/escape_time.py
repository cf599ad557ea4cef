"""zeroinit.escape-time: ALLoRA at base lr l_b escapes B = 0 faster than LoRA at the matched lr eta·l_b."""

from __future__ import annotations

import dataclasses

import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.claims.zeroinit._common import EscapeRuns, escape_runs, lr_name, progress, summary
from toyllora.plotting import figure, legend
from toyllora.theory import dynamics

STATEMENT = ("ALLoRA fixes the slow start of LoRA from B = 0: with its adaptive factor (c = eta at BA = 0) the "
             "escape from zero is faster than LoRA's at the paper's matched learning rate (LoRA at eta·l_b).")
SOURCE = "paper"
OPTIMIZERS = ("SGD", "Adam")
FIXED_RATIO = 0.5  # the verdict's threshold: ALLoRA fixes the start if its median escape <= this × LoRA's


@dataclasses.dataclass(frozen=True)
class Params:
    runs: EscapeRuns = EscapeRuns()
    threshold: float = 0.5     # escape: the learned fraction <ΔŴ, ΔW>/||ΔW||² first reaches this


SETUP = Setup(full=Params(), fast=Params(runs=EscapeRuns(seeds=2)))


def _lrs(r: EscapeRuns, opt: str):
    return r.sgd_lrs if opt == "SGD" else r.adam_lrs


def rule(p: Params) -> str:
    r, t = p.runs, p.runs.toy
    pairs = "; ".join(f"{opt}: l_b = {lr_name(_lrs(r, opt)[-1] / r.eta)} vs LoRA {lr_name(_lrs(r, opt)[-1])}"
                      for opt in OPTIMIZERS)
    return (f"Two-factor toy (whitened X, d_in {t.d_in}, d_out {t.d_out}, n {t.n_train}, rank-{t.shift_rank} "
            f"target with singular values {fmt(t.spectrum)}, r {t.rank}, s 1, kaiming A and B = 0), {r.seeds} "
            f"seeds, {r.steps} steps. Escape step = first recorded step where the learned fraction "
            f"<ΔŴ, ΔW>/||ΔW||² reaches {fmt(p.threshold)}; median over seeds. ALLoRA (eta {fmt(r.eta)}) at base "
            f"lr l_b is compared with LoRA at eta·l_b ({pairs}). ALLoRA fixes the start under an optimizer if "
            f"its median escape step is <= {fmt(FIXED_RATIO)} × LoRA's. Supported if under SGD and Adam; "
            "partly supported if under one; not supported if under neither; inconclusive if either median "
            f"never reaches {fmt(p.threshold)} within the budget.")


def analytic_progress(name, rule_, steps, task, r: EscapeRuns):
    """The exact gradient-flow learned fraction of an aligned start (proofs/zeroinit_learning_curve.md)."""
    sig = np.linalg.svd(np.asarray(task.delta, np.float64), compute_uv=False)[:r.toy.rank]
    a0, b0 = (0.0, r.a0_aligned) if "init_b" in name else (r.a0_aligned, 0.0)
    return dynamics.flow_progress(steps, sig, a0, b0, lr_a=rule_.lr, lr_b=rule_.lr * rule_.b_ratio)


def measure(p: Params, seed: int) -> dict:
    r = p.runs
    task, seeds, methods, aligned, runs, aruns, steps = escape_runs(r, seed)
    out = {"steps": steps, "methods": {}, "aligned": {}}
    for name, init, rule_ in methods:
        prog = progress(runs[name], task)
        esc = dynamics.escape_time(prog, p.threshold, steps)
        out["methods"][name] = {"escape": summary(esc), "median_curve": np.median(prog, 0),
                                "diverged": int(np.sum(runs[name]["diverged"] >= 0))}
    for name, init, rule_ in aligned:
        prog = progress(aruns[name], task)[0]
        ana = analytic_progress(name, rule_, steps, task, r)
        esc, esc_ana = dynamics.escape_time(prog, p.threshold, steps), dynamics.escape_time(ana, p.threshold, steps)
        out["aligned"][name] = {"curve": prog, "analytic": ana, "escape": esc, "escape_analytic": esc_ana,
                                "curve_rel_error": dynamics.relative_curve_error(prog, ana),
                                "escape_rel_error": float(abs(esc - esc_ana) / esc_ana)}
    ratios = {}
    for opt in OPTIMIZERS:
        top = _lrs(r, opt)[-1]
        allora_ = out["methods"][f"ALLoRA {opt} l_b={lr_name(top / r.eta)}"]["escape"]["median"]
        lora_matched = out["methods"][f"LoRA {opt} lr={lr_name(top)}"]["escape"]["median"]
        best = min(v["escape"]["median"] for k, v in out["methods"].items() if k.startswith(f"LoRA {opt} lr="))
        ratios[opt] = {"allora_escape": allora_, "lora_at_eta_lb_escape": lora_matched,
                       "ratio_allora_over_lora_matched": allora_ / lora_matched,
                       "best_lora_escape": best}
    out["allora_vs_lora"] = ratios
    return out


def verdict(m: dict) -> str:
    r = m["allora_vs_lora"]
    vals = [r[o][k] for k in ("allora_escape", "lora_at_eta_lb_escape") for o in OPTIMIZERS]
    if any(v is None for v in vals):  # a median that never escaped (inf, recorded as None)
        return "inconclusive"
    fixed = [r[o]["ratio_allora_over_lora_matched"] <= FIXED_RATIO for o in OPTIMIZERS]
    return "supported" if all(fixed) else "partly supported" if any(fixed) else "not supported"


def plot(record: dict):
    """Learned fraction of the target against steps: SGD and Adam panels; aligned runs with the exact flow."""
    data = record["measurements"]
    threshold = record["config"]["setup"]["threshold"]
    fig, axes = figure(1, 3, figsize=(15, 6.2))
    x = np.maximum(np.asarray(data["steps"]), 1)
    for ax, opt in zip(axes[:2], OPTIMIZERS):
        for name, v in data["methods"].items():
            if f" {opt}" in name:
                esc = v["escape"]["median"]
                esc = "never" if esc is None else f"{esc:g}"
                ax.plot(x, np.asarray(v["median_curve"], float), label=f"{name} (escape {esc})")
        ax.set_ylabel("learned fraction <ΔŴ,ΔW>/||ΔW||²")
        ax.set_title(f"{opt}, kaiming A and B = 0 (median of seeds)")
    ax = axes[2]
    for name, v in data["aligned"].items():
        ax.plot(x, v["curve"], label=f"{name} (rel. err {v['curve_rel_error']:.1e})")
        ax.plot(x, v["analytic"], "k--", lw=0.8)
    ax.plot([], [], "k--", lw=0.8, label="exact gradient flow (proofs/zeroinit_learning_curve.md)")
    ax.set_ylabel("learned fraction of the target")
    ax.set_title("aligned starts: GD vs exact flow")
    for ax in axes:
        ax.axhline(threshold, color="k", lw=0.6, ls=":")
        ax.set_xscale("log")
        ax.set_xlabel("step")
        legend(ax, "below", fontsize=7)
    fig.suptitle(f"Escape from B = 0 on the two-factor toy (dotted: escape level {threshold:g}; PiSSA's "
                 "rank-2 adapter cannot fit W0's top-2 part plus the shift, hence its plateau)", fontsize=9)
    return fig


def _case(sgd=0.4, adam=0.4, never=False):
    def cell(ratio):
        return {"allora_escape": None if never else 100.0 * ratio, "lora_at_eta_lb_escape": 100.0,
                "ratio_allora_over_lora_matched": None if never else ratio, "best_lora_escape": 50.0}
    return {"allora_vs_lora": {"SGD": cell(sgd), "Adam": cell(adam)}}


VERDICT_EXAMPLES = [
    (_case(0.4, 0.5), "supported"),            # 0.5 is on the supported side (<=)
    (_case(0.4, 0.51), "partly supported"),    # Adam just above 0.5
    (_case(0.51, 0.3), "partly supported"),    # SGD just above 0.5
    (_case(1.3, 2.0), "not supported"),
    (_case(never=True), "inconclusive"),       # ALLoRA's median never reaches the level
    ({"allora_vs_lora": {"SGD": {"allora_escape": 10.0, "lora_at_eta_lb_escape": None,
                                 "ratio_allora_over_lora_matched": 0.0},
                         "Adam": {"allora_escape": 10.0, "lora_at_eta_lb_escape": 20.0,
                                  "ratio_allora_over_lora_matched": 0.5}}}, "inconclusive"),  # LoRA never escapes
]
