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
# # 05 — ALLoRA head to head: equal footing, task draws, exact tests and multiplicity control
#
# The ALLoRA paper (arXiv 2410.09692) reports a **+0.33-point** mean gain over LoRA, ALLoRA ahead in
# 18 of 27 comparisons — without error bars, with the best of three eta² against a single LoRA setting.
# This notebook shows the protocol toyllora uses instead (`toyllora.protocol`) and the statistics that
# decide a "win" (`toyllora.protocol.stats`):
#
# 1. every task is **drawn several times** (data seeds), so an interval covers the task as well as the seeds;
# 2. every method gets **the same learning-rate grid and the same number of tuning runs**, tuned on a
#    *validation* split; a pick at an edge of the grid **extends the grid**, and a pick still at an edge
#    counts as a win for neither side;
# 3. the chosen setting is re-run on **fresh seeds** and scored on a *test* split;
# 4. methods are compared by **paired differences** (same draw, same seed), decided by an **exact sign-flip
#    test** (every draw must agree), with **Holm's correction** over all the comparisons of a claim.
#
# Set `TOYLLORA_FAST=1` for the quick version used by the test suite.

# %%
import os

import numpy as np

from toyllora import protocol
from toyllora.protocol import stats
from toyllora.claims.allora import _common

FAST = os.environ.get("TOYLLORA_FAST", "0") == "1"
BUDGET = protocol.budget(FAST)  # the protocol's sizes: steps, lr grid, draws, seeds

# %% [markdown]
# ## Paired differences and the sign-flip test
#
# Suppose two methods were run on the same 10 seeds. The seed-to-seed spread (here std 1) is much larger
# than the true difference (0.3), but pairing removes the shared part of the noise. The sign-flip test asks
# how often flipping the signs of the paired differences gives a mean as far from 0: with 10 pairs all of one
# sign, 2 of the 1024 patterns — p ≈ 0.002. With only 4 pairs p can never go below 2/16: no win is possible.

# %%
rng = np.random.default_rng(0)
shared = rng.normal(0.0, 1.0, 10)            # what a seed does to both methods alike
a = 50.0 + shared + rng.normal(0, 0.1, 10)   # method a: +0.3 on average
b = 49.7 + shared + rng.normal(0, 0.1, 10)
print("a:", stats.mean_std(a), " b:", stats.mean_std(b))
print("unpaired means overlap, but paired:", stats.ci_text(stats.paired_difference(a, b)))
print("smallest p with 4 pairs:", stats.min_p_value(4), " with 18:", stats.min_p_value(18))

# %% [markdown]
# ## One task of the protocol
#
# The OLS toy with a low-rank shift (`ols-low`): LoRA (dropout 0.05, s = alpha/r = 4) against ALLoRA
# (eta² = 4, s = 1), each tuned on its own on the same grid, under SGD and Adam. The short budget stands
# for the paper's "2 epochs" regime, the long one for training to convergence.

# %%
results = {"ols-low": {m: _common.results("ols-low", m, 0, BUDGET) for m in ("lora", "allora")}}
for opt in protocol.OPTIMIZERS:
    for b in protocol.BUDGETS:
        r = {m: results["ols-low"][m][opt][b] for m in ("lora", "allora")}
        print(f"{opt:5s} {b:5s}  lr LoRA {r['lora']['lr']:.4g} (edge: {r['lora']['at_edge']})  "
              f"lr ALLoRA {r['allora']['lr']:.4g} (edge: {r['allora']['at_edge']})  "
              f"tuning runs {r['lora']['tuning_runs']}/{r['allora']['tuning_runs']}")

# %% [markdown]
# The validation score over the learning-rate grid (extended where a pick sat at an edge): the curve each
# method's tuning picks its maximum from.

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
# The claims write exactly this kind of table into their measurements as `table_md`, with Holm's correction
# over all their comparisons, and count wins, ties and losses.

# %%
diffs = _common.decide(_common.compare_methods(results, [("allora", "lora")], ("ols-low",)))
print(_common.diff_table(diffs))
print(_common.tally(diffs))

# %%
_common.plot_forest(diffs, "ALLoRA − LoRA on ols-low")

# %% [markdown]
# ## What to take away
#
# * A mean gain of a fraction of a point means nothing without its interval and a test whose error rate
#   holds at the sample size used: with 3 draws × 6 seeds the paired difference is often resolved far
#   below the seed-to-seed spread — or shown to be absent.
# * Under Adam a constant factor on a gradient cancels, so ALLoRA's "larger effective learning rate at
#   B = 0" argument (an SGD argument) cannot carry over unchanged; see `allora.escape-speed` and
#   `allora.adam-cancellation`.
# * Run `toyllora run allora.vs-lora` for the whole grid of tasks and eta² arms.

# %% [markdown]
# ## The rest of the ledger, in miniature
#
# The same machinery answers the other head-to-head questions; here each is run on `ols-low` only:
#
# * `allora.vs-plain-lora` — ALLoRA-0 against LoRA with s = 1 and no dropout ("why not simply remove both?").
# * `allora.ablation` — the 2×2×2 factorial of dropout × scaling × adaptive factor.
# * `allora.dropout-neutral` — ALLoRA against ALLoRA+D (dropout 0.05 put back); the paper says +0.06.
# * `allora.family-ranking` — ALLoRA against ALLoRA-OD, ASF-LoRA and LoRA×eta (paper: +0.36, +1.10, +0.93).
# * `allora.vs-baselines` — ALLoRA against LoRA without dropout, rsLoRA, LoRA+, DoRA, PiSSA, MiLoRA, LoRA-GA,
#   Init[B], scaled GD/AdamW, AdaLoRA and MoRA, with each method's tuning budget and interior selections.
# * `allora.eta-sensitivity` and `allora.robustness` — eta² at a fixed base rate and re-tuned; ALLoRA's eta²
#   against LoRA's s over knobs of matched range.
# * `allora.rank-sweep` — the ALLoRA − LoRA difference at r = 4 … 64, with every selection checked interior.
# * `allora.implicit-regularization` — the train–test gap of ALLoRA between LoRA without and with dropout
#   and explicit ridge, on an over-parameterized toy; a smaller gap counts only at a test loss no worse.
# * `allora.vs-adaptive-optimizers` — "what is the difference to an adaptive optimizer?": ALLoRA composed
#   with Adam, Adafactor and row-normalized SGD against LoRA under the same optimizer, and ALLoRA under SGD
#   against LoRA under each of them.

# %%
more = ("lora-s1-d0", "allora+D") if FAST else ("lora-s1-d0", "allora+D", "allora-OD", "asf", "lora-x-eta")
for m in more:
    results["ols-low"][m] = _common.results("ols-low", m, 0, BUDGET)
diffs = _common.decide(_common.compare_methods(results, [("allora", m) for m in more], ("ols-low",)))
print(_common.diff_table(diffs))
print(_common.tally(diffs))
