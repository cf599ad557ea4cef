"""dropout.concentration: hundreds of mask realizations are needed before the averaged loss is near its
expectation, and more for larger drop rates (Fig. 1)."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.claims.dropout._common import (draw_seeds, exp_interval, groups_of, holm, one_sample, paired,
                                             random_adapter)
from toyllora.config import LoraConfig
from toyllora.data import diabetes, teacher_student
from toyllora.plotting import figure, legend
from toyllora.theory import dropout as dt

STATEMENT = ("The loss averaged over N dropout masks approaches its expectation only as Std/√N (Fig. 1), so "
             "hundreds of mask realizations are needed for an accurate estimate, and more for larger drop rates.")
SOURCE = "paper"
HUNDREDS = 100.0
DATASETS = ("synthetic", "diabetes")


@dataclasses.dataclass(frozen=True)
class Params:
    rates: tuple = (0.05, 0.1, 0.2, 0.4)
    accuracy: float = 0.01         # the stated accuracy: RMS error of the N-mask average ≤ 1 % of E L
    draws: int = 3
    adapters: int = 8              # random adapters per draw, the same at every rate
    reps: int = 256                # masks = reps × n_max per (adapter, rate), common to all rates
    n_max: int = 16                # the sanity check: RMS gap of the N-mask average, N = 1 … n_max
    site: str = "bottleneck"       # the paper's Eq. (1)
    s: float = 1.0
    d_in: int = 16                 # synthetic teacher–student
    d_out: int = 8
    rank: int = 4
    n: int = 64
    noise: float = 0.3
    diabetes_rank: int = 1         # diabetes (its 200 training rows), base weight 0.1·N(0, 1)
    diabetes_base_scale: float = 0.1


SETUP = Setup(full=Params(), fast=Params(draws=2, adapters=2, reps=64, n_max=4))


def rule(p: Params) -> str:
    return (f"{p.site.capitalize()} dropout (the paper's Eq. 1) on a synthetic teacher–student task (d_in {p.d_in}, "
            f"d_out {p.d_out}, r {p.rank}, n {p.n}) and on diabetes (r {p.diabetes_rank}, n 200), {p.draws} task "
            f"draws × {p.adapters} random adapters each, the same adapters (and the same uniform variates of the "
            f"masks) at every drop rate {'/'.join(fmt(r) for r in p.rates)}; {p.reps * p.n_max} masks per (adapter, "
            "rate). Masks needed for the stated accuracy (RMS error of the N-mask average at most "
            f"{100 * p.accuracy:g} % of E L): N = (Std/({fmt(p.accuracy)}·E L))², with Std the single-mask std and E "
            "L the closed form. Per (data, rate): the geometric mean of N over draws × adapters with its 95 % "
            "stratified t-interval; 'hundreds' holds if its lower end is >= 100, fails if its upper end is < 100. "
            "Growth with the rate: log N at each rate against the next smaller rate, paired by adapter, exact "
            "sign-flip test, every draw agreeing, Holm over all of them. Supported if 'hundreds' holds in every "
            "cell and N grows at every step; partly supported if it grows at every step or 'hundreds' holds in "
            "some cell; not supported if 'hundreds' fails in every cell and N does not grow at every step; "
            "inconclusive otherwise. Sanity check, reported: the RMS gap of the N-mask average is Std/√N "
            f"(N = 1 … {p.n_max}; Var of a mean of N independent draws, a tautology).")


@functools.partial(jax.jit, static_argnames=("site", "s", "r", "masks"))
def _concentration_cell(W, X, Y, seed, qs, *, site, s, r, masks):
    """Single-mask losses at one random adapter for every keep in ``qs`` (same adapter, same mask keys)."""
    kp, km = jax.random.split(jax.random.key(seed))
    p = random_adapter(kp, X.shape[1], Y.shape[1], r)
    cfg = LoraConfig(rank=r, alpha=s * r, keep=0.5, dropout_site=site)
    keys = jax.random.split(km, masks)
    one = lambda q: (jax.vmap(lambda k: dt.sampled_loss_keep(W, p, X, Y, k, q, site, s))(keys),
                     dt.expected_loss(W, p, X, Y, cfg, keep=q))
    return jax.vmap(one)(qs)


def _datasets(p: Params, ds: int):
    t = teacher_student(seed=ds, d_in=p.d_in, d_out=p.d_out, n_train=p.n, n_test=8, shift_rank=2, noise=p.noise)
    dia, _ = diabetes(seed=ds)
    rng = np.random.default_rng(ds)
    W_dia = jnp.asarray(p.diabetes_base_scale * rng.standard_normal((1, dia.X.shape[1])), dia.X.dtype)
    return {"synthetic": (t.W0, t.data.X, t.data.Y, p.rank), "diabetes": (W_dia, dia.X, dia.Y, p.diabetes_rank)}


def measure(p: Params, seed: int) -> dict:
    rates = list(p.rates)
    Ns = [2 ** k for k in range(int(np.log2(p.n_max)) + 1)]
    g = groups_of(p.draws, p.adapters)
    logN = {name: np.zeros((len(rates), p.draws * p.adapters)) for name in DATASETS}
    sanity = {name: [] for name in DATASETS}
    rel_std = {name: np.zeros((len(rates), p.draws * p.adapters)) for name in DATASETS}
    for di, ds in enumerate(draw_seeds(seed, p.draws)):
        for name, (W, X, Y, r) in _datasets(p, ds).items():
            qs = jnp.asarray([1.0 - x for x in rates], X.dtype)
            for a in range(p.adapters):
                vals, closed = _concentration_cell(W, X, Y, 10_000 * seed + 100 * di + a, qs, site=p.site, s=p.s,
                                                   r=r, masks=p.reps * p.n_max)
                vals, E = np.asarray(vals, np.float64), np.asarray(closed, np.float64)
                std = vals.std(axis=1, ddof=1)
                u = di * p.adapters + a
                rel_std[name][:, u] = std / E
                logN[name][:, u] = np.log([dt.masks_for_accuracy(sd_, e_, p.accuracy) for sd_, e_ in zip(std, E)])
                for i in range(len(rates)):
                    v = vals[i].reshape(p.reps, p.n_max)
                    rms = [np.sqrt(np.mean((v[:, :N].mean(1) - E[i]) ** 2)) for N in Ns]
                    sanity[name].append([rm / (std[i] / np.sqrt(N)) for rm, N in zip(rms, Ns)])
    out, fam = {"mask_counts_sanity": Ns}, []
    for name in DATASETS:
        cells = {}
        for i, rate in enumerate(rates):
            iv = one_sample(logN[name][i], g, f"{name} {rate:g}: log N")
            e = exp_interval(iv)
            cells[str(rate)] = {"masks_needed": e, "masks_needed_per_unit": np.exp(logN[name][i]).tolist(),
                                "rel_std_median": float(np.median(rel_std[name][i])),
                                "hundreds": (1 if e["lo"] is not None and e["lo"] >= HUNDREDS else
                                             -1 if e["hi"] is not None and e["hi"] < HUNDREDS else 0)}
        for i in range(1, len(rates)):
            fam.append(paired(logN[name][i], logN[name][i - 1], g, f"{name}: log N, {rates[i]:g} vs {rates[i - 1]:g}"))
        ratio = np.asarray(sanity[name])
        out[name] = {"cells": cells, "sanity_rms_over_std_sqrt_n": {"min": float(ratio.min()), "max": float(ratio.max()),
                                                                   "mean_per_N": ratio.mean(0).tolist()}}
    out["growth"] = holm(fam)
    return out


def verdict(m: dict) -> str:
    h = [c["hundreds"] for name in DATASETS for c in m[name]["cells"].values()]
    grows = all(d["win"] == 1 for d in m["growth"])
    if all(x == 1 for x in h) and grows:
        return "supported"
    if grows or any(x == 1 for x in h):
        return "partly supported"
    if all(x == -1 for x in h):
        return "not supported"
    return "inconclusive"


def plot(record: dict):
    """Masks needed for the stated accuracy per drop rate (geometric mean, 95 % interval, and per adapter),
    with the 100 line, for both data sets."""
    m, p = record["measurements"], record["config"]["setup"]
    fig, axes = figure(1, 2, figsize=(12, 4.4))
    for ax, name in zip(axes, DATASETS):
        cells = m[name]["cells"]
        rates = [float(r) for r in cells]
        for i, (r, c) in enumerate(cells.items()):
            pts = c["masks_needed_per_unit"]
            ax.plot(np.full(len(pts), rates[i]) * np.exp(np.linspace(-0.06, 0.06, len(pts))), pts, ".", color="0.6")
            e = c["masks_needed"]
            ax.errorbar([rates[i]], [e["geo_mean"]], yerr=[[e["geo_mean"] - e["lo"]], [e["hi"] - e["geo_mean"]]],
                        fmt="o", color="C0", capsize=4, label="geometric mean, 95 % interval" if i == 0 else None)
        ax.axhline(HUNDREDS, color="k", ls="--", lw=0.8, label="100 masks")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(rates, [f"{r:g}" for r in rates])
        ax.set_xlabel("drop rate")
        ax.set_ylabel(f"masks for RMS error ≤ {100 * p['accuracy']:g} % of E L")
        ax.set_title(f"{name}: {p['site']} dropout, same adapters at every rate")
        legend(ax, "below", ncol=2)
    return fig


def _case(h=(1, 1), grows=(1, 1)):
    cells = lambda hs: {"cells": {str(0.1 * (i + 1)): {"hundreds": x} for i, x in enumerate(hs)}}
    return {"synthetic": cells(h[:1]), "diabetes": cells(h[1:]),
            "growth": [{"name": f"g{i}", "win": w} for i, w in enumerate(grows)]}


VERDICT_EXAMPLES = [
    (_case(), "supported"),
    (_case(h=(1, 0)), "partly supported"),          # one cell straddles 100
    (_case(h=(-1, -1)), "partly supported"),        # tens suffice, but more for larger rates
    (_case(h=(1, -1), grows=(1, 0)), "partly supported"),
    (_case(h=(-1, -1), grows=(1, 0)), "not supported"),
    (_case(h=(-1, -1), grows=(-1, -1)), "not supported"),
    (_case(h=(-1, 0), grows=(1, 0)), "inconclusive"),
]
