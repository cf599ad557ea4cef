"""ripple.bound: ||f_L(x)|| <= Π(||W_l|| + s||B_lA_l||)||x|| <= C(1 + s m̄)^L ||x||, and the bound is tight."""

from __future__ import annotations

import dataclasses

import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.claims.ripple._common import KINDS, SCALES, exponent_fraction, random_inputs
from toyllora.plotting import figure, legend
from toyllora.protocol import stats
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
    seeds: int = 8            # network draws 1000·master_seed + k
    n_inputs: int = 64


SETUP = Setup(full=Params(), fast=Params(L=8, d=8, rank=2, seeds=3))


def rule(p: Params) -> str:
    return (f"Depths L = 1..{p.L}, s in {fmt(p.scales)}, m = ||B_lA_l||/||W_l|| = {fmt(p.ratio)}, width {p.d}, rank "
            f"{p.rank}, {p.seeds} network draws per master seed; 'aligned' = chained base (W_l's top output "
            "direction is W_{l+1}'s top input one) with adapters on the top singular directions; 'random' = N(0, 1/d) base with Gaussian "
            "adapters rescaled to the same m. C = Π||W_l||, m̄ = mean of the ratios. Holds: no step of the chain "
            "(realized for random x <= worst case <= Π||M_l|| <= triangle <= AM-GM; lower bound Πσ_min <= worst "
            f"case; same for the output change) is exceeded by more than {fmt(TOLERANCE)} relative (evaluated in "
            f"NumPy float64). Attained (the control: a construction for which every step is an equality, "
            f"proofs/ripple_tight_case.md): the aligned nets reach >= {fmt(ATTAINED)} of C(1 + s m̄)^L at every "
            "depth. Tight for generic adapters: per random draw, the per-layer growth of ||Π M_l||/||Π W_l|| (least "
            "squares over L) as a fraction of log(1 + s m), median over s; its 95 % t-interval over the draws: "
            f"tight if the lower end is >= {fmt(TIGHT)}, loose if the upper end is below it. supported: holds, "
            "attained and tight for random; partly supported: holds and attained, loose for random (tight only "
            "as a worst case); inconclusive: holds and attained, the interval straddles "
            f"{fmt(TIGHT)}; not supported: a step is violated or the bound is never attained.")


def measure(p: Params, seed: int) -> dict:
    seeds = [1000 * seed + k for k in range(p.seeds)]
    out = {"depths": list(range(1, p.L + 1)), "tolerance": TOLERANCE}
    violations, attained, per_draw_fractions = 0, [], []
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
            if kind == "random":
                per_draw_fractions.append([exponent_fraction(g, s, p.ratio) for g in gain])
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
    per_draw = np.median(np.array(per_draw_fractions), axis=0)        # median over s, per draw
    d = stats.paired_difference(per_draw, np.zeros_like(per_draw), seed=seed)
    out["random_exponent_fraction_per_draw"] = per_draw
    out["random_exponent_fraction_lo"], out["random_exponent_fraction_hi"] = d["lo"], d["hi"]
    return out


def verdict(m: dict) -> str:
    if m["violations"] > 0 or m["aligned_min_realized_over_bound"] < ATTAINED:
        return "not supported"
    if m["random_exponent_fraction_lo"] >= TIGHT:
        return "supported"
    return "partly supported" if m["random_exponent_fraction_hi"] < TIGHT else "inconclusive"


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


def _case(violations=0, attained=1.0, lo=0.7, hi=0.9):
    return {"violations": violations, "aligned_min_realized_over_bound": attained,
            "random_exponent_fraction_lo": lo, "random_exponent_fraction_hi": hi}


VERDICT_EXAMPLES = [
    (_case(), "supported"),
    (_case(attained=0.999, lo=0.5), "supported"),       # both thresholds count (>=)
    (_case(lo=0.3, hi=0.49), "partly supported"),       # loose for random adapters
    (_case(lo=0.0, hi=0.1), "partly supported"),
    (_case(lo=0.49, hi=0.6), "inconclusive"),           # the interval straddles 0.5
    (_case(lo=0.3, hi=0.5), "inconclusive"),            # upper end at 0.5 is not below it
    (_case(violations=1), "not supported"),
    (_case(attained=0.998), "not supported"),           # just under 0.999
    (_case(attained=0.5, lo=0.0, hi=0.1), "not supported"),
]
