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
# # 04 — The ripple effect: does the scaling factor compound across layers?
#
# The ALLoRA paper (Huang & Balestriero, arXiv 2410.09692) calls the LoRA scaling factor `s = α/r` a "fatal
# flaw" because it **ripples** through depth. For an L-layer linear network with LoRA on every layer,
#
# $$ f_L(x) = \prod_{l=L}^{1} (W_l + s B_l A_l)\, x, \qquad
#    \|f_L(x)\| \le \prod_l \big(\|W_l\| + s\|B_l A_l\|\big)\|x\| \le C (1 + s\bar m)^L \|x\|, $$
#
# with spectral norms, and the paper calls the bound tight. This notebook takes the chain apart:
#
# 1. **each step** of the chain, and what `C` and `m̄` must be for the last step to hold;
# 2. a network that **attains** the bound, and how loose it is for **random** adapters;
# 3. what **RMSNorm / LayerNorm** between the layers do to it;
# 4. the **coupling** between layers (cross-layer Hessian blocks) as `s` grows;
# 5. whether any of it matters for **fine-tuning**, and whether ALLoRA fixes it.
#
# Everything below runs the library code in `toyllora.theory.ripple`; the claims are in `toyllora/claims/ripple/`
# (one file per claim) and `toyllora/claims/allora/input_gradient.py`. Each claim's `measure(SETUP.pick(FAST), 0)`
# returns its measurements, and its `plot` draws them from a record.

# %%
import dataclasses
import json
import os

import matplotlib.pyplot as plt
import numpy as np

from toyllora.claims.allora import input_gradient
from toyllora.claims.ripple import bound, coupling, normalization, performance
from toyllora.harness import io
from toyllora.theory import ripple

FAST = os.environ.get("TOYLLORA_FAST", "0") == "1"
L, d, r, m = (8, 8, 2, 0.1) if FAST else (16, 16, 4, 0.1)


def run(claim):
    """A claim's measurements (master seed 0) and its figure, drawn from the record as `toyllora run` does."""
    p = claim.SETUP.pick(FAST)
    record = json.loads(io.dumps({"measurements": claim.measure(p, 0), "config": {"setup": dataclasses.asdict(p)}}))
    return record["measurements"], claim.plot(record)

# %% [markdown]
# ## 1. The chain, step by step
#
# Write `w_l = ||W_l||`, `b_l = ||B_l A_l||`, `m_l = b_l / w_l`. The chain is
#
# * `||f_L(x)|| <= ||M_L ⋯ M_1|| ||x||` — the operator norm of the product (attained by its top input);
# * `<= Π ||M_l||` — submultiplicativity;
# * `<= Π (w_l + |s| b_l)` — the triangle inequality (the paper's first step);
# * `<= C (1 + |s| m̄)^L` — AM-GM on the numbers `1 + |s| m_l`, which needs **`C = Π w_l` and `m̄` the
#   arithmetic mean of the ratios** `m_l` (the paper's wording). Read `m̄` as a ratio of means and it fails.
#
# `ripple.bound_chain` returns every step for every depth `1..L` at once (the depth-`L'` network is the first
# `L'` layers). On NumPy arrays it computes in float64.

# %%
Ws, As, Bs = ripple.network(0, "random", L, d, r, m, numpy=True)
c = ripple.bound_chain(Ws, As, Bs, 4.0, np.random.default_rng(1).standard_normal((64, d)))
for key in ("realized_x", "realized_worst", "merged_product", "triangle", "amgm"):
    print(f"{key:>15}: depth {L}: {c[key][-1]:.4g}")

# %% [markdown]
# Each line is at most the next one, as the chain says — but the realized growth for random adapters is
# orders of magnitude below the bound. The counterexample for the "ratio of means" reading of `m̄`:

# %%
W2 = np.stack([0.1 * np.eye(2), 10.0 * np.eye(2)])
A2 = np.stack([[[1.0, 0.0]], [[0.0, 0.0]]])
B2 = np.stack([[[1.0], [0.0]], [[0.0], [0.0]]])
c2 = ripple.bound_chain(W2, A2, B2, 1.0)
print("realized", c2["realized_worst"][-1], "| mean of ratios:", c2["amgm"][-1],
      "| ratio of means:", float(ripple.ratio_of_means_bound(W2, A2, B2, 1.0)))

# %% [markdown]
# ## 2. Tight for a construction, loose for random adapters
#
# The **aligned** network chains the layers so that each layer's top output direction is the next layer's
# top input direction (`W_l = Q_l diag(σ_l) Q_{l-1}ᵀ`) and puts the adapters on the top singular directions.
# Then every inequality is an equality: the bound is *attained*. The **random** network has Gaussian layers
# and Gaussian adapters rescaled to the same ratio `m`, so both have the same bound.

