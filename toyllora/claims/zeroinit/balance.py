"""zeroinit.balance: gradient descent nearly conserves AAᵀ − BᵀB (drift shrinking with the step), Adam breaks it."""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.claims.zeroinit._common import EscapeRuns, escape_runs, lr_name, summary
from toyllora.plotting import figure, legend

STATEMENT = ("Gradient flow conserves AAᵀ − BᵀB (Du, Hu & Lee 2018, arXiv:1806.00900): gradient descent keeps it "
             "up to a drift that shrinks with the step size, while Adam breaks it.")
SOURCE = "extension"
GD_MAX_DRIFT = 0.1  # the verdict: LoRA under SGD at the smallest lr drifts less than this
ADAM_FACTOR = 5.0   # ... and Adam (largest lr) drifts more than this × SGD's drift at the smallest lr


@dataclasses.dataclass(frozen=True)
class Params:
    runs: EscapeRuns = EscapeRuns()  # the runs of zeroinit.escape-time (shared, run once per process)


SETUP = Setup(full=Params(), fast=Params(runs=EscapeRuns(seeds=2)))


def rule(p: Params) -> str:
    r = p.runs
    return (f"On the runs of zeroinit.escape-time (two-factor toy, {r.steps} steps, {r.seeds} seeds), drift = max "
            "over steps of ||Q(t) − Q(0)||_F / (||A0A0ᵀ||_F + ||B0ᵀB0||_F) with Q = AAᵀ − BᵀB, median over seeds. "
            f"Supported if LoRA under SGD has drift < {fmt(GD_MAX_DRIFT)} at lr {fmt(r.sgd_lrs[0])} and a drift "
            f"increasing with lr over {fmt(r.sgd_lrs)}, and LoRA under Adam (lr {fmt(r.adam_lrs[-1])}) drifts more "
            f"than {fmt(ADAM_FACTOR)} × SGD's drift at lr {fmt(r.sgd_lrs[0])}; partly supported if only the SGD "
            "part holds; not supported otherwise. ALLoRA, LoRA+, scaled GD, init_b and PiSSA are reported "
            "alongside.")


def balance_drift(run):
    """``||Q(t) − Q(0)||_F / (||A₀A₀ᵀ||_F + ||B₀ᵀB₀||_F)`` with ``Q = AAᵀ − BᵀB`` (S, records).

    The scale of the start, not ``||Q(0)||``, normalizes: PiSSA starts balanced (``Q(0) = 0``).
    """
    AA = np.einsum("strj,stkj->strk", run["A"], run["A"])
    BB = np.einsum("stir,stik->strk", run["B"], run["B"])
    Q = AA - BB
    scale = np.linalg.norm(AA[:, 0], axis=(-2, -1)) + np.linalg.norm(BB[:, 0], axis=(-2, -1))
    return np.linalg.norm(Q - Q[:, :1], axis=(-2, -1)) / scale[:, None]


def measure(p: Params, seed: int) -> dict:
    r = p.runs
    task, seeds, methods, aligned, runs, aruns, steps = escape_runs(r, seed)
    out = {"steps": steps, "methods": {}}
    for name, init, rule_ in methods:
        d = balance_drift(runs[name])
        out["methods"][name] = {"max_drift": summary(d.max(1)), "median_curve": np.median(d, 0)}
    out["gd_drift_by_lr"] = {lr_name(lr): out["methods"][f"LoRA SGD lr={lr_name(lr)}"]["max_drift"]["median"]
                             for lr in r.sgd_lrs}
    out["adam_drift"] = out["methods"][f"LoRA Adam lr={lr_name(r.adam_lrs[-1])}"]["max_drift"]["median"]
    out["allora_sgd_drift"] = out["methods"][f"ALLoRA SGD l_b={lr_name(r.sgd_lrs[-1] / r.eta)}"]["max_drift"]["median"]
    return out


def verdict(m: dict) -> str:
    gd = [m["gd_drift_by_lr"][k] for k in sorted(m["gd_drift_by_lr"], key=float)]  # in lr order
    finite = all(v is not None for v in gd)  # a diverged run's drift is NaN (recorded as None): no conservation
    gd_ok = finite and gd[0] < GD_MAX_DRIFT and all(a < b for a, b in zip(gd, gd[1:]))
    adam_breaks = gd_ok and m["adam_drift"] is not None and m["adam_drift"] > ADAM_FACTOR * gd[0]
    if gd_ok and adam_breaks:
        return "supported"
    return "partly supported" if gd_ok else "not supported"


def plot(record: dict):
    """Relative drift of AAᵀ − BᵀB against steps, one line per method (median over seeds)."""
    data = record["measurements"]
    fig, ax = figure(1, 1, figsize=(10, 4.8))
    x = np.asarray(data["steps"])[1:]  # the drift is exactly 0 at step 0: off a log axis
    colors = plt.get_cmap("tab20").colors
    for i, (name, v) in enumerate(data["methods"].items()):
        curve = np.asarray(v["median_curve"], float)[1:]  # None (NaN of a diverged run) becomes NaN
        ax.plot(x, curve, label=name, color=colors[i % len(colors)], ls="-" if " SGD" in name else "--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("||Q(t) − Q(0)||_F / (||A₀A₀ᵀ||_F + ||B₀ᵀB₀||_F)")
    ax.set_title("Balance matrix Q = AAᵀ − BᵀB (gradient flow keeps it exactly); median of seeds")
    legend(ax, fontsize=7)
    return fig


def _case(gd=(0.01, 0.02, 0.05), adam=1.0):
    return {"gd_drift_by_lr": dict(zip(("0.01", "0.03", "0.1"), gd)), "adam_drift": adam}


VERDICT_EXAMPLES = [
    (_case(), "supported"),
    (_case(gd=(0.099, 0.2, 0.3), adam=0.5), "supported"),         # just below 0.1, Adam just above 5 × 0.099
    (_case(adam=0.05), "partly supported"),                        # Adam = 5 × SGD's drift: not more
    (_case(adam=None), "partly supported"),                        # Adam diverged
    (_case(gd=(0.1, 0.2, 0.3), adam=5.0), "not supported"),        # drift 0.1 at the smallest lr: not < 0.1
    (_case(gd=(0.01, 0.03, 0.02), adam=1.0), "not supported"),     # not increasing with lr
    (_case(gd=(0.01, None, 0.05), adam=1.0), "not supported"),     # an SGD run diverged
]
