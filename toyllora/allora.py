"""ALLoRA: the LoRA branch with a per-row adaptive learning rate, as a custom VJP.

Forward: ``f(x) = B A x`` (no scale, no dropout of its own). Backward: the upstream gradient ``δ`` is
multiplied per output unit by ``c_i = 1/sqrt(||(BA)_{i,:}||_2 + 1/eta²)`` before the gradients of A and
B are formed, so with ``G = ∂L/∂(BA)`` and ``C = diag(c)``::

    ∂̃L/∂B = C G Aᵀ,      ∂̃L/∂A = Bᵀ C G,      ∂L/∂x unchanged.

``c`` comes from the current weights and carries no gradient. The row norms use the exact cheap form
``||(BA)_i||² = b_iᵀ (A Aᵀ) b_i`` (O(r²(d_in + d_out)), BA is never formed), clamped at 0.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from toyllora import allora
    >>> x, A, B = jnp.ones((5, 3)), jnp.ones((2, 3)), jnp.zeros((4, 2))
    >>> allora.branch(x, A, B, eta=2.0).shape
    (5, 4)
    >>> gB = jax.grad(lambda B: allora.branch(x, A, B, eta=2.0).sum())(B)
    >>> bool(jnp.allclose(gB, 2.0 * jax.grad(lambda B: (x @ A.T @ B.T).sum())(B)))  # c = eta at BA = 0
    True

References:
  Huang & Balestriero, "ALLoRA: Adaptive Learning Rate Mitigates LoRA Fatal Flaws", arXiv:2410.09692.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from toyllora.conventions import ADAPTS


def product_row_norms(A: jax.Array, B: jax.Array) -> jax.Array:
    """``||(B A)_{i,:}||_2`` for every output row i, without forming ``B A``; exact, safe at zero.

    >>> import jax.numpy as jnp
    >>> product_row_norms(jnp.eye(2), jnp.array([[3.0, 4.0]])).tolist()
    [5.0]
    """
    gram = A @ A.T
    sq = jnp.einsum("ir,rs,is->i", B, gram, B)
    positive = sq > 0  # rounding can give sq < 0; sqrt's derivative at 0 is inf: keep both out (0, not NaN)
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def row_factor(A: jax.Array, B: jax.Array, eta) -> jax.Array:
    """ALLoRA's per-row factor ``c_i = 1/sqrt(||(BA)_i|| + 1/eta²)`` (no gradient flows through it).

    Equal to ``eta`` where the row of ``BA`` is zero (e.g. at the ``B = 0`` start), ``~ ||(BA)_i||^{-1/2}``
    for large rows; depends on ``BA`` only (unchanged under ``(B, A) -> (B M, M⁻¹ A)``).

    >>> import jax.numpy as jnp
    >>> c = row_factor(jnp.ones((1, 2)), jnp.array([[0.0], [3.0]]), eta=2.0)   # row norms 0 and 3√2
    >>> [round(float(v), 4) for v in c]
    [2.0, 0.4718]
    """
    A, B = jax.lax.stop_gradient(A), jax.lax.stop_gradient(B)
    return jax.lax.rsqrt(product_row_norms(A, B) + 1.0 / jnp.square(eta))


def _check(eta, adapt) -> None:
    """Validate ``adapt`` and any concrete ``eta`` (a traced eta, e.g. from a vmapped grid, passes)."""
    if not isinstance(adapt, str) or adapt not in ADAPTS:
        raise ValueError(f"adapt: unknown value {adapt!r}; allowed: {ADAPTS}")
    if isinstance(eta, bool) or eta is None:
        raise ValueError(f"eta: must be a finite number > 0, got {eta!r}")
    if isinstance(eta, jax.core.Tracer):
        return
    try:
        value = np.asarray(eta, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"eta: must be a finite number > 0, got {eta!r}") from None
    if value.ndim != 0 or not (math.isfinite(float(value)) and float(value) > 0):
        raise ValueError(f"eta: must be a finite scalar > 0, got {eta!r}")


def branch(x, A, B, *, eta, adapt: str = "both", scale_input_grad: bool = False,
           per_sample: bool = False, bottleneck_mask=None):
    """``B A x`` whose backward adapts the gradients of A and B (ALLoRA, or ALLoRA-OD).

    Args:
      x: inputs ``(..., d_in)``.
      A: ``(r, d_in)``; B: ``(d_out, r)``.
      eta: ALLoRA's eta (> 0); may be a traced scalar.
      adapt: ``"both"`` (the paper), ``"B"`` or ``"A"``: which factor's gradient gets ``c``.
      scale_input_grad: also multiply the gradient passed to ``x`` by ``c`` (ablation; the paper does not).
      per_sample: ALLoRA-OD: ``c_{n,i} = 1/sqrt(|f(x_n)_i| + 1/eta²)`` per sample from the output.
      bottleneck_mask: optional dropout mask ``(..., r)`` applied to ``A x`` (ALLoRA+D, bottleneck site).

    Returns:
      ``B A x`` with shape ``(..., d_out)``.
    """
    _check(eta, adapt)
    inv_eta2 = 1.0 / jnp.square(jnp.asarray(eta, dtype=x.dtype))
    return _branch(adapt, bool(scale_input_grad), bool(per_sample), x, A, B, bottleneck_mask, inv_eta2)


def _forward(x, A, B, mask):
    h = x @ A.T
    if mask is not None:
        h = h * mask
    return h @ B.T, h


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _branch(adapt, scale_input, per_sample, x, A, B, mask, inv_eta2):
    return _forward(x, A, B, mask)[0]


def _branch_fwd(adapt, scale_input, per_sample, x, A, B, mask, inv_eta2):
    y, h = _forward(x, A, B, mask)
    if per_sample:
        c = jax.lax.rsqrt(jnp.abs(y) + inv_eta2)
    else:
        c = jax.lax.rsqrt(product_row_norms(A, B) + inv_eta2)
    return y, (x, A, B, mask, h, c, inv_eta2)


def _branch_bwd(adapt, scale_input, per_sample, res, g):
    x, A, B, mask, h, c, inv_eta2 = res
    gc = g * c
    g_b = gc if adapt in ("both", "B") else g
    g_a = gc if adapt in ("both", "A") else g
    d_B = jnp.einsum("...o,...r->or", g_b, h)
    t_a = g_a @ B
    if mask is not None:
        t_a = t_a * mask
    d_A = jnp.einsum("...r,...i->ri", t_a, x)
    t_x = (gc if scale_input else g) @ B
    if mask is not None:
        t_x = t_x * mask
    d_x = t_x @ A
    d_mask = None if mask is None else jnp.zeros_like(mask)
    return d_x, d_A, d_B, d_mask, jnp.zeros_like(inv_eta2)


_branch.defvjp(_branch_fwd, _branch_bwd)


def asf(f, *, eta):
    """ASF-LoRA's adapted forward output ``f_i / sqrt(|f_i| + 1/eta²)`` (ordinary autodiff).

    >>> import jax.numpy as jnp
    >>> float(asf(jnp.array(0.0), eta=2.0))
    0.0
    """
    _check(eta, "both")
    return f * jax.lax.rsqrt(jnp.abs(f) + 1.0 / jnp.square(jnp.asarray(eta, dtype=f.dtype)))
