"""ripple.bound: ||f_L(x)|| <= Π(||W_l|| + s||B_lA_l||)||x|| <= C(1 + s m̄)^L ||x||, and the bound is tight."""

from __future__ import annotations

import dataclasses

import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.claims.ripple._common import KINDS, SCALES, exponent_fraction, random_inputs
from toyllora.plotting import figure, legend
from toyllora.theory import ripple

STATEMENT = ("The output of an L-layer multilinear net with LoRA on every layer obeys ||f_L(x)|| <= "
             "Π_l(||W_l|| + s||B_l A_l||)||x|| <= C(1 + s m̄)^L ||x||, and this bound is tight (the output grows "
             "like (1 + s m̄)^L).")
SOURCE = "paper"
TOLERANCE = 1e-9   # no step of the chain may be exceeded by more than this, relative (NumPy float64)
ATTAINED = 0.999   # the aligned nets reach at least this fraction of the bound
TIGHT = 0.5        # random adapters: the growth exponent is at least this fraction of log(1 + s m)
CHAIN = ("realized_x", "realized_worst", "merged_product", "triangle", "amgm")
PAIRS = list(zip(CHAIN, CHAIN[1:])) + [("lower", "realized_worst"), ("change_worst", "change_triangle"),
                                      ("change_triangle", "change_amgm")]


@dataclasses.dataclass(frozen=True)
class Params:
    L: int = 16               # depths 1..L
    d: int = 16
    rank: int = 4
    ratio: float = 0.1        # m = ||B_l A_l|| / ||W_l||
    scales: tuple = SCALES
    seeds: int = 5            # network seeds master_seed, master_seed + 1, ...
    n_inputs: int = 64


SETUP = Setup(full=Params(), fast=Params(L=8, d=8, rank=2, seeds=2))


def rule(p: Params) -> str:
    return (f"Depths L = 1..{p.L}, s in {fmt(p.scales)}, m = ||B_lA_l||/||W_l|| = {fmt(p.ratio)}, width {p.d}, rank "
            f"{p.rank}, {p.seeds} seeds; 'aligned' = chained base (W_l's top output direction is W_{{l+1}}'s top "
            "input one) with adapters on the top singular directions; 'random' = N(0, 1/d) base with Gaussian "
            "adapters rescaled to the same m. C = Π||W_l||, m̄ = mean of the ratios. Holds: no step of the chain "
            "(realized for random x <= worst case <= Π||M_l|| <= triangle <= AM-GM; lower bound Πσ_min <= worst "
            f"case; same for the output change) is exceeded by more than {fmt(TOLERANCE)} relative (evaluated in "
            f"NumPy float64). Attained: the aligned nets reach >= {fmt(ATTAINED)} of C(1 + s m̄)^L at every depth. "
            "Tight for random: the per-layer growth of ||Π M_l||/||Π W_l|| (least squares over L) has an exponent "
            f">= {fmt(TIGHT)} × log(1 + s m) (median over s). supported: holds, attained and tight for random; "
            "partly supported: holds and attained, loose for random (tight only as a worst case); not supported: "
            "a step is violated or the bound is never attained.")


