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
# # 03 — The zero-init start: gradients, Hessian, escape from zero
#
# LoRA starts at `B = 0` (A random), so the adapted model equals the base model. The ALLoRA paper
# (Huang & Balestriero, arXiv 2410.09692) calls this start LoRA's second "fatal flaw": slow to leave, a
# "degenerate" landscape, and dropout that regularizes the two factors unfairly. This notebook computes the
# exact objects behind each sentence on a toy where everything is known:
#
# 1. the gradients at the start (`zeroinit.gradient-asymmetry`);
# 2. the exact Hessian at the start, its closed form and the counts of each sign (`zeroinit.hessian`);
# 3. the exact learning curve of the two-factor model from `B = 0` (`zeroinit.escape-time`);
# 4. LoRA, ALLoRA, Adam and the balance matrix `AAᵀ − BᵀB` (`zeroinit.balance`);
# 5. dropout and the escape, and the final norms of A and B (`zeroinit.dropout-escape`,
#    `zeroinit.unfair-regularization`).
#
# The full experiments are `toyllora run <id>` (one file per claim in `toyllora/claims/zeroinit/`, what they
# share in its `_common.py`); derivations are in `proofs/zeroinit_*.md`.

# %%
import os

import jax
import matplotlib.pyplot as plt
import numpy as np

from toyllora import lora, models
from toyllora.theory import dynamics, hessian
from toyllora.config import LoraConfig
from toyllora.data import teacher_student

FAST = os.environ.get("TOYLLORA_FAST", "0") == "1"

# %% [markdown]
# ## 1. At B = 0 the gradient of A is exactly zero
#
# `∂L/∂A = s Bᵀ G` and `∂L/∂B = s G Aᵀ` with `G = ∂L/∂(sBA)`: each factor's gradient is a product with
# the *other* factor. At `B = 0` the first is exactly `0.0`.

# %%
t = teacher_student(seed=0, d_in=8, d_out=6, n_train=32, n_test=8, shift_rank=2, noise=0.1)
cfg = LoraConfig(rank=2, alpha=2.0)  # s = 1
model = models.LinearLoRA(cfg)
frozen, p = model.init(jax.random.key(0), t.W0)
g = jax.grad(lambda q: models.loss(model, frozen, q, t.data.X, t.data.Y))(p)
print("max |dL/dA| =", float(np.abs(g.A).max()), "  ||dL/dB|| =", float(np.linalg.norm(g.B)))

# %% [markdown]
# ## 2. The exact Hessian at the start
#
# `toyllora.theory.hessian.hessian` runs `jax.hessian` on the flattened pair `(A, B)`. At `B = 0` the A block is
# zero, the B block is `s² I ⊗ A Σ Aᵀ`, and the coupling comes from the residual. An orthogonal change of basis
# splits the matrix into 2 × 2 blocks, so the spectrum is known in closed form and the numbers of negative,
# zero and positive eigenvalues are a formula in the ranks `ρ = rank(XᵀT)` and `m = rank(XAᵀ)`:
# `(r ρ, r(d_in − ρ) + (r − m)(d_out − ρ), r ρ + m(d_out − ρ))`.

# %%
X, T = t.data.X, t.data.Y - t.data.X @ frozen.T
H = hessian.hessian(p.A, p.B, X, T)
ev = np.linalg.eigvalsh(np.asarray(H, np.float64))
closed = hessian.spectrum_at_zero(p.A, X, T)
rho = hessian.numerical_rank(np.asarray(X).T @ np.asarray(T), 1e-3)
m = hessian.numerical_rank(np.asarray(X) @ np.asarray(p.A).T, 1e-3)
print("autodiff vs closed form (relative):", np.abs(ev - closed).max() / np.abs(ev).max())
print("counts (neg, zero, pos):", hessian.inertia(ev), " formula:",
      hessian.predicted_inertia(d_in=8, d_out=6, rank=2, rank_g=rho, rank_m=m))
print("condition number of the non-zero part:", f"{hessian.condition_number(ev):.3g}")

# %% [markdown]
# Does the start get "more degenerate" as n decreases? The summed loss is n times the averaged one (same
# counts, same conditioning), and n enters the counts only through the ranks: with label noise,
# `ρ = min(n, d_in, d_out)`, so zeros appear once n falls below 6 here; without noise `ρ` is the shift's rank.

