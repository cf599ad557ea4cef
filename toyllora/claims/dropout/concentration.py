"""dropout.concentration: at fixed parameters the loss averaged over N masks is Std/√N from its expectation (RMS)."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.claims.dropout._common import as_float64, random_adapter
from toyllora.config import LoraConfig
from toyllora.data import diabetes, teacher_student
from toyllora.plotting import figure, legend
from toyllora.theory import dropout as dt

STATEMENT = ("The gap between the loss averaged over N masks and its expectation is at most Std/√N "
             "(Fig. 1): at fixed parameters it shrinks as 1/√N, with more noise for larger drop rates.")
SOURCE = "paper"
SLOPE, SLOPE_TOL = -0.5, 0.05     # the log–log slope of the RMS gap against N
RATIO_RANGE = (0.8, 1.25)         # RMS gap / (Std/√N) at every N
DATASETS = ("synthetic", "diabetes")


@dataclasses.dataclass(frozen=True)
class Params:
    rates: tuple = (0.05, 0.1, 0.2, 0.4)
    reps: int = 400                # repetitions of the N-mask average (the RMS is over these)
    n_max: int = 256               # N = 1, 2, 4, ..., n_max
    site: str = "bottleneck"       # the paper's Eq. (1)
    s: float = 1.0
    d_in: int = 16                 # synthetic teacher–student
    d_out: int = 8
    rank: int = 4
    n: int = 64
    noise: float = 0.3
    diabetes_rank: int = 1         # diabetes (its 200 training rows), base weight 0.1·N(0, 1)
    diabetes_base_scale: float = 0.1


SETUP = Setup(full=Params(), fast=Params(reps=300, n_max=64))


def mask_counts(p: Params) -> list[int]:
    return [2 ** k for k in range(int(np.log2(p.n_max)) + 1)]


def rule(p: Params) -> str:
    return (f"At one fixed random adapter ({p.site} site, the paper's Eq. 1), synthetic teacher–student "
            f"(d_in {p.d_in}, d_out {p.d_out}, r {p.rank}, n {p.n}) and diabetes (r {p.diabetes_rank}, n 200), drop "
            f"rates {'/'.join(fmt(r) for r in p.rates)}, N = 1…{p.n_max} masks, RMS over {p.reps} repetitions. "
            "Supported if in every (data, rate) the log–log slope of the RMS gap against N is "
            f"{str(SLOPE).replace('-', '−')} ± {SLOPE_TOL:g} and the RMS gap divided by Std/√N lies in "
            f"[{RATIO_RANGE[0]:g}, {RATIO_RANGE[1]:g}] at every N (Std/√N is the RMS, not a bound on every draw: the "
            "fraction of draws above it is reported); partly supported if only one of the two holds; otherwise not "
            "supported.")


@functools.partial(jax.jit, static_argnames=("site", "s", "r", "reps", "n_max"))
def _concentration_cell(W, X, Y, seed, q, *, site, s, r, reps, n_max):
    """``reps × n_max`` single-mask losses at one fixed random adapter, and the closed-form expectation."""
    kp, km = jax.random.split(jax.random.key(seed))
    p = random_adapter(kp, X.shape[1], Y.shape[1], r)
    cfg = LoraConfig(rank=r, alpha=s * r, keep=0.5, dropout_site=site)
    keys = jax.random.split(km, reps * n_max)
    vals = jax.vmap(lambda k: dt.sampled_loss_keep(W, p, X, Y, k, q, site, s))(keys)
    return vals.reshape(reps, n_max), dt.expected_loss(W, p, X, Y, cfg, keep=q)


def measure(p: Params, seed: int) -> dict:
    Ns = mask_counts(p)
    t = teacher_student(seed=seed, d_in=p.d_in, d_out=p.d_out, n_train=p.n, n_test=8, shift_rank=2, noise=p.noise)
    dia, _ = diabetes(seed=seed)
    rng = np.random.default_rng(seed)
    W_dia = jnp.asarray(p.diabetes_base_scale * rng.standard_normal((1, dia.X.shape[1])), dia.X.dtype)
    sets = {"synthetic": (t.W0, t.data.X, t.data.Y, p.rank), "diabetes": (W_dia, dia.X, dia.Y, p.diabetes_rank)}
    out = {}
    for name, (W, X, Y, r) in sets.items():
        out[name] = {}
        for i, rate in enumerate(p.rates):
            vals, closed = _concentration_cell(W, X, Y, seed * 1000 + i, np.asarray(1 - rate, X.dtype),
                                               site=p.site, s=p.s, r=r, reps=p.reps, n_max=p.n_max)
            vals, E = np.asarray(vals, np.float64), as_float64(closed)
            std = float(vals.std(ddof=1))
            rms, frac1, frac2 = [], [], []
            for N in Ns:
                gap = vals[:, :N].mean(axis=1) - E
                bound = std / np.sqrt(N)
                rms.append(float(np.sqrt(np.mean(gap ** 2))))
                frac1.append(float(np.mean(np.abs(gap) > bound)))
                frac2.append(float(np.mean(np.abs(gap) > 2 * bound)))
            slope = float(np.polyfit(np.log(Ns), np.log(rms), 1)[0])
            ratio = [r_ / (std / np.sqrt(N)) for r_, N in zip(rms, Ns)]
            out[name][str(rate)] = {"expected_loss": E, "std_single_mask": std, "rel_std": std / E,
                                    "rms_gap": rms, "rms_gap_over_bound": ratio, "frac_above_bound": frac1,
                                    "frac_above_2x_bound": frac2, "loglog_slope": slope,
                                    "masks_for_1pct": float((std / (0.01 * E)) ** 2)}
    return out


def verdict(m: dict) -> str:
    cells = [c for name in DATASETS for c in m[name].values()]
    slope_ok = all(abs(c["loglog_slope"] - SLOPE) <= SLOPE_TOL for c in cells)
    ratio_ok = all(RATIO_RANGE[0] <= r <= RATIO_RANGE[1] for c in cells for r in c["rms_gap_over_bound"])
    if slope_ok and ratio_ok:
        return "supported"
    return "partly supported" if (slope_ok or ratio_ok) else "not supported"


def plot(record: dict):
    """RMS gap against N per drop rate, with the Std/√N lines, for both data sets."""
    data = record["measurements"]
    fig, axes = figure(1, 2, figsize=(12, 4.4))
    for ax, name in zip(axes, DATASETS):
        for i, (rate, c) in enumerate(data[name].items()):
            Ns = 2 ** np.arange(len(c["rms_gap"]))
            ax.loglog(Ns, c["rms_gap"], "o-", color=f"C{i}", label=f"drop {rate}: RMS gap")
            ax.loglog(Ns, c["std_single_mask"] / np.sqrt(Ns), "--", color=f"C{i}", lw=0.8,
                      label=f"drop {rate}: Std/√N")
        ax.set_xlabel("number of masks N averaged")
        ax.set_ylabel("RMS of (mean over N masks − E L)")
        ax.set_title(f"{name}: bottleneck dropout at fixed parameters")
        legend(ax, "below", ncol=2)
    return fig


def _case(slope=-0.5, ratio=1.0):
    cell = {"loglog_slope": slope, "rms_gap_over_bound": [1.0, ratio, 1.02]}
    ok = {"loglog_slope": -0.5, "rms_gap_over_bound": [1.0, 0.98]}
    return {"synthetic": {"0.1": ok, "0.4": cell}, "diabetes": {"0.1": ok}}


VERDICT_EXAMPLES = [
    (_case(), "supported"),
    (_case(slope=-0.54), "supported"),           # slope just inside −0.5 ± 0.05
    (_case(slope=-0.46), "supported"),
    (_case(slope=-0.56), "partly supported"),    # slope just outside (below)
    (_case(slope=-0.44), "partly supported"),    # slope just outside (above)
    (_case(ratio=0.81), "supported"),            # ratio just inside [0.8, 1.25]
    (_case(ratio=1.24), "supported"),
    (_case(ratio=0.79), "partly supported"),     # ratio just outside (below)
    (_case(ratio=1.26), "partly supported"),     # ratio just outside (above)
    (_case(slope=-0.3, ratio=1.5), "not supported"),
]
