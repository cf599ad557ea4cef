"""ripple.normalization: with RMSNorm or LayerNorm between the LoRA layers, does the output still grow like
(1 + s m̄)^L?"""

from __future__ import annotations

import dataclasses

import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.claims.ripple._common import KINDS, SCALES, exponent_fraction, random_inputs
from toyllora.plotting import figure, legend
from toyllora.theory import ripple

STATEMENT = ("The ripple effect survives normalization layers: with RMSNorm or LayerNorm between the LoRA layers the "
             "output still grows with depth like (1 + s m̄)^L.")
SOURCE = "review"
NORM_KINDS = ("none", "rms", "layer")
SURVIVES = 0.5  # the verdict: median exponent fraction >= this with both norms: supported
REMOVED = 0.1   # ... < this with both: not supported


@dataclasses.dataclass(frozen=True)
class Params:
    L: int = 16               # depths 1..L (the networks of ripple.bound)
    d: int = 16
    rank: int = 4
    ratio: float = 0.1        # m = ||B_l A_l|| / ||W_l||
    scales: tuple = SCALES
    seeds: int = 5            # network seeds master_seed, master_seed + 1, ...
    n_inputs: int = 64        # random inputs; the aligned nets get the top right singular vector of W_1


SETUP = Setup(full=Params(), fast=Params(L=8, d=8, rank=2, seeds=2))


def rule(p: Params) -> str:
    return (f"The networks of ripple.bound (L = 1..{p.L}, s in {fmt(p.scales)}, m = {fmt(p.ratio)}, {p.seeds} seeds) "
            "with no norm, RMSNorm or LayerNorm (no gain) between layers. Measured: the per-layer growth exponent of "
            "the output gain over the base net, ||f_L(x)||/||f_L^base(x)||, as a fraction of log(1 + s m) (least "
            "squares over L), for the aligned construction at its worst-case input (exponent 1 without a norm). "
            f"supported: median over s >= {fmt(SURVIVES)} with RMSNorm and with LayerNorm; not supported: "
            f"< {fmt(REMOVED)} with both; partly supported otherwise.")


def _norm(kind):
    return None if kind == "none" else kind


def _gains(Ws, As, Bs, X, s, norm):
    """Per depth: mean ||f_ad(x)||/||f_base(x)||, mean relative change, max ||f_ad(x)|| / (sqrt(d)||M_L||)."""
    ad = ripple.forward_prefixes(Ws, As, Bs, X, s, norm)
    base = ripple.forward_prefixes(Ws, As, Bs, X, 0.0, norm)
    n_ad, n_base = np.linalg.norm(ad, axis=-1), np.linalg.norm(base, axis=-1)
    change = np.linalg.norm(ad - base, axis=-1) / n_base
    # with a norm, ||f_L(x)|| <= sqrt(d) ||M_L|| for L >= 2 (proofs/ripple_normalization.md)
    last = np.sqrt(X.shape[-1]) * ripple.spectral_norm(ripple.merged(Ws, As, Bs, s))
    return np.mean(n_ad / n_base, -1), np.mean(change, -1), np.max(n_ad, -1) / last


def measure(p: Params, seed: int) -> dict:
    seeds = list(range(seed, seed + p.seeds))
    out = {"depths": list(range(1, p.L + 1))}
    for kind in KINDS:
        out[kind] = {nk: {} for nk in NORM_KINDS}
        nets = [ripple.network(sd, kind, p.L, p.d, p.rank, p.ratio, numpy=True) for sd in seeds]
        Xs = [np.asarray(ripple.top_input(n[0]), np.float64)[None, :] if kind == "aligned"
              else random_inputs(sd, p.n_inputs, p.d) for sd, n in zip(seeds, nets)]
        for nk in NORM_KINDS:
            for s in p.scales:
                res = [_gains(*net, X, s, _norm(nk)) for net, X in zip(nets, Xs)]
                gains = np.array([r[0] for r in res])
                changes = np.array([r[1] for r in res])
                out[kind][nk][str(s)] = {
                    "gain": gains.mean(0), "gain_std": gains.std(0),
                    "change": changes.mean(0), "change_std": changes.std(0),
                    "exponent_fraction": float(np.mean([exponent_fraction(g, s, p.ratio) for g in gains])),
                    "max_output_over_sqrt_d_norm_ML": float(max(np.max(r[2][1:]) for r in res)),
                }
    for nk in NORM_KINDS:
        for kind in KINDS:
            out[f"{kind}_median_exponent_{nk}"] = float(np.median(
                [out[kind][nk][str(s)]["exponent_fraction"] for s in p.scales]))
    return out


def verdict(m: dict) -> str:
    rms, layer = m["aligned_median_exponent_rms"], m["aligned_median_exponent_layer"]
    if rms >= SURVIVES and layer >= SURVIVES:
        return "supported"
    if rms < REMOVED and layer < REMOVED:
        return "not supported"
    return "partly supported"


def plot(record: dict):
    """Gain over the base network against depth, no norm vs RMSNorm vs LayerNorm, aligned and random."""
    data, p = record["measurements"], record["config"]["setup"]
    fig, axes = figure(1, 2, figsize=(11, 4.2), sharey=True)
    depths = data["depths"]
    styles = {"none": "-", "rms": "--", "layer": ":"}
    for ax, kind in zip(axes, KINDS):
        for i, s in enumerate(p["scales"]):
            for nk in NORM_KINDS:
                ax.plot(depths, data[kind][nk][str(s)]["gain"], styles[nk], color=f"C{i}")
        ax.set_yscale("log")
        ax.set_xlabel("depth L (layers)")
        ax.set_title(f"{kind} adapters (m = {p['ratio']:g}); inputs: "
                     + ("top direction" if kind == "aligned" else "Gaussian"))
    axes[0].set_ylabel("output gain over base  ||f_L(x)|| / ||f_L^base(x)||")
    for i, s in enumerate(p["scales"]):  # the legend: colour = s, style = the norm
        axes[1].plot([], [], color=f"C{i}", lw=4, label=f"s = {s:g}")
    for nk in NORM_KINDS:
        axes[1].plot([], [], styles[nk], color="k", label=f"norm: {nk}")
    legend(axes[1])
    return fig


def _case(rms, layer):
    return {"aligned_median_exponent_rms": rms, "aligned_median_exponent_layer": layer}


VERDICT_EXAMPLES = [
    (_case(0.9, 0.8), "supported"),
    (_case(0.5, 0.5), "supported"),              # 0.5 counts (>=)
    (_case(0.49, 0.9), "partly supported"),      # RMSNorm just below 0.5
    (_case(0.9, 0.01), "partly supported"),
    (_case(0.3, 0.3), "partly supported"),
    (_case(0.1, 0.05), "partly supported"),      # 0.1 is not < 0.1
    (_case(0.01, 0.05), "not supported"),
    (_case(0.099, 0.099), "not supported"),
]
