# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 — LoRA from scratch in JAX
#
# LoRA (Hu et al. 2021, arXiv 2106.09685) fine-tunes a frozen weight `W` by adding a low-rank update:
#
# $$ y = W x + s\, B A x, \qquad W \in \mathbb{R}^{d_{out}\times d_{in}},\; A \in \mathbb{R}^{r\times d_{in}},\;
#    B \in \mathbb{R}^{d_{out}\times r},\; r \ll \min(d_{in}, d_{out}). $$
#
# This notebook builds that layer in a few lines of `jax.numpy`, then checks it against `toyllora.lora`,
# the implementation every experiment in toyllora uses. Along the way:
#
# 1. the **conventions** — which factor is which, and how other code bases spell the same layer;
# 2. the **init identity** — at the start the adapted model *is* the base model, for every init scheme;
# 3. **merging** — after training, `W + s·BA` is one matrix and the adapter costs nothing at inference;
# 4. the **scaling factor** `s` (LoRA's `α/r`, rsLoRA's `α/√r`), which the ALLoRA paper
#    (arXiv 2410.09692) blames for a "ripple effect" across layers;
# 5. the first steps of training from `B = 0`, where `∂L/∂A` is exactly zero.
#
# Set `TOYLLORA_FAST=1` for a quick run (the test suite does).

# %%
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from toyllora import conventions, lora
from toyllora.config import LoraConfig

FAST = os.environ.get("TOYLLORA_FAST", "0") == "1"
print("JAX", jax.__version__, "| backend:", jax.default_backend(), "| float:", jnp.zeros(()).dtype,
      "| fast:", FAST)

# %% [markdown]
# ## 1. The layer, from scratch
#
# A batch is stored as rows, `X: (n, d_in)`, so the layer reads `Y = X Wᵀ + s · X Aᵀ Bᵀ`. The default start
# (PEFT's `init_lora_weights=True`) draws `A` from a Kaiming-uniform distribution (bound `1/√d_in`) and sets
# `B = 0`.

# %%
d_in, d_out, r, alpha, n = 12, 6, 3, 6.0, 32
kW, kA, kX = jax.random.split(jax.random.key(0), 3)
W = jax.random.normal(kW, (d_out, d_in)) / jnp.sqrt(d_in)     # the frozen, "pretrained" weight
X = jax.random.normal(kX, (n, d_in))


def my_init(key, d_in, d_out, r):
    bound = 1.0 / np.sqrt(d_in)
    A = jax.random.uniform(key, (r, d_in), minval=-bound, maxval=bound)
    B = jnp.zeros((d_out, r))
    return A, B


def my_lora(W, A, B, X, s):
    return X @ W.T + s * (X @ A.T) @ B.T     # never forms B A: O(n r (d_in + d_out)) extra work


A, B = my_init(kA, d_in, d_out, r)
s = alpha / r
print("A", A.shape, "B", B.shape, "s =", s)
print("max |LoRA(X) − X Wᵀ| at the start:", float(jnp.abs(my_lora(W, A, B, X, s) - X @ W.T).max()))

# %% [markdown]
# The same layer in toyllora. `lora.init` returns the frozen weight and a `LoraParams` pytree; `lora.apply`
# is the forward pass (dropout only when `train=True`). toyllora draws its own `A` (from a split of the key);
# given the same `A` and `B`, the two forward passes agree exactly.

# %%
cfg = LoraConfig(rank=r, alpha=alpha)               # scaling="lora": s = alpha / r
W_frozen, p = lora.init(kA, W, cfg)
ours = lora.apply(W_frozen, p, X, cfg)
print("s from the config:", cfg.s, "| same s from conventions.scale:", conventions.scale("lora", alpha, r))
print("toyllora vs from-scratch, same A and B:",
      float(jnp.abs(lora.apply(W, lora.LoraParams(A=A, B=B), X, cfg) - my_lora(W, A, B, X, s)).max()))
print("output at the start equals the base model:", bool(jnp.array_equal(ours, X @ W.T)))

# %% [markdown]
# ## 2. Conventions: who is `A`, who is `B`
#
# Papers and libraries disagree on orientation, and that is where bugs hide. toyllora follows HF PEFT.
# The ALLoRA paper writes regression rows, `X (W + A B)`, so *its* `A` is our `Aᵀ` and *its* `B` our `Bᵀ` —
# in every convention the factor that starts at zero sits on the **output** side.
#
# | code base | product | input-side factor | output-side factor |
# |---|---|---|---|
# | toyllora, HF PEFT | `W + s·B A` | `A: (r, d_in)` (`lora_A.weight`) | `B: (d_out, r)` (`lora_B.weight`) |
# | flax nnx `LoRA` | `x @ a @ b` | `a: (d_in, r)` = `Aᵀ` | `b: (r, d_out)` = `Bᵀ` |
# | ALLoRA paper | `X (W + A B)` | `A: (D, r)` = `Aᵀ` | `B: (r, C)` = `Bᵀ` |
#
# Below, a trained-looking adapter (random `B`) is exported to a PEFT-style state dict and to flax nnx's
# layout, and all three forward passes agree.

