"""dropout.bottleneck-expectation: the paper's Eq. (1), the expected loss of dropout on the rank-r bottleneck."""

from __future__ import annotations

import dataclasses

import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.claims.dropout._common import Z_MC, Z_MC_GRAD, mc_agrees, mc_has_power, mc_site
from toyllora.plotting import figure, legend

STATEMENT = ("The paper's Eq. (1): E_V||Y − XWᵀ − ((XAᵀ)⊙V)Bᵀ||² = ||Y − X(W+BA)ᵀ||² + ((1−q)/q) "
             "Σ_k ||(XAᵀ)_{:,k}||² ||B_{:,k}||² for dropout on the rank-r bottleneck (V ∈ {0, 1/q}^{n×r}).")
SOURCE = "paper"


@dataclasses.dataclass(frozen=True)
class Params:
    keeps: tuple = (0.6, 0.8, 0.95)
    n_masks: int = 4000
    n_params: int = 4          # random adapters per keep and draw
    draws: int = 3
    d_in: int = 8
    d_out: int = 4
    rank: int = 2
    n: int = 48
    cond: float = 10.0
    noise: float = 0.3
    s: float = 2.0


SETUP = Setup(full=Params(), fast=Params(keeps=(0.6, 0.9), n_masks=1000, n_params=2, draws=1))


def rule(p: Params) -> str:
    return (f"Teacher–student (d_in {p.d_in}, d_out {p.d_out}, rank {p.rank}, n {p.n}, input condition {fmt(p.cond)}, "
            f"s = {fmt(p.s)}), {p.draws} task draws, keeps {'/'.join(fmt(q) for q in p.keeps)}, {p.n_params} random "
            f"adapters per keep and draw. Monte Carlo over {p.n_masks} masks against Eq. (1) (in the 0.5·mean "
            f"convention): the loss within {Z_MC:g} SE and every gradient entry within {Z_MC_GRAD:g} SE (Bonferroni "
            "over the entries) in every case. Control: the same Monte Carlo against a wrong closed form (Eq. 1's "
            "fit term with the output site's penalty, ((1−q)/q)||XAᵀBᵀ||²) must be rejected (|z| > "
            f"{Z_MC:g}) in at least half of the cases, so that the test can fail. Supported if the Monte Carlo "
            "agrees and the control is rejected; not supported if it disagrees; inconclusive if it agrees but the "
            "control is not rejected (too few masks to tell the penalties apart).")


def measure(p: Params, seed: int) -> dict:
    return {"mc": mc_site(seed, "bottleneck", keeps=p.keeps, n_masks=p.n_masks, n_params=p.n_params, draws=p.draws,
                          d_in=p.d_in, d_out=p.d_out, rank=p.rank, n=p.n, s=p.s, cond=p.cond, noise=p.noise,
                          control="output")}


def verdict(m: dict) -> str:
    if not mc_agrees(m["mc"]):
        return "not supported"
    return "supported" if mc_has_power(m["mc"]) else "inconclusive"


def plot(record: dict):
    """z-scores of the Monte Carlo mean loss against Eq. (1), per (keep, adapter)."""
    fig, ax = figure(1, 1, figsize=(8, 3.8))
    z = np.asarray(record["measurements"]["mc"]["z_loss"])
    zw = np.asarray(record["measurements"]["mc"]["z_loss_vs_control"])
    ax.plot(np.arange(len(z)), z, "o", label="(MC mean − Eq. 1) / SE,\nper (draw, keep, adapter)")
    ax.plot(np.arange(len(zw)), zw, "x", color="C3", label="control: against the output-site\npenalty (must be rejected)")
    ax.set_yscale("symlog", linthresh=10)
    ax.axhspan(-Z_MC, Z_MC, color="g", alpha=0.1, label=f"±{Z_MC:g} SE (rule)")
    ax.set_xlabel("case index (draw-, then keep-major)")
    ax.set_ylabel("z-score (standard errors)")
    ax.set_title("Bottleneck dropout: Monte Carlo vs Eq. (1)")
    legend(ax)
    return fig


def _case(z=1.0, zg=2.0, power=0.9):
    return {"mc": {"max_abs_z_loss": z, "max_abs_z_grad_entry": zg, "control_rejected_share": power}}


VERDICT_EXAMPLES = [
    (_case(), "supported"),
    (_case(z=3.9, zg=5.9), "supported"),     # just inside 4 SE and 6 SE
    (_case(z=4.1), "not supported"),         # the loss just outside
    (_case(zg=6.1), "not supported"),        # a gradient entry just outside
    (_case(power=0.5), "supported"),         # the control rejected in exactly half of the cases
    (_case(power=0.49), "inconclusive"),     # ... in fewer: the test could not have failed
]
