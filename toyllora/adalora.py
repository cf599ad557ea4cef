"""AdaLoRA: the SVD-form adapter ``ΔW = s · P diag(Λ) Q`` with importance-based rank allocation.

One adapted layer computes ``y = W x + s · P diag(Λ) Q x`` with ``P (d_out, r)``, ``Λ (r,)`` (stored as
``E``, as the official code's ``lora_E``) and ``Q (r, d_in)``; ``Λ = 0`` at the start (``P``, ``Q``
Gaussian with std 0.02 as the official code), so the output equals the base model. Training adds

* the orthogonality regularizer ``R(P, Q) = ||PᵀP − I||²_F + ||QQᵀ − I||²_F`` (summed over layers, times
  ``γ = RankAllocation.orth_reg``): :func:`orthogonality_penalty`;
* rank allocation (:func:`allocate_ranks`, an optax-style wrapper of a base optimizer): after each step
  every entry ``w`` of ``P, Λ, Q`` gets the sensitivity ``I = |w · ∂L/∂w|``, smoothed
  ``Ī ← β1 Ī + (1 − β1) I`` and with the uncertainty ``Ū ← β2 Ū + (1 − β2) |I − Ī|``; its score is
  ``s(w) = Ī · Ū``. Triplet ``i`` of a layer scores ``S_i = s(λ_i) + mean_j s(Q_ij) + mean_j s(P_ji)``
  and, over all layers together, only the ``b(t)`` best-scoring triplets keep their ``λ`` (the others are
  set to 0), with the cubic budget :func:`budget`.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from toyllora import adalora
    >>> p = adalora.init(jax.random.key(0), jnp.zeros((4, 6)), rank=3)
    >>> p.P.shape, p.E.shape, p.Q.shape, float(jnp.abs(adalora.delta(p, s=1.0)).max())
    ((4, 3), (3,), (3, 6), 0.0)
    >>> orthonormal = adalora.AdaLoraParams(P=jnp.eye(4, 3), E=jnp.ones(3), Q=jnp.eye(3, 6))
    >>> float(adalora.orthogonality_penalty(orthonormal))
    0.0
    >>> [adalora.budget(t, total_steps=10, init_warmup=2, final_warmup=2, initial=12, target=4)
    ...  for t in (0, 2, 5, 8, 10)]
    [12, 12, 5, 4, 4]

References:
  Zhang et al., "AdaLoRA: Adaptive Budget Allocation for Parameter-Efficient Fine-Tuning",
  arXiv:2303.10512 (ICLR 2023).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from toyllora.config import RankAllocation

INIT_STD = 0.02  # the official code's normal_(std=0.02) for P and Q


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class AdaLoraParams:
    """Trainable SVD-form factors: ``P (d_out, r)``, singular values ``E = Λ (r,)``, ``Q (r, d_in)``."""

    P: jax.Array
    E: jax.Array
    Q: jax.Array


def is_adalora(node) -> bool:
    return isinstance(node, AdaLoraParams)


def adalora_nodes(tree) -> list:
    """Every :class:`AdaLoraParams` node of ``tree``, in pytree order."""
    return [n for n in jax.tree.leaves(tree, is_leaf=is_adalora) if is_adalora(n)]


def init(key, W, rank: int) -> AdaLoraParams:
    """``Λ = 0``, ``P`` and ``Q`` Gaussian with std :data:`INIT_STD` (the official code's init)."""
    d_out, d_in = W.shape
    kp, kq = jax.random.split(key)
    return AdaLoraParams(P=INIT_STD * jax.random.normal(kp, (d_out, rank), W.dtype),
                         E=jnp.zeros((rank,), W.dtype),
                         Q=INIT_STD * jax.random.normal(kq, (rank, d_in), W.dtype))


def branch(params: AdaLoraParams, x, s: float, bottleneck_mask=None):
    """``s · P diag(Λ) Q x`` for ``x (..., d_in)``; ``bottleneck_mask (..., r)`` multiplies ``Λ Q x``."""
    h = (x @ params.Q.T) * params.E
    if bottleneck_mask is not None:
        h = h * bottleneck_mask
    f = h @ params.P.T
    return s * f if s != 1.0 else f


def delta(params: AdaLoraParams, s: float):
    """The weight update ``s · P diag(Λ) Q`` (d_out, d_in)."""
    return s * ((params.P * params.E) @ params.Q)


def orthogonality_penalty(params) -> jax.Array:
    """``Σ_layers ||PᵀP − I||²_F + ||QQᵀ − I||²_F`` over every :class:`AdaLoraParams` node (0 if none).

    The paper's regularizer R(P, Q); a Trainer objective adds ``γ · orthogonality_penalty(params)``.
    (The official code adds ``γ · mean_matrices ||·||_F``, the norm not squared.)
    """
    total = jnp.zeros(())
    for node in adalora_nodes(params):
        eye = jnp.eye(node.E.shape[0], dtype=node.P.dtype)
        total = total + jnp.sum(jnp.square(node.P.T @ node.P - eye))
        total = total + jnp.sum(jnp.square(node.Q @ node.Q.T - eye))
    return total


def budget(t, *, total_steps: int, init_warmup: int, final_warmup: int, initial: int, target: int) -> int:
    """AdaLoRA's cubic budget ``b(t)`` (number of kept triplets at step ``t``), as a Python int.

    ``b(t) = b(0)`` for ``t < t_i``; ``b(T) + ⌊(b(0) − b(T)) (1 − (t − t_i)/(T − t_i − t_f))³⌋`` for
    ``t_i <= t < T − t_f``; ``b(T)`` after (the official code takes ``int(...)`` in float64, as here).
    """
    t_i, t_f, T = init_warmup, final_warmup, total_steps
    if t < t_i:
        return int(initial)
    if t < T - t_f:
        frac = 1.0 - (t - t_i) / (T - t_i - t_f)
        return int(target + (initial - target) * frac ** 3)
    return int(target)


def budget_schedule(allocation: RankAllocation, initial: int, target: int) -> np.ndarray:
    """``b(t)`` for ``t = 0..T`` (int32), looked up by the compiled update."""
    kw = dict(total_steps=allocation.total_steps, init_warmup=allocation.init_warmup,
              final_warmup=allocation.final_warmup, initial=initial, target=target)
    return np.asarray([budget(t, **kw) for t in range(allocation.total_steps + 1)], np.int32)


def update_importance(sensitivity, uncertainty, params, grads, beta1, beta2):
    """One step of the smoothed sensitivity and uncertainty, leaf by leaf (trees of the same structure).

    ``I = |w · g|``; ``Ī ← β1 Ī + (1 − β1) I``; ``Ū ← β2 Ū + (1 − β2) |I − Ī_new|`` (as the official code).
    """
    sens = jax.tree.map(lambda w, g: jnp.abs(w * g), params, grads)
    s_new = jax.tree.map(lambda s_bar, i: beta1 * s_bar + (1.0 - beta1) * i, sensitivity, sens)
    u_new = jax.tree.map(lambda u_bar, i, s: beta2 * u_bar + (1.0 - beta2) * jnp.abs(i - s),
                         uncertainty, sens, s_new)
    return s_new, u_new


def triplet_scores(sensitivity: AdaLoraParams, uncertainty: AdaLoraParams) -> jax.Array:
    """``S_i = s(λ_i) + mean_j s(Q_ij) + mean_j s(P_ji)`` with ``s = Ī · Ū`` (one layer, shape ``(r,)``)."""
    s = jax.tree.map(lambda a, b: a * b, sensitivity, uncertainty)
    return s.E + jnp.mean(s.Q, axis=1) + jnp.mean(s.P, axis=0)


def keep_most_important(scores, budget_now):
    """Boolean mask of the ``budget_now`` highest scores (ties: the lower index wins); jit-friendly."""
    order = jnp.argsort(-scores, stable=True)
    ranks = jnp.zeros_like(order).at[order].set(jnp.arange(scores.shape[0], dtype=order.dtype))
    return ranks < budget_now


class AllocateRanksState(NamedTuple):
    """``count``: steps taken; EMAs ``Ī``/``Ū`` per AdaLoRA layer; ``mask`` of kept triplets per layer."""

    count: jax.Array
    sensitivity: tuple
    uncertainty: tuple
    mask: tuple
    inner_state: Any


def allocate_ranks(inner: optax.GradientTransformation,
                   allocation: RankAllocation) -> optax.GradientTransformationExtraArgs:
    """Wrap an optimizer with AdaLoRA's rank allocation (updates are the inner ones, with pruned λ set to 0).

    At step ``t`` (the number of steps already taken): the inner optimizer's update ``u`` is computed; the
    importance EMAs are updated from the post-step weights ``w + u`` and the gradients while
    ``t < T − t_f``; at ``t >= t_i`` the mask is re-allocated to the ``b(t)`` best triplets over all layers
    every ``mask_interval`` steps (every step once ``t >= T − t_f``, where the frozen scores keep the
    pattern fixed); the mask is held in the state and every step sets masked ``λ`` to exactly 0. Leaves
    that are not :class:`AdaLoraParams` get the inner update unchanged.

    Args:
      inner: the base optimizer (a learning rate included), e.g. ``optax.adam(1e-2)``.
      allocation: a :class:`toyllora.config.RankAllocation` (the budget ``b(T) = target_rank × layers``).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose ``update`` needs ``params``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> from toyllora.config import RankAllocation
      >>> p = AdaLoraParams(P=jnp.ones((2, 3)), E=jnp.ones(3), Q=jnp.ones((3, 2)))
      >>> g = AdaLoraParams(P=jnp.ones((2, 3)), E=jnp.array([3.0, 1.0, 2.0]), Q=jnp.ones((3, 2)))
      >>> opt = allocate_ranks(optax.sgd(0.1), RankAllocation(target_rank=1, total_steps=2))
      >>> u, state = opt.update(g, opt.init(p), p)                    # t = 0: b(0) = 3, all kept
      >>> u, state = opt.update(g, state, optax.apply_updates(p, u))  # t = 1: b(1) = 1
      >>> state.mask[0].tolist()                                     # λ_0 had the largest |λ · ∂L/∂λ|
      [True, False, False]

    References:
      Zhang et al., arXiv:2303.10512 (the importance score, the budget schedule and the masking).
    """
    inner = optax.with_extra_args_support(inner)
    a = allocation
    beta1, beta2 = float(a.beta1), float(a.beta2)
    t_i, t_f, T, every = a.init_warmup, a.final_warmup, a.total_steps, a.mask_interval

    def init_fn(params):
        nodes = adalora_nodes(params)
        if not nodes:
            raise ValueError("params: allocate_ranks found no AdaLoraParams in the parameter tree")
        zeros = tuple(jax.tree.map(jnp.zeros_like, n) for n in nodes)
        mask = tuple(jnp.ones(n.E.shape, bool) for n in nodes)
        return AllocateRanksState(count=jnp.zeros((), jnp.int32), sensitivity=zeros, uncertainty=zeros,
                                  mask=mask, inner_state=inner.init(params))

    def update_fn(updates, state, params=None, **extra_args):
        if params is None:
            raise ValueError("params: allocate_ranks needs the current params in update()")
        u, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
        t = state.count
        stepped = adalora_nodes(optax.apply_updates(params, u))
        sens, unc = update_importance(state.sensitivity, state.uncertainty, tuple(stepped),
                                      tuple(adalora_nodes(updates)), beta1, beta2)
        live = t < T - t_f  # the scores are frozen in the final phase
        sens = jax.tree.map(lambda new, old: jnp.where(live, new, old), sens, state.sensitivity)
        unc = jax.tree.map(lambda new, old: jnp.where(live, new, old), unc, state.uncertainty)

        sizes = [m.shape[0] for m in state.mask]
        table = jnp.asarray(budget_schedule(a, sum(sizes), a.target_rank * len(sizes)))
        scores = jnp.concatenate([triplet_scores(s, v) for s, v in zip(sens, unc)])
        fresh = keep_most_important(scores, table[jnp.minimum(t, T)])
        remask = (t >= t_i) & ((t >= T - t_f) | (t % every == 0))
        flat = jnp.where(remask, fresh, jnp.concatenate(state.mask))
        mask = tuple(jnp.split(flat, np.cumsum(sizes)[:-1]))

        leaves_u, treedef = jax.tree.flatten(u, is_leaf=is_adalora)
        leaves_p = treedef.flatten_up_to(params)
        out, k = [], 0
        for lu, lp in zip(leaves_u, leaves_p):
            if is_adalora(lu):  # w + u = 0 for pruned λ
                lu = AdaLoraParams(P=lu.P, E=jnp.where(mask[k], lu.E, -lp.E).astype(lu.E.dtype), Q=lu.Q)
                k += 1
            out.append(lu)
        new_state = AllocateRanksState(count=t + 1, sensitivity=sens, uncertainty=unc, mask=mask,
                                       inner_state=inner_state)
        return treedef.unflatten(out), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
