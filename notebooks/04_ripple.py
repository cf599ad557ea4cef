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
from toyllora.claims.ripple import bound, coupling, hurts, normalization, performance
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
# factor instead of `L`. For the aligned network (whose change is pure scale) the gain over the base network
# through RMSNorm is exactly `1 + s m` at every depth (proofs/ripple_normalization.md): nothing compounds.
#
# But a norm only removes *scale*. A generic adapter also turns the activations, and that change of direction
# passes through the norm. The claim is judged on the relative change of the output,
# `||f_L − f_L^base|| / ||f_L^base||`, for generic adapters: how much of its growth from `L = 1` to the
# deepest net survives the norm (the fraction `F` of the no-norm compounding), with the aligned net as the
# exact control (`F = 0`).

# %%
ndata, fig = run(normalization)
plt.show()
print(ndata["table_md"])

# %% [markdown]
# The change compounds through both norms; for small `s m` almost as much as without a norm, for large `s m`
# it saturates at O(1) while without a norm it grows like `(1 + s m)^L`.
#
# ## 4. Coupling between layers
#
# How much does layer k's gradient move when layer l's adapter moves? To first order by the cross-layer
# Hessian block `H_kl`. We normalize it, `κ_kl = ||H_kl|| / sqrt(||H_kk|| ||H_ll||)`. **At a fixed function**
# the scale `s` multiplies every block by the same factor (substitute `A' = √s A`, `B' = √s B`), so `κ`
# cannot change — `s` acts like a learning-rate multiplier. Sweeping `s` at *fixed factors* changes the
# function, i.e. the size of the update `||sBA||/||W||`; that is a different quantity, measured on its own at
# `s = 1`. In LoRA's own factorization (A fixed, B absorbs `s`) the function is fixed too, but `s` re-weights
# A's against B's coordinates (`H_s = D H_1 D`), which is reported beside.

# %%
cdata, fig = run(coupling)
plt.show()
for name in ("with_s_fixed_function", "with_depth", "with_size", "with_s_lora_factorization"):
    print(f"{name:>26}: log-ratio of κ̄ [95% CI]",
          {k: f"{v['mean']:+.3f} [{v['lo']:.3f}, {v['hi']:.3f}]" for k, v in cdata[name].items()})

# %% [markdown]
# ## 5. Does it matter for fine-tuning — and does ALLoRA fix it?
#
# A deep multilinear teacher shifts every layer by a rank-1 matrix; LoRA (several `s`) and ALLoRA fine-tune
# the base under SGD and Adam with the head-to-head protocol (`toyllora.protocol.tune_and_test`): the learning
# rate tuned per method, `s` and depth on a validation split over several task draws, the grid extended while
# the pick sits at an edge, and the picks scored on fresh seeds on a test split. Two tasks: the plain one and a
# *plateau* one (A started 1000× smaller, so under SGD the loss stays near the base model's for a sizeable
# part of the budget). LoRA at any `s` runs exactly as LoRA at `s = 1` with B's learning rate multiplied by
# `s²` (SGD) or `s` (Adam) — one compiled program for every `s`.
#
# `ripple.hurts` asks whether depth makes LoRA's tuned result more sensitive to `s`: the test loss of the
# worst `s` over that of the best `s` (both picked on validation), at the deepest against the shallowest
# net. (The fast run here uses two small depths and one task; `toyllora run ripple.hurts` runs the full grid.)

# %%
hdata, fig = run(hurts)
plt.show()
print(hdata["table_md"])

# %% [markdown]
# `ripple.performance` compares ALLoRA with LoRA at every `s` in every cell (paired by draw and seed, exact
# sign-flip test, Holm over all cells; a pick still at a grid edge counts for neither side):

# %%
pdata, fig = run(performance)
plt.show()
print("ALLoRA vs LoRA (Holm):", {k: pdata[k] for k in ("wins", "losses", "ties", "at_edge")})

# %% [markdown]
# ALLoRA scales the gradients of `A` and `B` per output row, but passes the gradient to the layer's input
# (the lower layers) **unscaled** — the paper says this limits the ripple. The claim `allora.input-gradient`
# checks the mechanism (ALLoRA's input gradient equals LoRA's at `s = 1`; the switch
# `LoraConfig(method="allora", scaling="none", scale_input_grad=True)` changes it) and then compares the two
# with the same protocol. The mechanism, on a 3-layer net with `B != 0`:

# %%
print(input_gradient.input_gradient_mechanism(seed=0))

# %% [markdown]
# **Take-aways.** The chain is valid (with `C = Π||W_l||` and `m̄` the mean of the ratios) and attained by
# one explicit construction; random adapters grow far slower. A normalization layer removes the exponential
# growth of the output, not the compounding of its change of direction. The coupling between layers grows with
# the size of the update, not with `s` at a fixed function, and not with depth. Whether the toy's tuned
# fine-tuning depends more on `s` at depth — and whether ALLoRA helps — is measured, with task draws, fresh
# seeds and Holm, by `ripple.hurts`, `ripple.performance` and `allora.input-gradient`.