def measure(p: Params, seed: int) -> dict:
    seeds = list(range(seed, seed + p.seeds))
    out = {"depths": list(range(1, p.L + 1)), "tolerance": TOLERANCE}
    violations, attained = 0, []
    depth = np.arange(1, p.L + 1)
    for kind in KINDS:
        out[kind] = {}
        # exact float64 linear algebra in NumPy (nothing to compile); tests/test_ripple.py checks the JAX path
        nets = [ripple.network(sd, kind, p.L, p.d, p.rank, p.ratio, numpy=True) for sd in seeds]
        recs = [[ripple.bound_chain(*net, s, random_inputs(sd, p.n_inputs, p.d)) for s in p.scales]
                for sd, net in zip(seeds, nets)]
        batch = {k: np.array([[r[k] for r in row] for row in recs]) for k in recs[0][0]}   # (seeds, scales, L)
        for j, s in enumerate(p.scales):
            r = {k: v[:, j] for k, v in batch.items()}                           # (seeds, L)
            excess = max(float(np.max(r[a] / r[b] - 1.0)) for a, b in PAIRS)
            violations += int(excess > TOLERANCE)
            to_bound = r["realized_worst"] / r["amgm"]
            if kind == "aligned":
                attained.append(float(np.min(to_bound)))
            gain = r["realized_worst"] / r["base_worst"]
            rates = [ripple.growth_rate(g) for g in gain]
            out[kind][str(s)] = {
                **{k: r[k].mean(0) for k in ("realized_worst", "realized_x", "merged_product", "triangle", "amgm",
                                             "lower", "base_worst", "C")},
                "gain_over_base": gain.mean(0),
                "bound_gain": (1.0 + s * p.ratio) ** depth,
                "change_worst_rel": (r["change_worst"] / r["C"]).mean(0),
                "change_bound_rel": (1.0 + s * p.ratio) ** depth - 1.0,
                "realized_over_bound_at_Lmax": float(to_bound[:, -1].mean()),
                "growth_rate": float(np.mean(rates)), "growth_rate_std": float(np.std(rates)),
                "bound_rate": 1.0 + s * p.ratio,
                "exponent_fraction": float(np.mean([exponent_fraction(g, s, p.ratio) for g in gain])),
                "max_step_excess": excess,
            }
    out["violations"] = violations
    out["aligned_min_realized_over_bound"] = min(attained)
    out["random_median_exponent_fraction"] = float(np.median(
        [out["random"][str(s)]["exponent_fraction"] for s in p.scales]))
    return out


def verdict(m: dict) -> str:
    if m["violations"] > 0 or m["aligned_min_realized_over_bound"] < ATTAINED:
        return "not supported"
    return "supported" if m["random_median_exponent_fraction"] >= TIGHT else "partly supported"


def plot(record: dict):
    """Gain over the base net, ``||Π M_l|| / ||Π W_l||``, against depth, with the bound ``(1 + s m)^L`` dashed."""
    data, p = record["measurements"], record["config"]["setup"]
    fig, axes = figure(1, 2, figsize=(11, 4.2), sharey=True)
    depths = data["depths"]
    for ax, kind in zip(axes, KINDS):
        for i, s in enumerate(p["scales"]):
            d = data[kind][str(s)]
            ax.plot(depths, d["gain_over_base"], "o-", color=f"C{i}", ms=3)
            ax.plot(depths, d["bound_gain"], "--", color=f"C{i}")
        ax.set_yscale("log")
        ax.set_xlabel("depth L (layers)")
        ax.set_title(f"{kind} adapters (m = ||BA||/||W|| = {p['ratio']:g})")
    axes[0].set_ylabel("worst-case gain over base ||M_L…M_1|| / ||W_L…W_1||")
    for i, s in enumerate(p["scales"]):  # the legend: colour = s, style = measured or bound
        axes[1].plot([], [], color=f"C{i}", lw=4, label=f"s = {s:g}")
    axes[1].plot([], [], "o-", color="k", ms=3, label="measured")
    axes[1].plot([], [], "--", color="k", label="bound (1 + s m)^L")
    legend(axes[1])
    return fig


def _case(violations=0, attained=1.0, frac=0.9):
    return {"violations": violations, "aligned_min_realized_over_bound": attained,
            "random_median_exponent_fraction": frac}


VERDICT_EXAMPLES = [
    (_case(), "supported"),
    (_case(attained=0.999, frac=0.5), "supported"),     # both thresholds count (>=)
    (_case(frac=0.49), "partly supported"),             # loose for random adapters
    (_case(frac=0.1), "partly supported"),
    (_case(violations=1), "not supported"),
    (_case(attained=0.998), "not supported"),           # just under 0.999
    (_case(attained=0.5), "not supported"),
]
