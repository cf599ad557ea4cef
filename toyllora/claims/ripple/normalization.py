"""ripple.normalization: with RMSNorm or LayerNorm between the LoRA layers, does the change that the adapters make
to the output still compound with depth?"""

from __future__ import annotations

import dataclasses

import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.claims.ripple._common import KINDS, SCALES, random_inputs
from toyllora.plotting import figure, legend
from toyllora.protocol import stats
from toyllora.theory import ripple

STATEMENT = ("The ripple effect survives normalization layers: with RMSNorm or LayerNorm between the LoRA layers the "
             "output still grows with depth like (1 + s m̄)^L.")
SOURCE = "review"
NORM_KINDS = ("none", "rms", "layer")
NORMS = ("rms", "layer")
LIKE = 0.5        # the verdict: the norm keeps at least this fraction of the no-norm compounding (interval)
CONTROL_TOL = 0.01  # the aligned control's compounding fraction must be within this of 0 (exact: 0, up to eps)


@dataclasses.dataclass(frozen=True)
class Params:
    L: int = 16               # depths 1..L (the networks of ripple.bound)
    d: int = 16
    rank: int = 4
    ratio: float = 0.1        # m = ||B_l A_l|| / ||W_l||
    scales: tuple = SCALES
    seeds: int = 10           # network draws 1000·master_seed + k
    n_inputs: int = 64        # random inputs; the aligned nets get the top right singular vector of W_1


SETUP = Setup(full=Params(), fast=Params(L=8, d=8, rank=2, seeds=4))


def rule(p: Params) -> str:
    return (f"The networks of ripple.bound (L = 1..{p.L}, width {p.d}, rank {p.rank}, s in {fmt(p.scales)}, "
            f"m = {fmt(p.ratio)}, {p.seeds} network draws per master seed) with no norm, RMSNorm or LayerNorm (no "
            "gain) between layers. Measured on generic ('random') adapters: the relative change of the output, "
            "c(L) = mean_x ||f_L(x) − f_L^base(x)|| / ||f_L^base(x)|| over Gaussian inputs, and its compounding "
            "over depth, log c(L_max)/c(1) (c(1) has no norm before it, so it is the same for all three). Per "
            "(norm, s) cell: (a) compounds: the exact sign-flip test of log c(L_max)/c(1) > 0 over the draws, "
            "Holm over all cells; (b) the fraction F = log c_norm(L_max)/c(1) ÷ log c_none(L_max)/c(1) of the "
            "no-norm compounding that the norm keeps, with its 95 % t-interval over the draws. Control (exact "
            "reference, proofs/ripple_normalization.md step 4): the aligned nets at their worst-case input, whose "
            "change through RMSNorm is pure scale (gain 1 + s m at every depth), which the norm removes: their F "
            f"with RMSNorm must be 0 (|F| <= {fmt(CONTROL_TOL)} at every s, else inconclusive; with LayerNorm, "
            "whose centering moves the aligned direction, it is reported). supported: every cell compounds and keeps "
            f">= {fmt(LIKE)} of the no-norm compounding (interval's lower end); not supported: no cell compounds; "
            f"partly supported: some cell does not compound or keeps < {fmt(LIKE)} (interval's upper end) — the "
            "change still compounds through the norm, but not like (1 + s m̄)^L; inconclusive otherwise.")


def _norm(kind):
    return None if kind == "none" else kind


def _changes(Ws, As, Bs, X, s, norm):
    """Per depth: mean ||f_ad(x)||/||f_base(x)|| (gain) and mean ||f_ad(x) − f_base(x)||/||f_base(x)|| (change)."""
    ad = ripple.forward_prefixes(Ws, As, Bs, X, s, norm)
    base = ripple.forward_prefixes(Ws, As, Bs, X, 0.0, norm)
    n_base = np.linalg.norm(base, axis=-1)
    return np.mean(np.linalg.norm(ad, axis=-1) / n_base, -1), np.mean(np.linalg.norm(ad - base, axis=-1) / n_base, -1)