# %%
ns = [2, 4, 8, 32] if FAST else [2, 4, 8, 16, 32, 64]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
for ax, noise in zip(axes, (0.1, 0.0)):
    for n in ns:
        tn = teacher_student(seed=0, d_in=8, d_out=6, n_train=n, n_test=8, shift_rank=2, noise=noise)
        Xn, Tn = tn.data.X, tn.data.Y - tn.data.X @ tn.W0.T
        e = np.linalg.eigvalsh(np.asarray(hessian.hessian(p.A, p.B, Xn, Tn), np.float64))
        neg, zero, pos = hessian.inertia(e)
        ax.scatter(np.full(e.size, np.log2(n)), e, s=8, c=np.where(np.abs(e) < 1e-5 * np.abs(e).max(), "gray", "C0"))
        ax.annotate(f"{neg}/{zero}/{pos}", (np.log2(n), e.max()), fontsize=7, ha="center", va="bottom")
    ax.set_yscale("symlog", linthresh=1e-4)
    ax.set_xticks(np.log2(ns), [str(n) for n in ns])
    ax.set_xlabel("n")
    ax.set_title(f"label noise {noise}: neg/zero/pos")
axes[0].set_ylabel("eigenvalue (symlog)")
plt.show()

# %% [markdown]
# ## 3. The exact learning curve from B = 0
#
# On whitened inputs with a start aligned with the target's singular vectors, each mode is a scalar pair
# `(a, b)`; gradient flow conserves `a² − b²` (Du, Hu & Lee 2018), and the product `u = s a b` solves
# `du/dt = −s sqrt(k² + 4u²)(u − σ)` with `k = s(a₀² − b₀²)`. `dynamics.mode_flow` is the explicit
# solution (Saxe et al.'s logistic curve when `k = 0`). Gradient descent follows it within O(learning rate).

# %%
steps = np.arange(3001)
fig, ax = plt.subplots(figsize=(6, 3.6))
for lr in (0.003, 0.01, 0.03):
    gd = dynamics.mode_gd(3000, 1.0, 0.3, 0.0, lr_a=lr, lr_b=lr)
    flow = dynamics.mode_flow(steps, 1.0, 0.3, 0.0, lr_a=lr, lr_b=lr)
    ax.plot(steps, gd, label=f"GD lr={lr} (escape {dynamics.escape_time(gd, 0.5):g} steps)")
    ax.plot(steps, flow, "k--", lw=0.8)
ax.set_xscale("log")
ax.set_xlabel("step")
ax.set_ylabel("u = s a b (target σ = 1)")
ax.legend()
plt.show()

# %% [markdown]
# ## 4. LoRA and ALLoRA under SGD and Adam, and the balance matrix
#
# `dynamics.simulate` trains many runs of one layer in a single compiled call, each with its own start and
# update rule (its rules are tested against `Trainer`, `optim` and `allora`). At `BA = 0`, ALLoRA's factor is
# `c = η` for every row, so under SGD its first steps are LoRA's at `η · l_b`; under Adam a constant factor
# cancels. We also run dropout (bottleneck, sampled masks) to see the final norms of A and B.

# %%
task = teacher_student(seed=0, d_in=8, d_out=4, n_train=64, n_test=16, shift_rank=2, spectrum=(1.0, 0.5),
                       whiten=True)
start = lora.init(jax.random.key(1), task.W0, LoraConfig(rank=2, alpha=2.0))
R = dynamics.Rule
rules = {"LoRA SGD lr=0.1": R(lr=0.1), "ALLoRA SGD l_b=0.05": R(lr=0.05, allora=1.0),
         "LoRA Adam lr=0.01": R(lr=0.01, adam=1.0), "ALLoRA Adam l_b=0.005": R(lr=0.005, adam=1.0, allora=1.0),
         "LoRA Adam, bottleneck dropout 0.4": R(lr=0.01, adam=1.0, keep=0.6, site=1.0)}
stack = lambda a: np.repeat(np.asarray(a)[None], len(rules), 0)
rule_arrays = R(*(np.asarray([getattr(r, f) for r in rules.values()]) for f in R._fields))
STEPS = 200 if FAST else 1000
tr = dynamics.simulate(task.data.X, task.data.Y, stack(start[0]), stack(start[1].A), stack(start[1].B),
                       rule_arrays, list(range(len(rules))), steps=STEPS, stride=2)
