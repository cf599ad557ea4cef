"""zeroinit.hessian: at B = 0 the loss landscape is degenerate, and more so as the training set size n decreases."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from toyllora import lora
from toyllora.claims import Setup, fmt
from toyllora.claims.zeroinit._common import Units, draw_seeds, holm, interval_test, loglog_slope, opt_seeds
from toyllora.config import LoraConfig
from toyllora.conventions import DROPOUT_SITES
from toyllora.data import teacher_student
from toyllora.plotting import figure, legend
from toyllora.theory import hessian as hess

STATEMENT = ("At the zero-init start (B = 0) the loss landscape is degenerate (poorly conditioned), and it becomes "
             "more degenerate as the training set size n decreases (OpenReview version).")
SOURCE = "paper"
ZERO_INITS = ("init_a", "init_b")    # the starts with BA = 0 (the claimed cause)
CONTROLS = ("pissa", "both")         # non-zero starts of the same adapter: the control that removes the cause
FULL = "full"                        # full fine-tuning of ΔW: no factorization at all (the control for n)
INITS = ZERO_INITS + CONTROLS + (FULL,)
RTOL = 1e-12   # |λ| <= RTOL·max|λ| is zero: float64 eigenvalues of a closed form (rounding ~1e-16)
MIN_GAP = 1e3  # a count is resolved when the smallest non-zero |λ| exceeds the largest "zero" by this factor


@dataclasses.dataclass(frozen=True)
class Params:
    shapes: tuple = ((6, 10), (8, 8), (8, 6))   # (d_in, d_out): d_in < d_out, =, >
    rank: int = 2
    noise: float = 0.1                           # label noise: rank(XᵀT) = min(n, d_in, d_out)
    shift_rank: int = 2
    ns: tuple = (2, 4, 8, 16, 32, 64)            # ascending; the last is the full-rank n of part (i)
    units: Units = Units(draws=12, seeds=2)     # the effect varies by task draw: many draws (PiSSA has no seed)
    keeps: tuple = (0.6,)                        # dropout side check at the last shape and n (every site)


SETUP = Setup(full=Params(), fast=Params(ns=(2, 64), units=Units(draws=2, seeds=2)))


def rule(p: Params) -> str:
    u = p.units
    shapes = ", ".join(f"{a}×{b}" for a, b in p.shapes)
    return (f"Exact Hessian w.r.t. (A, B) at the start of the OLS toy (shapes d_in×d_out {shapes}: d_in < d_out, "
            f"=, >; r {p.rank}, rank-{p.shift_rank} shift, label noise {fmt(p.noise)}, s = 1, mean loss), in "
            f"closed form in float64 (hessian64, checked against jax.hessian in the tests), zero when "
            f"|λ| <= {RTOL:g}·max|λ|; conditioning κ = max|λ|/min|λ| over the non-zero eigenvalues. Starts: the "
            f"zero-product inits {fmt(list(ZERO_INITS))} (BA = 0) against the controls that remove the claimed "
            f"cause, the non-zero starts {fmt(list(CONTROLS))} and, for n, full fine-tuning. Over n in {fmt(p.ns)}; "
            f"{u.draws} task draws × {u.seeds} init seeds per master seed. (i-count) zero init singular: at the "
            "largest n every zero init has more zero eigenvalues than every control, in every shape and unit. "
            "(i-cond) poorly conditioned: at the largest n, the difference log κ(zero init) − log κ(control) for "
            "every shape × zero init × control. (ii-count) more degenerate as n decreases: from the largest to "
            "the smallest n the zero fraction (zeros / parameters) grows more for every zero init than for every "
            "control and full fine-tuning, in every shape and unit. (ii-cond): the slope of log κ on log n, for "
            "every zero init and shape, and its difference from every control's slope. The conditioning effects "
            "vary from one task draw to the next, so they are judged on the population of draws: the t-interval "
            "over the per-draw means, at level 1 − 0.05/k with k the part's comparisons (Bonferroni); the "
            "sign-flip tests by unit (draws as groups, Holm within the part) are reported. (i-cond) holds if "
            "every interval lies above 0 and fails if one lies below 0; (ii-cond) holds if every interval lies "
            "below 0 (worse conditioning at smaller n, more so than the controls) and fails if a zero init's own "
            "slope interval lies above 0; otherwise undecided. A count part fails when it does not hold (the "
            "counts are exact). Supported if "
            "all four parts hold; partly supported if at least one holds; inconclusive if none holds and a "
            "conditioning part is undecided; not supported otherwise. Control: the non-zero starts (same shape, "
            "n, data) and full fine-tuning.")


def _task(draw, d_in, d_out, n, p: Params):
    return teacher_student(seed=draw, d_in=d_in, d_out=d_out, n_train=n, n_test=8, shift_rank=p.shift_rank,
                           noise=p.noise)


def _start(task, init, seed, rank):
    cfg = LoraConfig(rank=rank, alpha=float(rank), init=init)
    frozen, prm = lora.init(jax.random.key(seed), task.W0, cfg)
    return (np.asarray(frozen, np.float64), np.asarray(prm.A, np.float64), np.asarray(prm.B, np.float64))


def spectrum(task, init, start, *, rank, reduction="mean", keep=1.0, site="bottleneck"):
    """Float64 eigenvalues of the Hessian at the start, with the closed-form checks where they exist."""
    X = np.asarray(task.data.X, np.float64)
    d_out = np.shape(task.W0)[0]
    if init == FULL:
        return hess.full_ft_spectrum(X, d_out, reduction=reduction), {}
    frozen, A, B = start
    T = np.asarray(task.data.Y, np.float64) - X @ frozen.T
    ev = np.linalg.eigvalsh(hess.hessian64(A, B, X, T, reduction=reduction, keep=keep, site=site))
    checks = {}
    rho = hess.numerical_rank(X.T @ T)
    if init == "init_a":
        closed = hess.spectrum_at_zero(A, X, T, reduction=reduction, keep=keep, site=site)
        checks["closed_form_rel_error"] = float(np.abs(closed - ev).max() / np.abs(ev).max())
        if keep == 1.0:
            pred = hess.predicted_inertia(d_in=X.shape[1], d_out=d_out, rank=rank, rank_g=rho,
                                          rank_m=hess.numerical_rank(X @ A.T))
            checks["formula_holds"] = tuple(pred) == hess.inertia(ev, RTOL)
    elif init == "init_b" and keep == 1.0 and hess.numerical_rank(X) == X.shape[1] \
            and hess.numerical_rank(B) == rank:
        pred = hess.predicted_inertia(d_in=X.shape[1], d_out=d_out, rank=rank, rank_g=rho, rank_m=rank,
                                      init="init_b")
        checks["formula_holds"] = tuple(pred) == hess.inertia(ev, RTOL)
    return ev, checks


def _key(shape):
    return f"{shape[0]}x{shape[1]}"


def measure(p: Params, seed: int) -> dict:
    u = p.units
    cases = {}       # shape → init → {"zero": (n, U), "condition": ..., ...}
    checks = {"formula": [], "closed_form": [], "unresolved": 0, "sum_matches_mean": True}
    for shape in p.shapes:
        d_in, d_out = shape
        res = {init: {f: np.zeros((len(p.ns), u.n)) for f in ("zero", "negative", "positive", "condition",
                                                             "zero_gap", "params")} for init in INITS}
        unit = 0
        for d, ds in enumerate(draw_seeds(seed, u)):
            base = _task(ds, d_in, d_out, p.ns[-1], p)          # W0 does not depend on n
            for s in opt_seeds(seed, u, d):
                starts = {init: _start(base, init, s, p.rank) for init in ZERO_INITS + CONTROLS}
                for j, n in enumerate(p.ns):
                    task = _task(ds, d_in, d_out, n, p)
                    for init in INITS:
                        ev, chk = spectrum(task, init, starts.get(init), rank=p.rank)
                        sm = hess.spectrum_summary(ev, RTOL)
                        for f in res[init]:
                            res[init][f][j, unit] = sm[f]
                        checks["unresolved"] += int(sm["zero_gap"] < MIN_GAP)
                        if "formula_holds" in chk:
                            checks["formula"].append(bool(chk["formula_holds"]))
                        if "closed_form_rel_error" in chk:
                            checks["closed_form"].append(chk["closed_form_rel_error"])
                        if unit == 0 and init in ("init_a", "pissa"):   # the summed loss is n × the mean
                            evs, _ = spectrum(task, init, starts.get(init), rank=p.rank, reduction="sum")
                            ss = hess.spectrum_summary(evs, RTOL)
                            checks["sum_matches_mean"] &= bool(
                                (ss["negative"], ss["zero"], ss["positive"]) == (sm["negative"], sm["zero"],
                                                                                 sm["positive"])
                                and np.isclose(ss["condition"], sm["condition"], rtol=1e-6))
                unit += 1
        cases[_key(shape)] = res
    out = {"ns": list(p.ns), "shapes": [_key(s) for s in p.shapes], "cases": {}}
    for sk, res in cases.items():
        out["cases"][sk] = {init: {"zero": r["zero"], "params": r["params"][0, 0],
                                   "zero_fraction_median": np.median(r["zero"] / r["params"], 1),
                                   "negative_median": np.median(r["negative"], 1),
                                   "log10_condition_median": np.median(np.log10(r["condition"]), 1),
                                   "log10_condition_q25": np.percentile(np.log10(r["condition"]), 25, axis=1),
                                   "log10_condition_q75": np.percentile(np.log10(r["condition"]), 75, axis=1)}
                            for init, r in res.items()}
    # (i-count) and (ii-count): exact counts, every unit
    i_count, ii_count = {}, {}
    for sk, res in cases.items():
        for z in ZERO_INITS:
            zmax = res[z]["zero"][-1]
            i_count[f"{sk}|{z}"] = {c: int(np.min(zmax - res[c]["zero"][-1])) for c in CONTROLS}
            frac = lambda init: (res[init]["zero"][0] - res[init]["zero"][-1]) / res[init]["params"][0]
            ii_count[f"{sk}|{z}"] = {c: float(np.min(frac(z) - frac(c))) for c in CONTROLS + (FULL,)}
    out["i_count_min_excess"] = i_count         # min over units of zeros(zero init) − zeros(control), largest n
    out["ii_count_min_excess"] = ii_count       # min over units of the growth of the zero fraction, minus control's
    out["i_count"] = all(v > 0 for d in i_count.values() for v in d.values())
    out["ii_count"] = all(v > 0 for d in ii_count.values() for v in d.values())
    # (i-cond): log κ at the largest n, zero init − control
    fam = {}
    k = len(cases) * len(ZERO_INITS) * len(CONTROLS)
    for sk, res in cases.items():
        for z in ZERO_INITS:
            for c in CONTROLS:
                fam[f"{sk}|{z}-{c}"] = interval_test(np.log(res[z]["condition"][-1]) - np.log(res[c]["condition"][-1]),
                                                     u, alpha=0.05 / k)
    out["i_cond_tests"] = holm(fam)
    # (ii-cond): slopes of log κ on log n (per unit), and their difference from the controls'
    fam = {}
    k = len(cases) * len(ZERO_INITS) * (1 + len(CONTROLS) + 1)
    for sk, res in cases.items():
        slope = {init: loglog_slope(p.ns, res[init]["condition"].T) for init in INITS}
        out["cases"][sk]["slope_log_condition"] = {init: float(np.mean(v)) for init, v in slope.items()}
        for z in ZERO_INITS:
            fam[f"{sk}|{z}"] = interval_test(slope[z], u, alpha=0.05 / k)
            for c in CONTROLS + (FULL,):
                fam[f"{sk}|{z}-{c}"] = interval_test(slope[z] - slope[c], u, alpha=0.05 / k)
    out["ii_cond_tests"] = holm(fam)
    # the dropout side check (Step 7 of proofs/zeroinit_hessian.md): counts at the last shape and n
    d_in, d_out = p.shapes[-1]
    task = _task(draw_seeds(seed, u)[0], d_in, d_out, p.ns[-1], p)
    st = _start(task, "init_a", opt_seeds(seed, u, 0)[0], p.rank)
    side = {"none": hess.spectrum_summary(spectrum(task, "init_a", st, rank=p.rank)[0], RTOL)}
    for site in DROPOUT_SITES:
        for q in p.keeps:
            ev, chk = spectrum(task, "init_a", st, rank=p.rank, keep=q, site=site)
            checks["closed_form"].append(chk["closed_form_rel_error"])
            side[f"{site}|{q:g}"] = hess.spectrum_summary(ev, RTOL)
    out["dropout_side_check"] = {k: {f: v[f] for f in ("negative", "zero", "positive", "condition")}
                                 for k, v in side.items()}
    out["formula_checked"] = len(checks["formula"])
    out["formula_holds_all"] = bool(all(checks["formula"]))
    out["closed_form_max_rel_error"] = float(max(checks["closed_form"]))
    out["unresolved_counts"] = checks["unresolved"]
    out["sum_matches_mean"] = checks["sum_matches_mean"]
    return out


def parts(m: dict) -> dict:
    """Each part's outcome: ``"holds"``, ``"fails"`` or ``"undecided"``."""
    out = {"i_count": "holds" if m["i_count"] else "fails", "ii_count": "holds" if m["ii_count"] else "fails"}
    t = m["i_cond_tests"].values()
    out["i_cond"] = ("holds" if all(d["draw_lo"] > 0 for d in t) else
                     "fails" if any(d["draw_hi"] < 0 for d in t) else "undecided")
    t = m["ii_cond_tests"]
    alone = [d for k, d in t.items() if "-" not in k.split("|")[1]]
    out["ii_cond"] = ("holds" if all(d["draw_hi"] < 0 for d in t.values()) else
                      "fails" if any(d["draw_lo"] > 0 for d in alone) else "undecided")
    return out


