"""zeroinit.hessian: at B = 0 the loss landscape is degenerate, and more so as the training set size n decreases."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from toyllora import lora
from toyllora.claims import Setup, fmt
from toyllora.config import LoraConfig
from toyllora.conventions import DROPOUT_SITES
from toyllora.data import teacher_student
from toyllora.plotting import figure, legend
from toyllora.theory import hessian as hess

STATEMENT = ("At the zero-init start (B = 0) the loss landscape is degenerate (poorly conditioned), and it becomes "
             "more degenerate as the training set size n decreases (OpenReview version).")
SOURCE = "paper"
REDUCTIONS = ("mean", "sum")
INITS = ("init_a", "init_b", "pissa")
SITES = DROPOUT_SITES


@dataclasses.dataclass(frozen=True)
class Params:
    d_in: int = 8                # the base case (every sweep changes one setting of it)
    d_out: int = 6
    rank: int = 2
    n: int = 32
    noise: float = 0.1           # label noise
    shift_rank: int = 2
    ns: tuple = (2, 4, 8, 16, 32, 64, 128)
    init_scales: tuple = (0.01, 0.1, 1.0, 10.0)
    residual_ranks: tuple = (1, 2, 4, 6)   # noiseless shift ranks
    keeps: tuple = (0.9, 0.6)              # dropout keep probabilities, at every site
    d_ins: tuple = (4, 16)
    d_outs: tuple = (3, 12)
    ranks: tuple = (1, 4)


SETUP = Setup(full=Params(), fast=Params(ns=(2, 4, 8, 32), init_scales=(0.01, 1.0), residual_ranks=(1, 6),
                                         keeps=(0.6,), d_ins=(), d_outs=(), ranks=()))


def rule(p: Params) -> str:
    return (f"Exact Hessian by jax.hessian on the flattened (A, B) of the OLS toy (d_in {p.d_in}, d_out {p.d_out}, "
            f"r {p.rank}, n {p.n}, label noise {fmt(p.noise)}, s = 1), eigenvalues counted as zero when "
            "|λ| <= rtol·max|λ| (rtol 1e-5 in float32, 1e-9 in float64). (i) degenerate: the init_a Hessian has at "
            "least one zero eigenvalue and more zero eigenvalues than the PiSSA start of the same task. (ii) more "
            f"so as n decreases: over n in {fmt(p.ns)}, for the loss averaged AND summed over n, the zero count is "
            "non-increasing in n and larger at the smallest n than at the largest. Supported if (i) and (ii); "
            "partly supported if (i) only; not supported otherwise.")


def base_case(p: Params) -> dict:
    """The keyword arguments of :func:`hessian_case` for the base case of ``p``."""
    return dict(d_in=p.d_in, d_out=p.d_out, rank=p.rank, n=p.n, noise=p.noise, shift_rank=p.shift_rank)


def hessian_case(seed, *, d_in=8, d_out=6, rank=2, n=32, noise=0.1, shift_rank=2, init="init_a",
                 init_scale=None, reduction="mean", keep=1.0, site="bottleneck", eigs=False):
    """The exact Hessian at the start of the OLS toy: inertia, conditioning and the closed-form prediction."""
    t = teacher_student(seed=seed, d_in=d_in, d_out=d_out, n_train=n, n_test=8, shift_rank=shift_rank,
                        noise=noise)
    cfg = LoraConfig(rank=rank, alpha=float(rank), init=init, init_scale=init_scale)
    frozen, p = lora.init(jax.random.key(seed), t.W0, cfg)
    X, T = t.data.X, t.data.Y - t.data.X @ frozen.T
    H = hess.hessian(p.A, p.B, X, T, s=cfg.s, reduction=reduction, keep=keep, site=site)
    ev = np.linalg.eigvalsh(np.asarray(H, dtype=np.float64))
    neg, zero, pos = hess.inertia(ev)
    rank_tol = 100 * hess.default_rtol()
    rho = hess.numerical_rank(np.asarray(X).T @ np.asarray(T), rank_tol)
    out = {"d_in": d_in, "d_out": d_out, "rank": rank, "n": n, "noise": noise, "shift_rank": shift_rank,
           "init": init, "init_scale": init_scale, "reduction": reduction, "keep": keep, "site": site,
           "negative": neg, "zero": zero, "positive": pos, "params": int(ev.size),
           "condition": hess.condition_number(ev), "max_abs_eig": float(np.abs(ev).max()),
           "rank_g": rho}
    predicted = None
    if init == "init_a":
        m = hess.numerical_rank(np.asarray(X) @ np.asarray(p.A).T, rank_tol)
        out["rank_m"] = m
        predicted = hess.predicted_inertia(d_in=d_in, d_out=d_out, rank=rank, rank_g=rho, rank_m=m)
        closed = hess.spectrum_at_zero(p.A, X, T, s=cfg.s, reduction=reduction, keep=keep, site=site)
        out["closed_form_rel_error"] = float(np.linalg.norm(closed - ev) / np.linalg.norm(ev))
        scale = np.abs(closed).max()
        exact_nonzero = np.abs(closed)[np.abs(closed) > 1e-12 * scale]
        # The smallest exactly-non-zero eigenvalue relative to the largest: below rtol the count cannot
        # resolve it (numerically flat although not exactly zero, e.g. λ₋ ≈ −g²/(s²μ) at a large init scale).
        out["min_nonzero_rel"] = float(exact_nonzero.min() / scale) if exact_nonzero.size else 0.0
    elif init == "init_b" and hess.numerical_rank(X, rank_tol) == d_in and keep == 1.0:
        m = hess.numerical_rank(p.B, rank_tol)
        if m == rank:
            predicted = hess.predicted_inertia(d_in=d_in, d_out=d_out, rank=rank, rank_g=rho, rank_m=m,
                                               init="init_b")
    if predicted is not None:
        out["predicted"] = list(predicted)
        out["formula_holds"] = bool(tuple(predicted) == (neg, zero, pos))
    if eigs:
        out["eigs"] = ev
    return out


def _cases(obj):
    """Every Hessian case (a dict with counts) nested in lists and dicts."""
    if isinstance(obj, dict) and "negative" in obj:
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _cases(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _cases(v)


def measure(p: Params, seed: int) -> dict:
    case = lambda **kw: hessian_case(seed, **{**base_case(p), **kw})
    data = {"base": case(eigs=True)}
    data["n_sweep"] = {red: [case(n=n, reduction=red, eigs=True) for n in p.ns] for red in REDUCTIONS}
    data["n_sweep_noiseless"] = [case(n=n, noise=0.0) for n in p.ns]
    data["by_init"] = {init: case(init=init) for init in INITS}
    data["init_scale"] = [case(init_scale=v) for v in p.init_scales]
    data["residual_rank"] = [case(noise=0.0, shift_rank=k) for k in p.residual_ranks]
    data["dropout"] = [case(keep=q, site=st) for st in SITES for q in p.keeps]
    for key, field, values in (("d_in", "d_in", p.d_ins), ("d_out", "d_out", p.d_outs), ("rank", "rank", p.ranks)):
        if values:
            data[key] = [case(**{field: v}) for v in values]
    checked = list(_cases(data))
    flags = [c["formula_holds"] for c in checked if "formula_holds" in c]
    resolved = [c["formula_holds"] for c in checked
                if "formula_holds" in c and c.get("min_nonzero_rel", 1.0) > hess.default_rtol()]
    data["formula_checked"] = len(flags)
    data["formula_holds_all"] = bool(all(flags))
    data["formula_holds_all_resolved"] = bool(all(resolved))  # cases whose non-zero eigenvalues exceed rtol
    data["formula_unresolved_cases"] = len(flags) - len(resolved)
    errs = [c["closed_form_rel_error"] for c in checked if "closed_form_rel_error" in c]
    data["closed_form_max_rel_error"] = float(max(errs))
    return data


def verdict(m: dict) -> str:
    a, pissa = m["by_init"]["init_a"], m["by_init"]["pissa"]
    degenerate = a["zero"] >= 1 and a["zero"] > pissa["zero"]
    grows = True
    for red in REDUCTIONS:
        zeros = [c["zero"] for c in m["n_sweep"][red]]
        grows &= zeros[0] > zeros[-1] and all(x >= y for x, y in zip(zeros, zeros[1:]))
    if degenerate and grows:
        return "supported"
    return "partly supported" if degenerate else "not supported"


def plot(record: dict):
    """Eigenvalues of the exact Hessian at B = 0 against n, for the mean and the summed loss."""
    data, p = record["measurements"], record["config"]["setup"]
    fig, axes = figure(1, 2, figsize=(11, 4.6))
    rtol = hess.default_rtol()
    for ax, red in zip(axes, REDUCTIONS):
        for c in data["n_sweep"][red]:
            ev = np.asarray(c["eigs"], float)
            colors = np.where(np.abs(ev) <= rtol * np.abs(ev).max(), "tab:gray",
                              np.where(ev > 0, "tab:blue", "tab:red"))
            jitter = np.linspace(-0.12, 0.12, ev.size)
            ax.scatter(np.log2(c["n"]) + jitter, ev, c=colors, s=9)
            ax.annotate(f"{c['negative']}/{c['zero']}/{c['positive']}", (np.log2(c["n"]), ev.max()),
                        xytext=(0, 5), textcoords="offset points", fontsize=7, ha="center", va="bottom")
        ax.set_yscale("symlog", linthresh=1e-4)
        ax.set_xticks([np.log2(c["n"]) for c in data["n_sweep"][red]],
                      [str(c["n"]) for c in data["n_sweep"][red]])
        ax.set_xlabel("training set size n")
        ax.set_title(f"loss {'averaged' if red == 'mean' else 'summed'} over n; labels: neg/zero/pos")
        ax.margins(y=0.15)  # room for the count labels above the largest eigenvalue
    axes[0].set_ylabel("Hessian eigenvalue (symlog)")
    for col, lab in (("tab:red", "negative"), ("tab:gray", "zero (|λ| ≤ rtol·max|λ|)"), ("tab:blue", "positive")):
        axes[1].scatter([], [], c=col, s=9, label=lab)
    legend(axes[1])
    fig.suptitle(f"Exact Hessian w.r.t. (A, B) at the LoRA start B = 0 (d_in {p['d_in']}, d_out {p['d_out']}, "
                 f"r {p['rank']}, noise {p['noise']:g})")
    return fig


def _case(zeros_mean=(8, 4, 4), zeros_sum=(8, 4, 4), a_zero=4, pissa_zero=0):
    sweep = lambda zs: [{"zero": z} for z in zs]
    return {"by_init": {"init_a": {"zero": a_zero}, "pissa": {"zero": pissa_zero}},
            "n_sweep": {"mean": sweep(zeros_mean), "sum": sweep(zeros_sum)}}


VERDICT_EXAMPLES = [
    (_case(), "supported"),
    (_case(a_zero=1, pissa_zero=0), "supported"),                 # one zero eigenvalue is enough
    (_case(zeros_mean=(4, 4, 4)), "partly supported"),           # not larger at the smallest n
    (_case(zeros_sum=(8, 3, 4)), "partly supported"),            # the summed loss's count is not monotone
    (_case(a_zero=0, pissa_zero=0), "not supported"),            # no zero eigenvalue
    (_case(a_zero=2, pissa_zero=2), "not supported"),            # no more degenerate than PiSSA
]