# %%
kB = jax.random.key(7)
p_trained = lora.LoraParams(A=p.A, B=0.3 * jax.random.normal(kB, (d_out, r)))
peft_state = {"base_layer.weight": W, "lora_A.weight": p_trained.A, "lora_B.weight": p_trained.B}
peft_scaling = alpha / r                                          # PEFT: lora_alpha / r
y_peft = (X @ peft_state["base_layer.weight"].T
          + peft_scaling * X @ peft_state["lora_A.weight"].T @ peft_state["lora_B.weight"].T)
lora_a, lora_b = p_trained.A.T, p_trained.B.T                      # flax nnx layout, no built-in scale
y_flax = X @ W.T + s * (X @ lora_a @ lora_b)
y_ours = lora.apply(W, p_trained, X, cfg)
print({k: tuple(v.shape) for k, v in peft_state.items()})
print("PEFT vs toyllora:", float(jnp.abs(y_peft - y_ours).max()), "| flax vs toyllora:",
      float(jnp.abs(y_flax - y_ours).max()))

# %% [markdown]
# ## 3. The init identity, for every init scheme
#
# Whatever the init, fine-tuning should *start* from the pretrained model. `init_a` (B = 0) and `init_b`
# (A = 0) get there because the product is zero. PiSSA (arXiv 2404.02948) puts the top singular directions
# of `W` into `B A` and freezes the **residual** `W − s·BA`; `both` draws both factors and also keeps the
# residual. In all four cases the output equals `X Wᵀ` up to round-off.

# %%
inits = ["init_a", "init_b", "pissa", "both"]
gaps, norms = [], []
for init in inits:
    c = LoraConfig(rank=r, alpha=alpha, init=init)
    Wf, q = lora.init(jax.random.key(3), W, c)
    gaps.append(float(jnp.abs(lora.apply(Wf, q, X, c) - X @ W.T).max()))
    norms.append(float(jnp.linalg.norm(lora.delta(q, c))))
    print(f"{init:7s}  ||s·BA|| = {norms[-1]:.3f}   max |f(X) − X Wᵀ| = {gaps[-1]:.1e}")

fig, ax = plt.subplots(figsize=(6, 3))
ax.bar(inits, norms, color="tab:blue", label="||s·BA||_F at init (left axis)")
ax.set_ylabel("||s·BA||_F at the start")
ax2 = ax.twinx()
ax2.plot(inits, np.maximum(gaps, 1e-17), "o", color="tab:red", label="max |f(X) − X Wᵀ| (right axis)")
ax2.set_yscale("log")
ax2.set_ylim(1e-17, 1e-2)
ax2.set_ylabel("output change at the start")
ax.set_title("Every init starts at the base model (zeros plotted at 1e-17)")
fig.legend(loc="upper left", bbox_to_anchor=(0.12, 0.88), fontsize=8)
plt.show()

# %% [markdown]
# ## 4. Merging
#
# After training, the adapter folds into one matrix, `W' = W + s·B A`: the forward pass of the merged layer
# equals the adapter's forward pass, so inference costs nothing extra. (DoRA, arXiv 2402.09353, rescales
# each row of the merged matrix to a learned magnitude; ASF-LoRA changes the output non-linearly and
# cannot be merged — toyllora raises a `ValueError` for it.)

# %%
W_merged = lora.merge(W, p_trained, cfg)
print("merged vs adapter forward:", float(jnp.abs(X @ W_merged.T - lora.apply(W, p_trained, X, cfg)).max()))
print("rank of the update s·BA:", int(jnp.linalg.matrix_rank(W_merged - W)), "(r =", r, ")")
cfg_dora = LoraConfig(rank=r, alpha=alpha, dora=True)
Wd, pd = lora.init(kA, W, cfg_dora)
pd = lora.LoraParams(A=pd.A, B=p_trained.B, magnitude=pd.magnitude)
print("DoRA merged vs forward:", float(jnp.abs(X @ lora.merge(Wd, pd, cfg_dora).T
                                              - lora.apply(Wd, pd, X, cfg_dora)).max()))
