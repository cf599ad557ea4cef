"""Optimizer-shaped LoRA baselines as optax transforms: LoRA+, scaled GD / scaled AdamW, row-normalized SGD.

Each follows optax's conventions: a ``scale_by_...``-style transform (no learning rate, no sign) with a
NamedTuple state, and an alias that chains it with the learning rate. A and B are paired through the
:class:`toyllora.lora.LoraParams` pytree structure (never by name strings); every other leaf of the
parameter tree passes through untouched. Hyper-parameters may be traced scalars (``vmap`` over a grid) and
``optax.inject_hyperparams`` can schedule them.

* LoRA+ (Hayou, Ghosh, Yu 2024, arXiv:2402.12354): B's learning rate is ``ratio`` × A's.
* Scaled GD / scaled AdamW (Zhang & Pilanci 2024, arXiv:2402.02347): A's gradient is multiplied on the
  left by ``(BᵀB + δI)⁻¹`` and B's on the right by ``(AAᵀ + δI)⁻¹``.
* Row-normalized SGD: every row of every gradient (the last axis; for a ``(d_out, d_in)`` matrix, one row per
  output unit) divided by its Euclidean norm — a stateless per-row adaptive step, the optimizer-side
  counterpart of ALLoRA's per-row factor (which uses the row norms of the *weights* ``BA``, not of the
  gradient).

Unlike ALLoRA (:mod:`toyllora.allora`), which needs ``∂L/∂(BA)`` and so lives in the layer's backward pass,
these only need the plain gradients and the current weights, so they are optimizers.

Example:
    >>> import jax, jax.numpy as jnp, optax
    >>> from toyllora import optim
    >>> from toyllora.lora import LoraParams
    >>> p = LoraParams(A=jnp.ones((2, 3)), B=jnp.zeros((4, 2)))         # the B = 0 start
    >>> g = LoraParams(A=jnp.zeros((2, 3)), B=jnp.ones((4, 2)))         # there ∂L/∂A = 0
    >>> opt = optim.scaled_gd(0.1)
    >>> u, _ = opt.update(g, opt.init(p), p)
    >>> float(jnp.abs(u.A).max()), u.B.shape, bool(jnp.all(jnp.isfinite(u.B)))
    (0.0, (4, 2), True)
    >>> opt = optim.lora_plus(0.1, ratio=16.0, optimizer="sgd")       # B's step is 16 × A's
    >>> g = LoraParams(A=jnp.ones((2, 3)), B=jnp.ones((4, 2)))
    >>> u, _ = opt.update(g, opt.init(p), p)
    >>> round(float(u.A[0, 0]), 6), round(float(u.B[0, 0]), 6)
    (-0.1, -1.6)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from toyllora.lora import LoraParams

LORA_PLUS_OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")


def _is_lora(node) -> bool:
    return isinstance(node, LoraParams)


def _check_positive(field: str, value, *, allow_zero: bool = False) -> None:
    """Validate Python numbers (traced / array values pass: they come from ``vmap`` or injection)."""
    if isinstance(value, bool):
        raise ValueError(f"{field}: must be a finite number, got {value!r}")
    if isinstance(value, (int, float)):
        ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
        if not ok:
            bound = ">= 0" if allow_zero else "> 0"
            raise ValueError(f"{field}: must be a finite number {bound}, got {value!r}")


# -- LoRA+ ------------------------------------------------------------------------------------------


class ScaleByLoraPlusState(NamedTuple):
    """LoRA+ is stateless."""


def scale_by_lora_plus(ratio) -> optax.GradientTransformationExtraArgs:
    """Multiply the updates of every LoRA ``B`` factor by ``ratio`` (A, magnitudes, others unchanged).

    Placed after a base optimizer's scaling and before the learning rate, it gives B the learning rate
    ``ratio · lr`` (LoRA+, Hayou, Ghosh & Yu 2024, arXiv:2402.12354).

    Args:
      ratio: learning-rate ratio ``lr_B / lr_A`` (> 0; the paper's rule of thumb is 16). May be traced.

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Example:
      >>> import jax.numpy as jnp
      >>> from toyllora.lora import LoraParams
      >>> t = scale_by_lora_plus(4.0)
      >>> g = {"ada": LoraParams(A=jnp.ones(2), B=jnp.ones(3)), "bias": jnp.ones(1)}
      >>> u, _ = t.update(g, t.init(g))
      >>> u["ada"].A.tolist(), u["ada"].B.tolist(), u["bias"].tolist()
      ([1.0, 1.0], [4.0, 4.0, 4.0], [1.0])
    """
    _check_positive("ratio", ratio)

    def init_fn(params):
        del params
        return ScaleByLoraPlusState()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args

        def scale(node):
            if _is_lora(node):
                return LoraParams(A=node.A, B=(node.B * ratio).astype(node.B.dtype), magnitude=node.magnitude)
            return node

        return jax.tree.map(scale, updates, is_leaf=_is_lora), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def lora_plus(learning_rate, ratio=16.0, optimizer: str = "adam", *, momentum=0.9, b1=0.9, b2=0.999,
              eps=1e-8, weight_decay=1e-4) -> optax.GradientTransformationExtraArgs:
    """LoRA+: a base optimizer whose step for every LoRA B factor is ``ratio`` times larger.

    Args:
      learning_rate: A's learning rate (a float, a traced scalar or an optax schedule).
      ratio: ``lr_B / lr_A`` (default 16, the paper's rule of thumb).
      optimizer: ``"sgd"``, ``"momentum"``, ``"adam"`` or ``"adamw"`` (decoupled decay, also ×ratio on B,
        as with a PyTorch parameter group of learning rate ``ratio · lr``).
      momentum: momentum coefficient (``"momentum"``).
      b1, b2, eps: Adam's moment rates and epsilon (``"adam"``, ``"adamw"``).
      weight_decay: decoupled weight decay (``"adamw"`` only).

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Example:
      >>> import jax.numpy as jnp
      >>> from toyllora.lora import LoraParams
      >>> p = LoraParams(A=jnp.ones((1, 2)), B=jnp.ones((2, 1)))
      >>> opt = lora_plus(1e-3, ratio=16.0)           # Adam: |first step| = lr for A, 16 lr for B
      >>> u, _ = opt.update(p, opt.init(p), p)
      >>> round(float(u.A[0, 0]), 6), round(float(u.B[0, 0]), 6)
      (-0.001, -0.016)

    References:
      Hayou, Ghosh, Yu, "LoRA+: Efficient Low Rank Adaptation of Large Models", arXiv:2402.12354.
    """
    if optimizer not in LORA_PLUS_OPTIMIZERS:
        raise ValueError(f"optimizer: unknown value {optimizer!r}; allowed: {LORA_PLUS_OPTIMIZERS}")
    if optimizer == "sgd":
        base = optax.identity()
    elif optimizer == "momentum":
        base = optax.trace(decay=momentum)
    elif optimizer == "adam":
        base = optax.scale_by_adam(b1=b1, b2=b2, eps=eps)
    else:
        base = optax.chain(optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
                           optax.add_decayed_weights(weight_decay))
    return optax.chain(base, scale_by_lora_plus(ratio), optax.scale_by_learning_rate(learning_rate))


# -- Scaled GD / scaled AdamW (Zhang & Pilanci 2024) ------------------------------------------------


class PreconditionLoraFactorsState(NamedTuple):
    """The preconditioner is computed from the current weights: no state."""


def _inv_regularized(M, delta, dtype):
    """``(M + δI)⁻¹`` for a symmetric PSD ``M (..., r, r)``, via eigh with eigenvalues clamped at 0.

    Exact inverse of the regularized Gram matrix, never NaN/inf for δ > 0 (rounding can make tiny
    eigenvalues slightly negative; clamping keeps every denominator >= δ).
    """
    lam, V = jnp.linalg.eigh(M.astype(dtype))
    inv = 1.0 / (jnp.maximum(lam, 0.0) + jnp.asarray(delta, dtype))
    return jnp.einsum("...ik,...k,...jk->...ij", V, inv, V)


def _compute_dtype(dtype):
    return jnp.promote_types(dtype, jnp.float32)


def _precondition(g: LoraParams, p: LoraParams, delta) -> LoraParams:
    A, B = jax.lax.stop_gradient(p.A), jax.lax.stop_gradient(p.B)
    dt = _compute_dtype(jnp.result_type(g.A, g.B, A, B))
    A32, B32 = A.astype(dt), B.astype(dt)
    gram_B = jnp.swapaxes(B32, -1, -2) @ B32            # BᵀB (r, r)
    gram_A = A32 @ jnp.swapaxes(A32, -1, -2)            # AAᵀ (r, r)
    new_A = _inv_regularized(gram_B, delta, dt) @ g.A.astype(dt)
    new_B = g.B.astype(dt) @ _inv_regularized(gram_A, delta, dt)
    return LoraParams(A=new_A.astype(g.A.dtype), B=new_B.astype(g.B.dtype), magnitude=g.magnitude)


def precondition_lora_factors(delta=1e-6) -> optax.GradientTransformationExtraArgs:
    """Riemannian preconditioning of LoRA factors: ``(BᵀB+δI)⁻¹ ∂L/∂A`` and ``∂L/∂B (AAᵀ+δI)⁻¹``.

    The r×r Gram matrices come from the current ``params`` (required). A is paired with its own B through
    the :class:`~toyllora.lora.LoraParams` nodes of the tree; other leaves (and DoRA magnitudes) are
    left untouched. Safe at ``B = 0``: then A's update is ``∂L/∂A / δ = 0`` (as ``∂L/∂A = 0`` there).
    Computed in at least float32 and cast back to the update's dtype.

    Args:
      delta: the regularizer δ > 0 (may be traced).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` (its ``update`` needs ``params``).

    Example:
      >>> import jax.numpy as jnp
      >>> from toyllora.lora import LoraParams
      >>> p = LoraParams(A=2.0 * jnp.eye(2), B=jnp.eye(2))
      >>> t = precondition_lora_factors(delta=1e-6)
      >>> u, _ = t.update(p, t.init(p), p)
      >>> jnp.round(u.A, 4).tolist(), jnp.round(u.B, 4).tolist()    # 2I / (1 + δ), I / (4 + δ)
      ([[2.0, 0.0], [0.0, 2.0]], [[0.25, 0.0], [0.0, 0.25]])

    References:
      Zhang & Pilanci, "Riemannian Preconditioned LoRA for Fine-Tuning Foundation Models",
      arXiv:2402.02347.
    """
    _check_positive("delta", delta)

    def init_fn(params):
        del params
        return PreconditionLoraFactorsState()

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError("params: precondition_lora_factors needs the current params in update()")

        def visit(u, p):
            return _precondition(u, p, delta) if _is_lora(u) else u

        return jax.tree.map(visit, updates, params, is_leaf=_is_lora), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def scaled_gd(learning_rate, delta=1e-6) -> optax.GradientTransformationExtraArgs:
    """Scaled GD (Zhang & Pilanci 2024): ``A ← A − lr (BᵀB+δI)⁻¹∂L/∂A``, ``B ← B − lr ∂L/∂B (AAᵀ+δI)⁻¹``.

    Example:
      >>> import jax.numpy as jnp
      >>> from toyllora.lora import LoraParams
      >>> p = LoraParams(A=jnp.eye(2), B=jnp.zeros((3, 2)))
      >>> g = LoraParams(A=jnp.zeros((2, 2)), B=jnp.ones((3, 2)))
      >>> opt = scaled_gd(0.5)
      >>> u, _ = opt.update(g, opt.init(p), p)
      >>> float(u.A.sum()), round(float(u.B[0, 0]), 4)    # A frozen at B = 0; B gets lr / (1 + δ)
      (0.0, -0.5)

    References:
      Zhang & Pilanci, arXiv:2402.02347.
    """
    return optax.chain(precondition_lora_factors(delta), optax.scale_by_learning_rate(learning_rate))


def scaled_adamw(learning_rate, delta=1e-6, weight_decay=0.0, b1=0.9, b2=0.999, eps=1e-8
                 ) -> optax.GradientTransformationExtraArgs:
    """Scaled AdamW (Zhang & Pilanci 2024): the preconditioned gradients fed into AdamW.

    Args:
      learning_rate: a float, traced scalar or optax schedule.
      delta: the preconditioner's regularizer δ > 0.
      weight_decay: decoupled weight decay (>= 0).
      b1, b2, eps: Adam's moment rates and epsilon.

    References:
      Zhang & Pilanci, arXiv:2402.02347.
    """
    _check_positive("weight_decay", weight_decay, allow_zero=True)
    return optax.chain(precondition_lora_factors(delta), optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
                       optax.add_decayed_weights(weight_decay),
                       optax.scale_by_learning_rate(learning_rate))


# -- Row-normalized SGD -----------------------------------------------------------------------------


class NormalizeByRowNormState(NamedTuple):
    """Row normalization is stateless."""


def _normalize_rows(u, eps):
    if u.ndim == 0:
        return u
    dt = _compute_dtype(u.dtype)
    u32 = u.astype(dt)
    norm = jnp.sqrt(jnp.sum(jnp.square(u32), axis=-1, keepdims=True))
    return (u32 / (norm + jnp.asarray(eps, dt))).astype(u.dtype)


def normalize_by_row_norm(eps=1e-8) -> optax.GradientTransformationExtraArgs:
    """Divide every row of every update (its last axis) by the row's Euclidean norm plus ``eps``.

    For a LoRA factor stored as ``(d_out, r)`` (B) or ``(r, d_in)`` (A) a row is one output unit of the
    factor; a 1-D leaf (biases, DoRA magnitudes) is one row; scalars pass unchanged. Each nonzero row of
    the result has norm ``||g|| / (||g|| + eps) ≈ 1``; a zero row (e.g. ``∂L/∂A`` at ``B = 0``) stays zero
    — never NaN, because ``eps > 0``. Computed in at least float32 and cast back to the update's dtype.

    Args:
      eps: added to every row norm (> 0; may be traced).

    Returns:
      An ``optax.GradientTransformationExtraArgs``.

    Example:
      >>> import jax.numpy as jnp
      >>> from toyllora.lora import LoraParams
      >>> t = normalize_by_row_norm(eps=1e-12)
      >>> g = LoraParams(A=jnp.zeros((1, 2)), B=jnp.array([[3.0], [0.0]]))
      >>> u, _ = t.update(g, t.init(g))
      >>> u.A.tolist(), [round(float(v), 6) for v in u.B[:, 0]]
      ([[0.0, 0.0]], [1.0, 0.0])
    """
    _check_positive("eps", eps)

    def init_fn(params):
        del params
        return NormalizeByRowNormState()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        return jax.tree.map(lambda u: _normalize_rows(u, eps), updates), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def row_normalized_sgd(learning_rate, eps=1e-8) -> optax.GradientTransformationExtraArgs:
    """SGD on row-normalized gradients: every row of every parameter moves by ``learning_rate`` (in norm).

    ``θ_row ← θ_row − lr · g_row / (||g_row|| + eps)``. Without a decaying ``learning_rate`` (an optax
    schedule) the iterates settle within about ``lr`` of a minimum rather than on it, as any normalized
    gradient method does.

    Args:
      learning_rate: a float, traced scalar or optax schedule.
      eps: added to every row norm (> 0).

    Example:
      >>> import jax.numpy as jnp
      >>> opt = row_normalized_sgd(0.1)
      >>> p = {"W": jnp.array([[3.0, 4.0], [1.0, 0.0]])}
      >>> u, _ = opt.update(p, opt.init(p), p)
      >>> [[round(float(v), 4) + 0.0 for v in row] for row in u["W"]]
      [[-0.06, -0.08], [-0.1, 0.0]]

    References:
      Hazan, Levy, Shalev-Shwartz, "Beyond Convexity: Stochastic Quasi-Convex Optimization" (normalized
      gradient descent), arXiv:1507.02030; You, Gitman, Ginsburg, "Large Batch Training of Convolutional
      Networks" (layer-wise normalized steps, LARS), arXiv:1708.03888.
    """
    return optax.chain(normalize_by_row_norm(eps), optax.scale_by_learning_rate(learning_rate))