# %%
data, fig = run(bound)
plt.show()
scales = bound.SETUP.pick(FAST).scales
for kind in ripple.KINDS:
    rates = {s: round(data[kind][str(s)]["growth_rate"], 4) for s in scales}
    print(f"{kind:>8}: measured growth per layer {rates};  bound 1 + s m = "
          f"{ {s: 1 + s * m for s in scales} }")

# %% [markdown]
# The aligned network grows at exactly `1 + s m` per layer; random adapters grow far more slowly: a random
# low-rank perturbation is nearly orthogonal to the few directions the product amplifies. The bound is tight
# as a worst case, not as a description of typical adapters.
#
# A lower bound exists too, `||f_L(x)|| >= Π σ_min(M_l) ||x||`, but for random square layers `σ_min ≈ 0`
# makes it vacuous:

# %%
print("lower bound at depth L:", data["random"]["1.0"]["lower"][-1], " realized worst case:",
      data["random"]["1.0"]["realized_worst"][-1])

# %% [markdown]
# ## 3. Normalization between the layers
#
# RMSNorm and LayerNorm divide out the scale of their input: `n(c h) = n(h)` for `c > 0`. So the growth
# factors of the lower layers never reach the output, and `||f_L(x)|| <= sqrt(d) ||M_L||` — one layer's
# factor instead of `L`. For the aligned network the gain over the base network is exactly `1 + s m` at every
# depth (proofs/ripple_normalization.md).

# %%
ndata, fig = run(normalization)
plt.show()
for nk in normalization.NORM_KINDS:
    print(f"norm {nk:>5}: aligned growth exponent (fraction of log(1 + s m)) = "
          f"{ndata[f'aligned_median_exponent_{nk}']:.3f}")

# %% [markdown]
# ## 4. Coupling between layers
#
# How much does layer k's gradient move when layer l's adapter moves? To first order by the cross-layer
# Hessian block `H_kl`. We normalize it, `κ_kl = ||H_kl|| / sqrt(||H_kk|| ||H_ll||)`. A useful fact first:
# **at a fixed function** the scale `s` multiplies every block by the same factor (substitute `A' = √s A`,
# `B' = √s B`), so `κ` cannot change — `s` acts like a learning-rate multiplier. It changes `κ` only by
# changing the function, `s B A` at fixed factors, which is what we vary:

# %%
cdata, fig = run(coupling)
plt.show()
print("relative growth of κ̄ from smallest to largest s, per depth:", cdata["growth_with_s"])
print("relative growth of κ̄ from smallest to largest depth at the largest s:", cdata["growth_with_L_at_max_s"])

# %% [markdown]
# ## 5. Does it matter for fine-tuning — and does ALLoRA fix it?
#
# A deep multilinear teacher shifts every layer by a rank-1 matrix; LoRA (several `s`) and ALLoRA fine-tune
# the base with Adam, each with its learning rate tuned on the same log2 grid (one vmapped `Trainer.sweep`
# per method and depth). Under Adam a constant gradient factor cancels, so `s` acts mostly through the
# initial scale and the effective step size — which the tuned learning rate absorbs. (The fast run here
# uses one depth and two methods; `toyllora run ripple.performance` runs the full grid.)

# %%
pdata, fig = run(performance)
plt.show()
for key, res in pdata["results"].items():
    if not key.endswith("curve"):
        print(f"{key:>28}: lr {res['lr']}, loss {res['mean']:.3g} ± {res['std']:.2g}")
print("ALLoRA wins / losses (|z| > 2):", pdata["wins"], "/", pdata["losses"], "of", pdata["n_cells"])

# %% [markdown]
# ALLoRA scales the gradients of `A` and `B` per output row, but passes the gradient to the layer's input
# (the lower layers) **unscaled** — the paper says this limits the ripple. The claim `allora.input-gradient`
# checks the mechanism (ALLoRA's input gradient equals LoRA's at `s = 1`; the switch
# `LoraConfig(method="allora", scaling="none", scale_input_grad=True)` changes it) and then compares the two
# on the fine-tuning task above. The mechanism, on a 3-layer net with `B != 0`:

# %%
print(input_gradient.input_gradient_mechanism(seed=0))

# %% [markdown]
# **Take-aways.** The chain is valid (with `C = Π||W_l||` and `m̄` the mean of the ratios) and attained by
# one explicit construction; random adapters grow far slower; a normalization layer between the LoRA layers
# removes the exponential growth altogether. Whether the toy's fine-tuning depends on `s` once the learning
# rate is tuned — and whether ALLoRA helps — is measured, with seeds, by `ripple.performance`.