try:
    lora.merge(W, p_trained, LoraConfig(rank=r, scaling="none", method="asf"))
except ValueError as e:
    print("ASF-LoRA:", e)

# %% [markdown]
# ## 5. The scaling factor
#
# LoRA multiplies the branch by `s = α/r`; rsLoRA (arXiv 2312.03732) uses `α/√r` so that the update does
# not shrink as the rank grows; ALLoRA drops `s` altogether (`s = 1`). `toyllora.conventions.scale` is the
# only function that computes it. Which one keeps the *learning speed* independent of the rank depends on the
# optimizer: `lora.rank-stability` measures it (under SGD α/√r is rank-stable; under Adam, whose steps are
# per coordinate, α/r is). LoRA+ (arXiv 2402.12354) instead gives B a learning rate λ times A's;
# `lora.lora-plus-width` measures whether λ > 1 helps, and whether it helps more at a larger width.

# %%
ranks = np.array([1, 2, 4, 8, 16, 32, 64])
fig, ax = plt.subplots(figsize=(5, 3.2))
for mode, style in (("lora", "o-"), ("rslora", "s-"), ("none", "^-")):
    ax.plot(ranks, [conventions.scale(mode, 16.0, int(k)) for k in ranks], style, label=f"{mode}, α = 16")
ax.set_xscale("log", base=2)
ax.set_yscale("log", base=2)
ax.set_xlabel("rank r")
ax.set_ylabel("scaling factor s (dimensionless)")
ax.set_title("LoRA's s = α/r shrinks with the rank; rsLoRA's α/√r less so")
ax.legend()
plt.show()

# %% [markdown]
# ## 6. The first steps from `B = 0`
#
# With `B = 0`, the gradient with respect to `A` is `s·Bᵀ (∂L/∂Y)ᵀ X = 0` *exactly*, while `∂L/∂B` is not:
# at step 0 only `B` moves, and `A` starts moving once `B ≠ 0`. (Notebook 03 and the claim
# `zeroinit.gradient-asymmetry` study this start in depth.) Here: plain gradient descent on the
# teacher–student toy, tracking `||A − A₀||` and `||B||`.

# %%
from toyllora.data import teacher_student  # noqa: E402

t = teacher_student(seed=0, d_in=d_in, d_out=d_out, n_train=64, n_test=64, shift_rank=2)
cfg_t = LoraConfig(rank=2, alpha=2.0)
Wf, p0 = lora.init(jax.random.key(1), t.W0, cfg_t)


def loss(params):
    return jnp.mean(jnp.sum((lora.apply(Wf, params, t.data.X, cfg_t) - t.data.Y) ** 2, axis=1))


g = jax.grad(loss)(p0)
print("at B = 0:  max |∂L/∂A| =", float(jnp.abs(g.A).max()), "  ||∂L/∂B|| =", float(jnp.linalg.norm(g.B)))


@jax.jit
def gd_step(params, lr):
    return jax.tree.map(lambda w, gw: w - lr * gw, params, jax.grad(loss)(params))


steps = 60 if FAST else 400
params, hist = p0, {"loss": [], "dA": [], "B": []}
for _ in range(steps):
    hist["loss"].append(float(loss(params)))
    hist["dA"].append(float(jnp.linalg.norm(params.A - p0.A)))
    hist["B"].append(float(jnp.linalg.norm(params.B)))
    params = gd_step(params, 0.05)

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
ax1.semilogy(hist["loss"])
ax1.set_xlabel("gradient step")
ax1.set_ylabel("train loss (squared error per sample)")
ax1.set_title("Fine-tuning the OLS toy with LoRA")
ax2.plot(hist["dA"], label="||A − A₀||")
ax2.plot(hist["B"], label="||B||")
ax2.set_xlabel("gradient step")
ax2.set_ylabel("Frobenius norm")
ax2.set_title("B moves first; A only once B ≠ 0")
ax2.legend()
plt.show()
print("||A − A₀|| after one step:", hist["dA"][1], "| after two:", hist["dA"][2])

# %% [markdown]
# ## Where next
#
# * `02_dropout_vs_tikhonov.py` — LoRA's dropout as a penalty in expectation, and how far one run strays.
# * `03_zero_init_start.py` — the Hessian at `B = 0` and the time to escape from it.
# * `04_ripple_effect.py` — the scaling factor across many layers.
# * `05_allora_family.py` — ALLoRA and its family, head to head.
#
# Every claim is run by `toyllora reproduce`; the verdicts are in `results/REPORT.md`.