def verdict(m: dict) -> str:
    pt = parts(m).values()
    if all(v == "holds" for v in pt):
        return "supported"
    if any(v == "holds" for v in pt):
        return "partly supported"
    return "inconclusive" if any(v == "undecided" for v in pt) else "not supported"


STYLE = {"init_a": ("tab:red", "-"), "init_b": ("tab:orange", "-"), "pissa": ("tab:blue", "--"),
         "both": ("tab:green", "--"), "full": ("k", ":")}


def plot(record: dict):
    """Zero fraction and conditioning of the Hessian at the start against n, per shape and start."""
    data = record["measurements"]
    ns = np.asarray(data["ns"], float)
    shapes = data["shapes"]
    fig, axes = figure(2, len(shapes), figsize=(4.6 * len(shapes), 7.4), sharex=True)
    axes = np.asarray(axes).reshape(2, len(shapes))
    for col, sk in enumerate(shapes):
        for init, c in data["cases"][sk].items():
            if init not in STYLE:
                continue
            color, ls = STYLE[init]
            lab = {"full": "full fine-tuning"}.get(init, init)
            axes[0, col].plot(ns, np.asarray(c["zero_fraction_median"], float), color=color, ls=ls, marker="o",
                              ms=3, label=lab)
            med = np.asarray(c["log10_condition_median"], float)
            axes[1, col].plot(ns, med, color=color, ls=ls, marker="o", ms=3, label=lab)
            axes[1, col].fill_between(ns, np.asarray(c["log10_condition_q25"], float),
                                      np.asarray(c["log10_condition_q75"], float), color=color, alpha=0.12)
        d_in, d_out = sk.split("x")
        axes[0, col].set_title(f"d_in {d_in}, d_out {d_out}")
        axes[1, col].set_xlabel("training set size n")
        for ax in axes[:, col]:
            ax.set_xscale("log", base=2)
    axes[0, 0].set_ylabel("zero eigenvalues / parameters")
    axes[1, 0].set_ylabel("log10 κ of the non-zero part")
    legend(axes[0, -1])
    pt = parts(data)
    fig.suptitle("Hessian at the start (float64 closed form; median over draws × seeds, band: quartiles). "
                 + ", ".join(f"{k} {v}" for k, v in pt.items()), fontsize=9)
    return fig


