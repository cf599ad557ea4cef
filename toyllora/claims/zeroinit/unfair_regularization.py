"""zeroinit.unfair-regularization: across drop rates the final ||B|| moves far more than the final ||A|| (Fig. 3)."""

from __future__ import annotations

import dataclasses

import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.claims.zeroinit._common import Toy, learned, run_methods, toy_task
from toyllora.plotting import figure, legend
from toyllora.theory import dynamics

STATEMENT = ("Dropout regularizes the two factors unfairly: across drop rates the final ||A|| moves by about 30 % "
             "while the final ||B|| moves by more than 500 % (Fig. 3).")
SOURCE = "paper"
SITE_CODES = {"input": 0.0, "bottleneck": 1.0}  # dynamics.Rule.site
PAPER = {"spread_A": 0.30, "spread_B": 5.0}      # the paper's Fig. 3, as relative spreads
MIN_SPREAD_B = 5.0   # the verdict: spread(B) >= this (500 %) ...
MIN_RATIO = 3.0      # ... and spread(B) >= this × spread(A), at every site


@dataclasses.dataclass(frozen=True)
class Params:
    toy: Toy = Toy()
    seeds: int = 5                               # optimization seeds master_seed, master_seed + 1, ...
    steps: int = 1000
    stride: int = 2
    lr: float = 0.01                             # Adam
    drop_rates: tuple = (0.0, 0.1, 0.2, 0.3, 0.4)


SETUP = Setup(full=Params(), fast=Params(seeds=2, drop_rates=(0.0, 0.2, 0.4)))


def rule(p: Params) -> str:
    return (f"Two-factor toy, kaiming A and B = 0, Adam lr {fmt(p.lr)}, {p.steps} steps with sampled inverted-dropout "
            f"masks, drop rates {fmt(p.drop_rates)}, {p.seeds} seeds, {' and '.join(SITE_CODES)} dropout. Relative "
            "spread = (max − min)/min over drop rates of the seed-mean final norm. Supported if at both sites "
            f"spread(B) >= {fmt(MIN_SPREAD_B)} ({100 * MIN_SPREAD_B:.0f} %) and spread(B) >= {fmt(MIN_RATIO)} × "
            "spread(A); partly supported if spread(B) > spread(A) at one site or more; not supported otherwise.")


def measure(p: Params, seed: int) -> dict:
    task = toy_task(p.toy, seed)
    seeds = list(range(seed, seed + p.seeds))
    methods = [(f"{site}|{d:g}", "init_a", dynamics.Rule(lr=p.lr, adam=1.0, keep=1.0 - d, site=code))
               for site, code in SITE_CODES.items() for d in p.drop_rates]
    runs, steps = run_methods(task, methods, seeds, rank=p.toy.rank, steps=p.steps, stride=p.stride)
    out = {"drop_rates": list(p.drop_rates), "sites": {}}
    for site in SITE_CODES:
        rec = {"norm_A_mean": [], "norm_A_std": [], "norm_B_mean": [], "norm_B_std": [], "norm_BA_mean": []}
        for d in p.drop_rates:
            run = runs[f"{site}|{d:g}"]
            nA = np.linalg.norm(run["A"][:, -1], axis=(-2, -1))
            nB = np.linalg.norm(run["B"][:, -1], axis=(-2, -1))
            rec["norm_A_mean"].append(float(nA.mean())), rec["norm_A_std"].append(float(nA.std(ddof=1)))
            rec["norm_B_mean"].append(float(nB.mean())), rec["norm_B_std"].append(float(nB.std(ddof=1)))
            rec["norm_BA_mean"].append(float(np.linalg.norm(learned(run, task)[:, -1], axis=(-2, -1)).mean()))
        for f in ("A", "B"):
            v = np.asarray(rec[f"norm_{f}_mean"])
            rec[f"spread_{f}"] = float((v.max() - v.min()) / v.min())
        out["sites"][site] = rec
    out["paper"] = dict(PAPER)
    return out


def _ge(a, b) -> bool:
    """``a >= b``, False when either is None (NaN as recorded), as the comparison of NaNs is."""
    return a is not None and b is not None and a >= b


def _gt(a, b) -> bool:
    return a is not None and b is not None and a > b


def verdict(m: dict) -> str:
    s = m["sites"].values()
    strong = all(_ge(v["spread_B"], MIN_SPREAD_B) and v["spread_A"] is not None
                 and _ge(v["spread_B"], MIN_RATIO * v["spread_A"]) for v in s)
    direction = any(_gt(v["spread_B"], v["spread_A"]) for v in s)
    return "supported" if strong else "partly supported" if direction else "not supported"


def plot(record: dict):
    """Final ||A|| and ||B|| against the drop rate, per dropout site (mean ± std over seeds)."""
    data = record["measurements"]
    fig, axes = figure(1, 2, figsize=(11, 4.2), sharey=True)
    p = np.asarray(data["drop_rates"])
    for ax, (site, rec) in zip(axes, data["sites"].items()):
        for f, col in (("A", "tab:blue"), ("B", "tab:orange")):
            ax.errorbar(p, np.asarray(rec[f"norm_{f}_mean"], float), yerr=np.asarray(rec[f"norm_{f}_std"], float),
                        marker="o", capsize=3, color=col,
                        label=f"||{f}||_F (spread {100 * rec[f'spread_{f}']:.0f} %)")
        ax.set_xlabel("drop rate 1 − q")
        ax.set_title(f"{site} dropout")
        legend(ax, "below")
    axes[0].set_ylabel("final Frobenius norm")
    paper = data["paper"]
    fig.suptitle(f"Final factor norms across drop rates (paper, Fig. 3: ~{100 * paper['spread_A']:.0f} % for A, "
                 f"> {100 * paper['spread_B']:.0f} % for B); Adam, mean ± std over seeds", fontsize=9)
    return fig


def _case(a, b, a2=None, b2=None):
    a2, b2 = (a if a2 is None else a2), (b if b2 is None else b2)
    return {"sites": {"input": {"spread_A": a, "spread_B": b}, "bottleneck": {"spread_A": a2, "spread_B": b2}}}


VERDICT_EXAMPLES = [
    (_case(0.3, 6.0), "supported"),
    (_case(0.3, 5.0, 2.0, 6.0), "supported"),            # 5 (500 %) and exactly 3 × spread(A) count (>=)
    (_case(0.3, 4.99), "partly supported"),              # just below 500 %
    (_case(2.0, 5.99), "partly supported"),              # just below 3 × spread(A)
    (_case(0.5, 6.0, 0.5, 0.3), "partly supported"),     # strong at one site only
    (_case(0.2, 0.45), "partly supported"),
    (_case(0.5, 0.3), "not supported"),
    (_case(0.5, 0.5), "not supported"),                  # equal spreads: not B > A
    (_case(None, None), "not supported"),                # NaN spreads (diverged runs)
]