def measure(p: Params, seed: int) -> dict:
    seeds = [1000 * seed + k for k in range(p.seeds)]
    out = {"depths": list(range(1, p.L + 1)), "cells": {}}
    curves = {}
    for kind in KINDS:
        out[kind] = {nk: {} for nk in NORM_KINDS}
        nets = [ripple.network(sd, kind, p.L, p.d, p.rank, p.ratio, numpy=True) for sd in seeds]
        Xs = [np.asarray(ripple.top_input(n[0]), np.float64)[None, :] if kind == "aligned"
              else random_inputs(sd, p.n_inputs, p.d) for sd, n in zip(seeds, nets)]
        for nk in NORM_KINDS:
            for s in p.scales:
                res = [_changes(*net, X, s, _norm(nk)) for net, X in zip(nets, Xs)]
                gains, changes = np.array([r[0] for r in res]), np.array([r[1] for r in res])
                curves[kind, nk, s] = changes
                out[kind][nk][str(s)] = {"gain": gains.mean(0), "change": changes.mean(0),
                                         "change_std": changes.std(0, ddof=1)}
    diffs, control = [], []
    for nk in NORMS:
        for s in p.scales:
            c_norm, c_none = curves["random", nk, s], curves["random", "none", s]
            comp = np.log(c_norm[:, -1] / c_norm[:, 0])
            frac = comp / np.log(c_none[:, -1] / c_none[:, 0])
            d = stats.paired_difference(comp, np.zeros_like(comp), seed=seed)
            f = stats.paired_difference(frac, np.zeros_like(frac), seed=seed)
            a_norm, a_none = curves["aligned", nk, s], curves["aligned", "none", s]
            f_al = np.log(a_norm[:, -1] / a_norm[:, 0]) / np.log(a_none[:, -1] / a_none[:, 0])
            if nk == "rms":   # exact for RMSNorm only: LayerNorm's centering moves the aligned direction
                control.append(float(np.max(np.abs(f_al))))
            d.update(cell=f"{nk} s={s:g}", norm=nk, s=s, fraction=f["mean"], fraction_lo=f["lo"],
                     fraction_hi=f["hi"], compounding_ratio=float(np.exp(comp.mean())),
                     none_compounding_ratio=float(np.exp(np.log(c_none[:, -1] / c_none[:, 0]).mean())),
                     aligned_fraction_max_abs=float(np.max(np.abs(f_al))))
            diffs.append(d)
    diffs = stats.compare_all(diffs, method="holm")
    out["cells"] = diffs
    out["compounds"] = sum(d["win"] == 1 for d in diffs)
    out["n_cells"] = len(diffs)
    out["like_no_norm"] = sum(d["fraction_lo"] >= LIKE for d in diffs)
    out["below_no_norm"] = sum(d["fraction_hi"] < LIKE for d in diffs)
    out["control_max_abs_fraction"] = max(control)
    # the aligned nets' gain through RMSNorm is 1 + s m at every depth (the proof's exact reference)
    out["aligned_rms_gain_max_rel_error"] = float(max(
        np.max(np.abs(np.asarray(out["aligned"]["rms"][str(s)]["gain"]) / (1 + s * p.ratio) - 1)) for s in p.scales))
    rows = [[d["cell"], f"{d['compounding_ratio']:.3g}×", f"{d['none_compounding_ratio']:.3g}×",
             f"{d['fraction']:.3f} [{d['fraction_lo']:.3f}, {d['fraction_hi']:.3f}]", f"{d['p_adjusted']:.3g}",
             "compounds" if d["win"] == 1 else ("shrinks" if d["win"] == -1 else "no change"),
             f"{d['aligned_fraction_max_abs']:.2g}"] for d in diffs]
    out["table_md"] = stats.markdown_table(
        ["norm, s", f"c(L={p.L})/c(1) with the norm", "without a norm", "F [95% CI]", "p (Holm)", "result",
         "aligned control |F|"], rows)
    return out


def verdict(m: dict) -> str:
    if m["control_max_abs_fraction"] > CONTROL_TOL:
        return "inconclusive"
    if m["compounds"] == 0:
        return "not supported"
    if m["compounds"] == m["n_cells"] and m["like_no_norm"] == m["n_cells"]:
        return "supported"
    if m["compounds"] < m["n_cells"] or m["below_no_norm"] > 0:
        return "partly supported"
    return "inconclusive"


def plot(record: dict):
    """Relative change of the output against depth, no norm vs RMSNorm vs LayerNorm: generic adapters (what the
    verdict judges) and the aligned control (pure scale)."""
    data, p = record["measurements"], record["config"]["setup"]
    fig, axes = figure(1, 2, figsize=(11, 4.2), sharey=True)
    depths = data["depths"]
    styles = {"none": "-", "rms": "--", "layer": ":"}
    for ax, kind in zip(axes, ("random", "aligned")):
        for i, s in enumerate(p["scales"]):
            for nk in NORM_KINDS:
                ax.plot(depths, data[kind][nk][str(s)]["change"], styles[nk], color=f"C{i}")
        ax.set_yscale("log")
        ax.set_xlabel("depth L (layers)")
    axes[0].set_title(f"generic adapters (m = {p['ratio']:g}), Gaussian inputs")
    axes[1].set_title("control: aligned adapters, worst-case input")
    axes[0].set_ylabel("relative output change ||f_L − f_L^base|| / ||f_L^base||")
    for i, s in enumerate(p["scales"]):  # the legend: colour = s, style = the norm
        axes[1].plot([], [], color=f"C{i}", lw=4, label=f"s = {s:g}")
    for nk in NORM_KINDS:
        axes[1].plot([], [], styles[nk], color="k", label=f"norm: {nk}")
    legend(axes[1])
    return fig


def _case(compounds=8, like=8, below=0, control=1e-6, n=8):
    return {"compounds": compounds, "like_no_norm": like, "below_no_norm": below, "n_cells": n,
            "control_max_abs_fraction": control}


VERDICT_EXAMPLES = [
    (_case(), "supported"),
    (_case(control=0.01), "supported"),                # the control's tolerance counts (<=)
    (_case(control=0.011), "inconclusive"),            # the control fails: the statistic cannot be trusted
    (_case(like=7, below=1), "partly supported"),      # one cell keeps less than half of the compounding
    (_case(compounds=7, like=8), "partly supported"),  # one cell does not compound
    (_case(like=7, below=0), "inconclusive"),          # one interval straddles 0.5
    (_case(compounds=0, like=0, below=8), "not supported"),
    (_case(compounds=0, like=8), "not supported"),
]
