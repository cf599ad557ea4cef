"""allora.overhead: one ALLoRA training step costs about as much as one LoRA step (reviewers' question 10)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from toyllora.claims import Setup, fmt
from toyllora.harness import bench_allora
from toyllora.plotting import figure, legend
from toyllora.protocol import stats

STATEMENT = ("ALLoRA adds little compute per step over LoRA (reviewers' question 10): at the larger size a "
             "step costs at most 1.05× LoRA's.")
SOURCE = "review"
WALL_CLOCK = True     # a timing: reproduce --jobs runs it alone, after the other claims
LIMIT = 1.05          # supported if the whole interval is at most this ratio
PARTLY_LIMIT = 1.25   # partly supported if the whole interval lies in (LIMIT, PARTLY_LIMIT]
FORMS = {"allora": "row-norm form", "allora_naive": "paper's listing"}   # method → name of the verdict part


@dataclasses.dataclass(frozen=True)
class Params:
    sizes: tuple[tuple[int, int, int], ...] = bench_allora.FULL_SIZES   # (d, r, n): W is d×d; the last is "larger"
    repeats: int = 60                                                    # interleaved timing rounds per size


SETUP = Setup(full=Params(), fast=Params(sizes=((256, 8, 32),), repeats=50))


def rule(p: Params) -> str:
    sizes = ", ".join(f"(d {d}, r {r}, n {n})" for d, r, n in p.sizes)
    return (f"toyllora.harness.bench_allora step timings at the sizes {sizes}, {p.repeats} interleaved rounds each "
            "(every other round in reverse order); statistic: the median over rounds of the per-round step-time "
            "ratio ALLoRA/LoRA at the larger (last) size with its distribution-free 95 % interval (order "
            "statistics, scipy.stats.binom). Judged for two forms of ALLoRA, each a named part: the row-norm "
            "form (||(BA)_i||² = b_iᵀ(AAᵀ)b_i) and the paper's listing (forms BA). A form is supported if its "
            f"interval's upper end is <= {fmt(LIMIT)}; partly supported if the interval lies in "
            f"({fmt(LIMIT)}, {fmt(PARTLY_LIMIT)}]; not supported if its lower end is > {fmt(PARTLY_LIMIT)}; "
            "inconclusive when a threshold lies inside the interval. The claim's verdict is the row-norm form's "
            "(the method as it can be implemented); the listing's part is reported beside it. Recorded alongside, "
            "deterministic: XLA's cost analysis (flops, bytes accessed) of each compiled step and the flops "
            "ratios; DoRA/LoRA. (Wall-clock timings vary with the machine's load; the interval says how much.)")


def judge(ci: list[float]) -> str:
    """The verdict of one form from its interval ``[lo, hi]`` of the step-time ratio to LoRA.

    >>> judge([0.97, 1.04]), judge([1.01, 1.08]), judge([1.1, 1.2]), judge([1.7, 1.9])
    ('supported', 'inconclusive', 'partly supported', 'not supported')
    """
    lo, hi = ci
    if hi <= LIMIT:
        return "supported"
    if lo > PARTLY_LIMIT:
        return "not supported"
    return "partly supported" if lo > LIMIT and hi <= PARTLY_LIMIT else "inconclusive"


def parts(m: dict) -> dict:
    """``{part name: verdict}`` for the two forms of ALLoRA at the larger size."""
    return {name: judge(m["larger"][method]["ratio_ci95"]) for method, name in FORMS.items()}


def measure(p: Params, seed: int) -> dict:
    """Step times of LoRA, ALLoRA, naive ALLoRA and DoRA, and XLA's cost of each compiled step (the seed is
    unused: timings of fixed inputs)."""
    methods = bench_allora.METHODS
    cases = [bench_allora.time_case(d, r, n, p.repeats) for d, r, n in p.sizes]
    rows = [[f"d={c['d']}, r={c['r']}, n={c['n']}"]
            + [f"{c['time_ms'][m]:.3f} ms, {c['ratio'][m]:.3f}× [{c['ratio_ci95'][m][0]:.3f}, "
               f"{c['ratio_ci95'][m][1]:.3f}], flops {c['flops_ratio'][m]:.3f}×" for m in methods] for c in cases]
    big = cases[-1]
    larger = {m: {"ratio": big["ratio"][m], "ratio_ci95": big["ratio_ci95"][m], "flops_ratio": big["flops_ratio"][m]}
              for m in methods if m != "lora"}
    m = {"cases": cases, "larger": larger,
         "deterministic": {f"d={c['d']}, r={c['r']}, n={c['n']}": {"cost": c["cost"], "flops_ratio": c["flops_ratio"]}
                           for c in cases},
         "table_md": stats.markdown_table(["size"] + list(methods), rows), "backend": jax.default_backend()}
    m["parts"] = parts(m)
    return m


def verdict(m: dict) -> str:
    return parts(m)[FORMS["allora"]]


def plot(record: dict):
    """Step time relative to LoRA's per method and size (median, 95 % interval as error bars), XLA's flops
    ratio as a marker, and the 1.05× and 1.25× lines."""
    data = record["measurements"]
    methods = [m for m in bench_allora.METHODS if m in data["cases"][0]["ratio"]]
    fig, ax = figure(figsize=(8, 3.8))
    x = np.arange(len(data["cases"]))
    w = 0.2
    for k, m in enumerate(methods):
        xs = x + (k - len(methods) / 2 + 0.5) * w
        med = np.array([c["ratio"][m] for c in data["cases"]])
        ci = np.array([c["ratio_ci95"][m] for c in data["cases"]])
        err = np.clip(np.stack([med - ci[:, 0], ci[:, 1] - med]), 0, None)
        ax.bar(xs, med, w, yerr=err, capsize=3, label=m)
        ax.plot(xs, [c["flops_ratio"][m] for c in data["cases"]], "D", color="0.25", mfc="white", ms=6, mew=1.5,
                ls="none", label="XLA flops ratio (deterministic)" if k == 0 else None)
    ax.axhline(LIMIT, color="k", ls=":", lw=0.8, label=f"{LIMIT}× LoRA")
    ax.axhline(PARTLY_LIMIT, color="k", ls="--", lw=0.8, label=f"{PARTLY_LIMIT}× LoRA")
    ax.set_xticks(x, [f"d={c['d']}, r={c['r']}, n={c['n']}" for c in data["cases"]])
    ax.set_ylabel("step time / LoRA's (median, 95 % CI)")
    p = parts(data)
    ax.set_title(f"one training step (one layer, float32, {data['backend']}): "
                 + "; ".join(f"{k}: {v}" for k, v in p.items()), fontsize=9)
    legend(ax)
    return fig


def _case(lo, hi, listing=(1.7, 1.9)):
    form = lambda ci: {"ratio": sum(ci) / 2, "ratio_ci95": list(ci), "flops_ratio": 1.0}
    return {"larger": {"allora": form((lo, hi)), "allora_naive": form(listing), "dora": form((1.3, 1.5))}}


VERDICT_EXAMPLES = [
    (_case(0.95, 1.03), "supported"),
    (_case(1.00, 1.05), "supported"),                          # the limit is included
    (_case(1.00, 1.051), "inconclusive"),                      # 1.05 inside the interval
    (_case(1.05, 1.10), "inconclusive"),                       # the interval touches 1.05
    (_case(1.051, 1.20), "partly supported"),
    (_case(1.06, 1.25), "partly supported"),                   # the limit is included
    (_case(1.06, 1.251), "inconclusive"),                      # 1.25 inside the interval
    (_case(1.00, 1.40), "inconclusive"),                       # both inside
    (_case(1.25, 1.40), "inconclusive"),                       # the interval touches 1.25
    (_case(1.251, 1.40), "not supported"),
    (_case(0.95, 1.03, listing=(0.9, 1.0)), "supported"),     # the listing's part does not decide
    (_case(1.3, 1.5, listing=(0.9, 1.0)), "not supported"),
]
