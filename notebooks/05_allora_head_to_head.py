# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 — ALLoRA head to head: equal footing, seeds and confidence intervals
#
# The ALLoRA paper (arXiv 2410.09692) reports a **+0.33-point** mean gain over LoRA, ALLoRA ahead in
# 18 of 27 comparisons — without error bars, with the best of three eta² against a single LoRA setting.
# This notebook shows the protocol toyllora uses instead (`toyllora.protocol`) and the statistics that
# decide a "win" (`toyllora.protocol.stats`):
#
# 1. every method gets **the same learning-rate grid** (log2 steps), tuned on a *validation* split;
# 2. the chosen setting is re-run on **fresh seeds** and scored on a *test* split;
# 3. methods are compared by **paired differences** (same seeds), with a **bootstrap 95 % CI**;
#    a win counts only when the interval excludes 0.
#
# Set `TOYLLORA_FAST=1` for the quick version used by the test suite.

# %%
import os

import numpy as np

from toyllora import protocol
from toyllora.protocol import stats
from toyllora.claims.allora import _common

FAST = os.environ.get("TOYLLORA_FAST", "0") == "1"
BUDGET = protocol.budget(FAST)  # the protocol's sizes: steps, lr grid, seeds

# %% [markdown]
# ## Paired differences and the bootstrap
#
# Suppose two methods were run on the same 10 seeds. The seed-to-seed spread (here std 1) is much larger
# than the true difference (0.3), but pairing removes the shared part of the noise.

# %%
rng = np.random.default_rng(0)
shared = rng.normal(0.0, 1.0, 10)            # what a seed does to both methods alike
a = 50.0 + shared + rng.normal(0, 0.1, 10)   # method a: +0.3 on average
b = 49.7 + shared + rng.normal(0, 0.1, 10)
print("a:", stats.mean_std(a), " b:", stats.mean_std(b))
print("unpaired means overlap, but paired:", stats.ci_text(stats.paired_difference(a, b)))

# %% [markdown]
# ## One cell of the protocol
#
# The OLS toy with a low-rank shift (`ols-low`): LoRA (dropout 0.05, s = alpha/r = 4) against ALLoRA
# (eta² = 4, s = 1), each tuned on its own on the same grid, under SGD and Adam. The short budget stands
# for the paper's "2 epochs" regime, the long one for training to convergence.

# %%
task = protocol.make_task("ols-low", 0)
results = {"ols-low": {m: protocol.method_results("ols-low", m, 0, BUDGET) for m in ("lora", "allora")}}
for opt in protocol.OPTIMIZERS:
    for b in protocol.BUDGETS:
        r = {m: results["ols-low"][m][opt][b] for m in ("lora", "allora")}
        print(f"{opt:5s} {b:5s}  lr LoRA {r['lora']['lr']:.4g}  lr ALLoRA {r['allora']['lr']:.4g}  "
              f"failed runs {r['lora']['n_failed']}/{r['allora']['n_failed']}")

# %% [markdown]
# The validation score over the learning-rate grid: the curve each method's tuning picks its maximum from.

# %%
from toyllora.plotting import figure

fig, axes = figure(1, 2, figsize=(10, 3.6), sharey=True)
for ax, opt in zip(axes, protocol.OPTIMIZERS):
    for m in ("lora", "allora"):
        r = results["ols-low"][m][opt]
        ax.plot(r["grid"]["lr"], r["long"]["val_scores"], "o-", label=m)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("validation score (% of base loss removed)")
    ax.set_title(f"{opt.upper()}, long budget")
    ax.legend()
fig

# %% [markdown]
# ## The table the claims write
#
# `allora.vs-lora` writes exactly this kind of table (for every task, budget, optimizer and eta²) into its
# measurements as `table_md`, and counts wins, ties and losses.

# %%
table, diffs = _common.diff_table(results, [("allora", "lora")])
print(table)
print(stats.tally(diffs))

# %%
_common.plot_forest(diffs, "ALLoRA − LoRA on ols-low")

# %% [markdown]
# ## What to take away
#
# * A mean gain of a fraction of a point means nothing without its interval: with 10+ seeds the CI of a
#   *paired* difference is often much narrower than the seed-to-seed spread, so small effects can be
#   resolved — or shown to be absent.
# * Under Adam a constant factor on a gradient cancels, so ALLoRA's "larger effective learning rate at
#   B = 0" argument (an SGD argument) cannot carry over unchanged; see `allora.escape-speed` and
#   `allora.adam-cancellation`.
# * Run `toyllora run allora.vs-lora` for the whole grid of tasks.

# %% [markdown]
# ## The rest of the ledger, in miniature
#
# The same machinery answers the other head-to-head questions; here each is run on `ols-low` only (the
# claims run every task):
#
# * `allora.dropout-neutral` — ALLoRA against ALLoRA+D (dropout 0.05 put back); the paper says +0.06.
# * `allora.family-ranking` — ALLoRA against ALLoRA-OD, ASF-LoRA and LoRA×eta (paper: +0.36, +1.10, +0.93).
# * `allora.vs-baselines` — ALLoRA against LoRA without dropout (reviewers' question 4), rsLoRA, LoRA+,
#   DoRA, PiSSA, Init[B] and scaled GD/AdamW; here only LoRA without dropout.
# * `allora.eta-sensitivity` and `allora.robustness` — how much the tuned result moves over eta² (ALLoRA)
#   against LoRA's (lr, alpha, dropout) grid.
# * `allora.rank-sweep` — the ALLoRA − LoRA difference at r = 4 … 64.
# * `allora.implicit-regularization` — the train–test gap of ALLoRA between LoRA without and with dropout
#   and explicit ridge, on an over-parameterized toy.

# %%
more = ("allora+D", "asf", "lora-d0") if FAST else ("allora+D", "allora-OD", "asf", "lora-x-eta", "lora-d0")
for m in more:
    results["ols-low"][m] = protocol.method_results("ols-low", m, 0, BUDGET)
table, diffs = _common.diff_table(results, [("allora", m) for m in more])
print(table)
print(stats.tally(diffs))