def _case(i_count=True, ii_count=False, i_cond=(1, 1), ii_alone=(1, 1), ii_diff=(1, 1)):
    """Each comparison as +1 (its draw interval above 0), −1 (below 0) or 0 (across 0)."""
    iv = {1: (0.1, 2.0), -1: (-2.0, -0.1), 0: (-1.0, 1.0)}
    t = lambda wins, keys: {k: {"draw_lo": iv[w][0], "draw_hi": iv[w][1]} for k, w in zip(keys, wins)}
    return {"i_count": i_count, "ii_count": ii_count,
            "i_cond_tests": t(i_cond, ("8x6|init_a-pissa", "8x6|init_b-pissa")),
            "ii_cond_tests": {**t(ii_alone, ("8x6|init_a", "8x6|init_b")),
                              **t(ii_diff, ("8x6|init_a-pissa", "8x6|init_a-full"))}}


VERDICT_EXAMPLES = [
    (_case(True, True, (1, 1), (-1, -1), (-1, -1)), "supported"),                   # every part holds
    (_case(False, False, (1, 1), (1, 1), (1, 1)), "partly supported"),              # worse conditioned only
    (_case(True, False, (0, 1), (0, 0), (0, 0)), "partly supported"),               # singular only
    (_case(False, True, (-1, 1), (1, 0), (0, 0)), "partly supported"),              # zero growth only
    (_case(False, False, (0, 1), (1, 1), (0, 0)), "inconclusive"),                  # i-cond undecided
    (_case(False, False, (1, -1), (0, 0), (-1, -1)), "inconclusive"),               # ii-cond undecided
    (_case(False, False, (-1, 1), (1, 0), (0, 0)), "not supported"),                # every part fails
    (_case(False, False, (1, -1), (0, 1), (-1, -1)), "not supported"),              # a positive slope refutes
]