T_ = np.asarray(task.delta, np.float64)
learned = np.einsum("rtik,rtkj->rtij", tr.B, tr.A)
progress = np.einsum("rtij,ij->rt", learned, T_) / np.sum(T_ * T_)
# the scale-free violation of AAᵀ − BᵀB: ||ΔQ|| / (||Δ AAᵀ|| + ||Δ BᵀB||), 0 when kept, 1 when one factor alone moved
drift = dynamics.conservation_violation(tr.A, tr.B)
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
for i, name in enumerate(rules):
    esc = dynamics.escape_time(progress[i], 0.5, tr.steps)
    axes[0].plot(np.maximum(tr.steps, 1), progress[i], label=f"{name} (escape {esc:g})")
    axes[1].plot(np.maximum(tr.steps, 1), np.maximum(drift[i], 1e-9), label=name)
axes[0].set_ylabel("learned fraction of the target")
axes[1].set_ylabel("violation of AAᵀ − BᵀB (scale-free)")
for ax in axes:
    ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
axes[1].set_yscale("log")
plt.show()

# %% [markdown]
# What to read off: ALLoRA at `l_b` is not faster than LoRA at `η · l_b` under SGD (it matches it at the
# very start, then its factor shrinks), and under Adam it behaves like LoRA at `l_b`. GD nearly keeps
# `AAᵀ − BᵀB` (ALLoRA's flow conserves it too: its factor multiplies `G = ∂L/∂(BA)`, which both factor
# gradients share), Adam does not — and its violation does not shrink with the learning rate
# (`zeroinit.balance`, which also checks LoRA+'s own invariant `AAᵀ/η_A − BᵀB/η_B` and scaled GD's
# `log det(AAᵀ+δ) − log det(BᵀB+δ)`). With dropout the law still holds for `diag(AAᵀ − BᵀB)`: the penalty
# is invariant under `A_k → cA_k, B_k → B_k/c`, so dropout moves `||A_k||²` and `||B_k||²` by the same amount
# under SGD (`zeroinit.unfair-regularization`); and against its own (shrunk) target dropout does not slow
# the escape (`zeroinit.dropout-escape`).

# %%
for i, name in enumerate(rules):
    print(f"{name:36s} final ||A|| = {np.linalg.norm(tr.A[i, -1]):.3f}  ||B|| = {np.linalg.norm(tr.B[i, -1]):.3f}")

# %% [markdown]
# ## 6. How does ALLoRA address the landscape at B = 0? (`zeroinit.allora-landscape`)
#
# At `BA = 0` ALLoRA's factor is `c = η` in every row, so its update is `η` times LoRA's gradient, and the
# Jacobian of its update field (with `c` held, as the listing computes it) is `η` times LoRA's Hessian: the
# same inertia and the same condition number. Under SGD it keeps `AAᵀ − BᵀB`, so it cannot rebalance the
# unbalanced start either. Non-zero starts change the landscape instead (`zeroinit.nonzero-inits`: PiSSA,
# MiLoRA, LoRA-GA against init_a, each at its own tuned learning rate).

# %%
W_, A_, B_ = (np.asarray(a, np.float64) for a in (start[0], start[1].A, start[1].B))
X_, Y_ = np.asarray(task.data.X, np.float64), np.asarray(task.data.Y, np.float64)
gA, gB = dynamics.gradients(A_, B_, X_, Y_, W_, R(lr=1.0, allora=1.0, eta=2.0))
lA, lB = dynamics.gradients(A_, B_, X_, Y_, W_, R(lr=1.0))
print("ALLoRA's update at B = 0 vs 2 × LoRA's gradient (relative):",
      np.linalg.norm(gB - 2 * lB) / np.linalg.norm(2 * lB))
T_res = Y_ - X_ @ W_.T
H_lora = hessian.spectrum_summary(np.linalg.eigvalsh(hessian.hessian64(A_, B_, X_, T_res)), 1e-12)
H_all = hessian.spectrum_summary(np.linalg.eigvalsh(hessian.hessian64(A_, B_, X_, T_res, row_weights=np.full(4, 2.0))),
                                 1e-12)
print("inertia LoRA", (H_lora["negative"], H_lora["zero"], H_lora["positive"]), " ALLoRA",
      (H_all["negative"], H_all["zero"], H_all["positive"]),
      f" condition {H_lora['condition']:.4g} vs {H_all['condition']:.4g}")

# %% [markdown]
# The registered claims repeat these measurements over seeds, learning rates, LoRA+, scaled GD, init_b and
# PiSSA, and over drop rates 0–0.4 at two dropout sites, on this toy and on a plateau toy (weak shift, small
# A), over task draws × seeds with paired sign-flip tests: `toyllora run zeroinit.escape-time`,
# `zeroinit.balance`, `zeroinit.dropout-escape`, `zeroinit.unfair-regularization`, `zeroinit.hessian`,
# `zeroinit.allora-landscape`, `zeroinit.nonzero-inits`.
