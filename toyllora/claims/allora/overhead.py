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
LIMIT = 1.05          # supported at most this ratio
PARTLY_LIMIT = 1.25   # partly supported at most this ratio


@dataclasses.dataclass(frozen=True)
class Params:
    sizes: tuple[tuple[int, int, int], ...] = bench_allora.FULL_SIZES   # (d, r, n): W is d×d; the last is "larger"
    repeats: int = 30                                                    # interleaved timing rounds per size


SETUP = Setup(full=Params(), fast=Params(sizes=bench_allora.FAST_SIZES, repeats=10))


def rule(p: Params) -> str:
    sizes = ", ".join(f"(d {d}, r {r}, n {n})" for d, r, n in p.sizes)
    return (f"toyllora.harness.bench_allora step timings at the sizes {sizes}, {p.repeats} interleaved rounds each: "
            "median per-round step-time ratio ALLoRA/LoRA at the larger (last) size. supported if <= "
            f"{fmt(LIMIT)}; partly supported if <= {fmt(PARTLY_LIMIT)}; not supported otherwise. DoRA/LoRA reported "
            "alongside. (A wall-clock measurement: it varies from run to run and with the machine's load.)")


def measure(p: Params, seed: int) -> dict:
    """Step times of LoRA, ALLoRA, naive ALLoRA and DoRA (the seed is unused: timings, fixed inputs)."""
    methods = bench_allora.METHODS
    cases = [bench_allora.time_case(d, r, n, p.repeats) for d, r, n in p.sizes]
    rows = [[f"d={c['d']}, r={c['r']}, n={c['n']}"] + [f"{c['time_ms'][m]:.3f} ms ({c['ratio'][m]:.3f}×)"
                                                      for m in methods] for c in cases]
    big = cases[-1]
    return {"cases": cases, "larger": {"allora_over_lora": big["ratio"]["allora"],
                                       "dora_over_lora": big["ratio"]["dora"],
                                       "allora_naive_over_lora": big["ratio"].get("allora_naive")},
            "table_md": stats.markdown_table(["size"] + list(methods), rows), "backend": jax.default_backend()}


def verdict(m: dict) -> str:
    a = m["larger"]["allora_over_lora"]
    if a <= LIMIT:
        return "supported"
    return "partly supported" if a <= PARTLY_LIMIT else "not supported"


def plot(record: dict):
    """Step time relative to LoRA's per method and size, with the 1.05× line."""
    data = record["measurements"]
    methods = [m for m in bench_allora.METHODS if m in data["cases"][0]["ratio"]]
    fig, ax = figure(figsize=(8, 3.8))
    x = np.arange(len(data["cases"]))
    for k, m in enumerate(methods):
        ax.bar(x + (k - len(methods) / 2 + 0.5) * 0.2, [c["ratio"][m] for c in data["cases"]], 0.2, label=m)
    ax.axhline(LIMIT, color="k", ls=":", lw=0.8, label=f"{LIMIT}× LoRA")
    ax.set_xticks(x, [f"d={c['d']}, r={c['r']}, n={c['n']}" for c in data["cases"]])
    ax.set_ylabel("step time / LoRA's step time (median)")
    ax.set_title(f"cost of one training step (one layer, float32, {data['backend']})")
    legend(ax)
    return fig


def _case(ratio):
    return {"larger": {"allora_over_lora": ratio, "dora_over_lora": 1.3, "allora_naive_over_lora": 1.5}}


VERDICT_EXAMPLES = [
    (_case(0.98), "supported"),
    (_case(1.05), "supported"),           # the limit is included
    (_case(1.051), "partly supported"),
    (_case(1.25), "partly supported"),    # the limit is included
    (_case(1.251), "not supported"),
    (_case(2.0), "not supported"),
]
