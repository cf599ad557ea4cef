"""Escape from the zero-init start: escape times, and the exact gradient flow of the two-factor linear model.

The two-factor toy: whitened inputs (``XᵀX/n = I``), the mean-squared loss ``½||s B A − T||²_F`` and a
start whose factors are aligned with the singular vectors of the target ``T = Σ_i σ_i u_i v_iᵀ``
(``A = Σ_i a_i e_i v_iᵀ``, ``B = Σ_i b_i u_i e_iᵀ``). Gradient descent then keeps that form and every mode is
a scalar pair ``(a, b)`` with product ``u = s a b``::

    a ← a − η_a s b (u − σ),      b ← b − η_b s a (u − σ).

In the flow limit (time ``t`` counted in steps) ``a²/η_a − b²/η_b`` is conserved (Du, Hu & Lee 2018,
arXiv:1806.00900) and ``u(t)`` has a closed form (:func:`mode_flow`): the balanced case is the logistic
curve of Saxe, McClelland & Ganguli (2014, arXiv:1312.6120); the unbalanced case, including the LoRA start
``b = 0``, is solved in ``proofs/zeroinit_learning_curve.md``.

Example:
    >>> import numpy as np
    >>> t = np.array([0.0, 50.0, 5000.0])
    >>> u = mode_flow(t, sigma=1.0, a0=0.5, b0=0.0, lr_a=0.01, lr_b=0.01)
    >>> [round(float(v), 4) for v in u]
    [0.0, 0.1348, 1.0]
    >>> escape_time(np.array([0.0, 0.2, 0.6, 0.9]), 0.5, steps=np.array([0, 10, 20, 30]))
    20.0
    >>> escape_time(np.array([0.0, 0.1]), 0.5)   # never crosses
    inf
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

import optax

from toyllora import allora
from toyllora.conventions import DEFAULT_ETA
from toyllora.lora import LoraParams
from toyllora.theory import dropout as dropout_theory


def escape_time(values, threshold, steps=None, *, above=True, interpolate=False):
    """The first step at which ``values`` reach ``threshold`` (``inf`` if they never do).

    Args:
      values: ``(..., records)`` metric trajectories (e.g. ``||BA||`` or the learned fraction of a target).
      threshold: a level; a scalar, or one per trajectory (shape ``values.shape[:-1]``, e.g. a fraction of
        each run's own fixed point).
      steps: ``(records,)`` step of each record (default ``0, 1, 2, ...``).
      above: crossing means ``value >= threshold`` (``False``: ``value <= threshold``).
      interpolate: return the step where the straight line between the last record before the crossing and
        the first at it meets the threshold (below the record stride), instead of the first record's step.

    Returns:
      A float array of shape ``values.shape[:-1]`` (a Python float for 1-D input); non-finite values
      (a diverged run) never count as crossing.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 0:
        raise ValueError("values: need at least one record (shape (..., records))")
    steps = np.arange(v.shape[-1], dtype=np.float64) if steps is None else np.asarray(steps, np.float64)
    if steps.shape != (v.shape[-1],):
        raise ValueError(f"steps: need one step per record ({v.shape[-1]}), got shape {steps.shape}")
    thr = np.asarray(threshold, dtype=np.float64)[..., None]
    hit = np.isfinite(v) & ((v >= thr) if above else (v <= thr))
    first = np.argmax(hit, axis=-1)
    out = np.where(hit.any(axis=-1), steps[first], np.inf)
    if interpolate:
        prev = np.maximum(first - 1, 0)
        v1 = np.take_along_axis(v, first[..., None], -1)[..., 0]
        v0 = np.take_along_axis(v, prev[..., None], -1)[..., 0]
        t0, t1 = steps[prev], steps[first]
        with np.errstate(invalid="ignore", divide="ignore"):
            frac = np.clip((thr[..., 0] - v0) / (v1 - v0), 0.0, 1.0)
        ok = hit.any(axis=-1) & (first > 0) & np.isfinite(v0) & (v1 != v0)
        out = np.where(ok, t0 + frac * (t1 - t0), out)
    return float(out) if out.ndim == 0 else out


def mode_flow(t, sigma, a0, b0, *, s=1.0, lr_a=1.0, lr_b=1.0):
    """The exact gradient-flow product ``u(t) = s a(t) b(t)`` of one mode (``t`` in steps).

    Args:
      t: times (steps), any shape.
      sigma: the mode's target singular value (>= 0).
      a0, b0: the start of the A-side and B-side coordinates (LoRA: ``b0 = 0``; init_b: ``a0 = 0``).
      s: the LoRA scaling factor.
      lr_a, lr_b: learning rates of A and B (LoRA+: ``lr_b = ratio · lr_a``).

    Returns:
      ``u(t)`` (float64, broadcast shape of ``t``).
    """
    t = np.asarray(t, dtype=np.float64)
    if lr_a <= 0 or lr_b <= 0:
        raise ValueError(f"lr_a, lr_b: must be > 0, got {lr_a}, {lr_b}")
    # Rescale to a common rate: ã = a/sqrt(η_a), b̃ = b/sqrt(η_b), u = s' ã b̃ with s' = s sqrt(η_a η_b).
    sp = s * np.sqrt(lr_a * lr_b)
    at, bt = a0 / np.sqrt(lr_a), b0 / np.sqrt(lr_b)
    lam = at * at - bt * bt                     # conserved by the flow
    u0 = sp * at * bt
    k = abs(sp * lam)
    if k < 1e-12 * max(abs(sigma), abs(u0), 1e-300):  # balanced: Saxe et al.'s logistic curve
        if u0 == 0.0:
            return np.zeros_like(t)
        if sigma == 0.0:
            return u0 / (1.0 + 2.0 * sp * u0 * t) if u0 > 0 else u0 / (1.0 - 2.0 * sp * u0 * t)
        e = np.exp(-2.0 * sp * sigma * t)
        return sigma * u0 / (u0 + (sigma - u0) * e)
    # Unbalanced: u = (k/2) sinh θ, z = e^θ obeys z' = −(s'k/2)(z − z₊)(z − z₋).
    root = np.sqrt(4.0 * sigma * sigma + k * k)
    zp, zm = (2.0 * sigma + root) / k, (2.0 * sigma - root) / k
    z0 = np.exp(np.arcsinh(2.0 * u0 / k))
    rho = (z0 - zp) / (z0 - zm) * np.exp(-sp * root * t)
    z = (zp - rho * zm) / (1.0 - rho)
    return 0.25 * k * (z - 1.0 / z)


def mode_gd(steps: int, sigma, a0, b0, *, s=1.0, lr_a=1.0, lr_b=1.0):
    """Discrete gradient descent on one mode (float64 NumPy): ``u`` at steps ``0 .. steps``.

    ``sigma, a0, b0`` may be arrays (broadcast together); the result has a trailing steps axis.
    """
    sigma, a, b = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (sigma, a0, b0)))
    a, b = a.copy(), b.copy()
    out = np.empty(sigma.shape + (steps + 1,))
    for i in range(steps + 1):
        u = s * a * b
        out[..., i] = u
        e = u - sigma
        a, b = a - lr_a * s * b * e, b - lr_b * s * a * e
    return out


def flow_progress(t, sigmas, a0, b0, *, s=1.0, lr_a=1.0, lr_b=1.0):
    """The learned fraction of the target, ``<s B A, T> / ||T||² = Σ σ_i u_i(t) / Σ σ_i²``, for aligned starts.

    ``a0``, ``b0``: one start per mode (scalars broadcast to every mode).
    """
    sigmas = np.asarray(sigmas, dtype=np.float64)
    a0, b0 = np.broadcast_to(a0, sigmas.shape), np.broadcast_to(b0, sigmas.shape)
    us = [mode_flow(t, sg, a, b, s=s, lr_a=lr_a, lr_b=lr_b) for sg, a, b in zip(sigmas, a0, b0)]
    return sum(sg * u for sg, u in zip(sigmas, us)) / np.sum(sigmas ** 2)


def aligned_start(target, rank: int, a0: float, b0: float, dtype=None):
    """Factors ``A = a0 Σ_i e_i v_iᵀ``, ``B = b0 Σ_i u_i e_iᵀ`` aligned with the top-``rank`` SVD of ``target``.

    Returns NumPy arrays ``A (rank, d_in)``, ``B (d_out, rank)`` (``dtype`` default float64).
    """
    U, _, Vt = np.linalg.svd(np.asarray(target, dtype=np.float64), full_matrices=False)
    if rank > len(Vt):
        raise ValueError(f"rank: must be <= min(d_in, d_out) = {len(Vt)}, got {rank}")
    A, B = a0 * Vt[:rank], b0 * U[:, :rank]
    return (A, B) if dtype is None else (A.astype(dtype), B.astype(dtype))


def relative_curve_error(simulated, analytic) -> float:
    """``||sim − ana||₂ / ||ana||₂`` over a trajectory (float64)."""
    sim, ana = np.asarray(simulated, np.float64), np.asarray(analytic, np.float64)
    return float(np.linalg.norm(sim - ana) / max(np.linalg.norm(ana), 1e-300))


# -- A one-compile simulator of one LoRA layer under many update rules ----------------------------------


class Rule(NamedTuple):
    """Per-run update rule of :func:`simulate` (every field may be an array: one entry per run).

    Fields (floats; flags are 0/1): ``lr`` (A's learning rate), ``b_ratio`` (B's learning rate is
    ``b_ratio · lr``: LoRA+), ``adam`` (Adam with b1 0.9, b2 0.999, eps 1e-8 instead of SGD), ``allora``
    (ALLoRA's per-row factor, through :func:`toyllora.allora.branch`; needs ``s = 1``), ``eta``,
    ``scaled`` (the scaled-GD preconditioner of Zhang & Pilanci 2024, before Adam when both), ``delta``,
    ``keep`` (dropout keep probability), ``site`` (0: input dropout, 1: bottleneck dropout),
    ``expected`` (1: train on the closed-form expected dropout loss instead of sampled masks).
    """

    lr: Any
    b_ratio: Any = 1.0
    adam: Any = 0.0
    allora: Any = 0.0
    eta: Any = DEFAULT_ETA
    scaled: Any = 0.0
    delta: Any = 1e-6
    keep: Any = 1.0
    site: Any = 0.0
    expected: Any = 0.0


def expected_dropout_penalty(X, A, B, keep, site, s=1.0):
    """The expected-dropout penalty of :func:`toyllora.theory.dropout.penalty` with a traced ``site``
    (0: input, PEFT; 1: bottleneck) and ``keep``, so that one compiled simulator serves both sites."""
    p = LoraParams(A=A, B=B)
    return jnp.where(site > 0.5, dropout_theory.penalty(p, X, keep, "bottleneck", s),
                     dropout_theory.penalty(p, X, keep, "input", s))


def _masks(key, keep, n, d_in, r, dtype):
    k_in, k_bn = jax.random.split(key)
    m_in = jax.random.bernoulli(k_in, keep, (n, d_in)).astype(dtype) / keep
    m_bn = jax.random.bernoulli(k_bn, keep, (n, r)).astype(dtype) / keep
    return m_in, m_bn


def _inputs(X, masks, rule):
    """The branch input and the bottleneck mask of one step (sampled masks or none for the expected loss)."""
    m_in, m_bn = masks
    bottleneck, sampled = rule.site > 0.5, rule.expected < 0.5
    x_in = jnp.where(~bottleneck & sampled, X * m_in, X)
    mask = jnp.where(bottleneck & sampled, m_bn, jnp.ones_like(m_bn))
    return x_in, mask


def reference_losses(A, B, X, Y, W, rule, key, s=1.0):
    """(plain, ALLoRA) mean losses of one step by autodiff-able code: the reference for :func:`_grads`."""
    n, d_in = X.shape
    x_in, mask = _inputs(X, _masks(key, rule.keep, n, d_in, A.shape[0], X.dtype), rule)
    mse = lambda pred: 0.5 * jnp.sum(jnp.square(pred - Y)) / n
    pen = rule.expected * expected_dropout_penalty(X, A, B, rule.keep, rule.site, s)
    plain = mse(X @ W.T + s * ((x_in @ A.T) * mask) @ B.T) + pen
    adapted = mse(X @ W.T + s * allora.branch(x_in, A, B, eta=rule.eta, bottleneck_mask=mask)) + pen
    return plain, adapted


def _grads(A, B, X, Y, W, rule, key, s=1.0):
    """Closed-form gradients (∂A, ∂B) of one step; ALLoRA multiplies the error by ``c`` per output unit."""
    n, d_in = X.shape
    x_in, mask = _inputs(X, _masks(key, rule.keep, n, d_in, A.shape[0], X.dtype), rule)
    H = (x_in @ A.T) * mask                                    # (n, r)
    E = (X @ W.T + s * H @ B.T - Y) / n                         # (n, d_out)
    c = jax.lax.rsqrt(allora.product_row_norms(A, B) + 1.0 / jnp.square(rule.eta))
    E = E * jnp.where(rule.allora > 0.5, c, jnp.ones_like(c))[None, :]
    gB = s * E.T @ H
    gA = s * ((E @ B) * mask).T @ x_in
    lam = rule.expected * (1.0 - rule.keep) / rule.keep * s * s / n
    d = jnp.sum(jnp.square(X), 0)                               # input site: ∂P/∂(BA) = λ' (BA) diag(d)
    Gp = (B @ A) * d[None, :]
    h = jnp.sum(jnp.square(X @ A.T), 0)                         # bottleneck site
    b = jnp.sum(jnp.square(B), 0)
    bottleneck = rule.site > 0.5
    gA = gA + lam * jnp.where(bottleneck, (b[:, None] * A) @ (X.T @ X), B.T @ Gp)
    gB = gB + lam * jnp.where(bottleneck, B * h[None, :], Gp @ A.T)
    return gA, gB


def gradients(A, B, X, Y, W, rule: Rule, key=None, s=1.0):
    """The pair ``(∂̃L/∂A, ∂̃L/∂B)`` one step of ``rule`` starts from (before scaled GD's preconditioner and
    Adam): the plain gradients, or ALLoRA's (the error multiplied by ``c`` per output unit) when
    ``rule.allora``; dropout as in ``rule`` (``key`` draws the masks). NumPy in, NumPy out (JAX's dtype)."""
    dt = jnp.zeros(()).dtype
    rule = Rule(*(jnp.asarray(v, dt) for v in rule))
    key = jax.random.key(0, impl="rbg") if key is None else key
    gA, gB = _grads_jit(jnp.asarray(A, dt), jnp.asarray(B, dt), jnp.asarray(X, dt), jnp.asarray(Y, dt),
                        jnp.asarray(W, dt), rule, key, float(s))
    return np.asarray(gA), np.asarray(gB)


_grads_jit = jax.jit(_grads, static_argnums=7)


def _inv(M, delta):
    return jnp.linalg.inv(M + delta * jnp.eye(M.shape[0], dtype=M.dtype))


_ADAM = optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8)  # Rule.adam = 1: optax's Adam on the (A, B) pair


def _run(X, Y, W, A0, B0, rule, key, *, s, steps, stride):
    def step(carry, t):
        A, B, adam_state, diverged = carry
        gA, gB = _grads(A, B, X, Y, W, rule, jax.random.fold_in(key, t), s)
        pA = _inv(B.T @ B, rule.delta) @ gA
        pB = gB @ _inv(A @ A.T, rule.delta)
        gA, gB = jnp.where(rule.scaled > 0.5, pA, gA), jnp.where(rule.scaled > 0.5, pB, gB)
        (aA, aB), adam_state = _ADAM.update((gA, gB), adam_state)
        uA = jnp.where(rule.adam > 0.5, aA, gA)
        uB = jnp.where(rule.adam > 0.5, aB, gB)
        nA, nB = A - rule.lr * uA, B - rule.lr * rule.b_ratio * uB
        ok = (diverged < 0) & jnp.all(jnp.isfinite(nA)) & jnp.all(jnp.isfinite(nB))
        diverged = jnp.where((diverged < 0) & ~ok, t.astype(diverged.dtype), diverged)
        A, B = jnp.where(ok, nA, A), jnp.where(ok, nB, B)
        return (A, B, adam_state, diverged), None

    def block(carry, i):
        carry, _ = jax.lax.scan(step, carry, (i * stride + jnp.arange(stride)).astype(jnp.int32))
        return carry, (carry[0], carry[1])

    carry = (A0, B0, _ADAM.init((A0, B0)), jnp.array(-1, jnp.int32))
    carry, (As, Bs) = jax.lax.scan(block, carry, jnp.arange(steps // stride))
    return (jnp.concatenate([A0[None], As]), jnp.concatenate([B0[None], Bs]), carry[-1])


@functools.lru_cache(maxsize=None)
def _compiled(s, steps, stride, per_run_data=False):
    fn = functools.partial(_run, s=s, steps=steps, stride=stride)
    data_axis = 0 if per_run_data else None
    return jax.jit(jax.vmap(fn, in_axes=(data_axis, data_axis, 0, 0, 0, 0, 0)))


class Trajectories(NamedTuple):
    """``A (R, records, r, d_in)``, ``B (R, records, d_out, r)``, ``steps (records,)``, ``diverged (R,)``."""

    A: Any
    B: Any
    steps: Any
    diverged: Any


def simulate(X, Y, W, A0, B0, rules: Rule, seeds, *, s=1.0, steps=1000, stride=10) -> Trajectories:
    """Train ``R`` runs of one LoRA layer ``Y ≈ X (W + sBA)ᵀ`` (mean loss) in one compiled, vmapped call.

    Every run has its own frozen weight ``W (R, d_out, d_in)``, start ``A0 (R, r, d_in)``, ``B0 (R, d_out, r)``,
    update rule (a :class:`Rule` of ``(R,)`` arrays) and seed (dropout masks), so LoRA, LoRA+, scaled GD,
    ALLoRA, Adam, init_b and PiSSA starts, dropout sites and drop rates share one compilation. ``X (n, d_in)``
    and ``Y (n, d_out)`` are shared by every run, or given per run as ``X (R, n, d_in)``, ``Y (R, n, d_out)``
    (several task draws of the same shapes in one call). The rules are checked against
    :class:`toyllora.train.Trainer`, :mod:`toyllora.optim` and :mod:`toyllora.allora` in
    ``tests/test_dynamics.py``.

    Returns:
      :class:`Trajectories` with records at step 0 and every ``stride`` steps (NumPy arrays).
    """
    if steps % stride or steps < 1:
        raise ValueError(f"stride: must divide steps = {steps} (both >= 1), got {stride}")
    R = np.shape(A0)[0]
    per_run = np.ndim(X) == 3
    if per_run and (np.shape(X)[0] != R or np.ndim(Y) != 3 or np.shape(Y)[:2] != np.shape(X)[:2]):
        raise ValueError(f"X, Y: per-run data need X (R, n, d_in) and Y (R, n, d_out) with R = {R} runs, got "
                         f"{np.shape(X)}, {np.shape(Y)}")
    bucket = RUN_BUCKET * -(-R // RUN_BUCKET)  # pad the runs (wrapping) so most calls share one compile
    idx = np.arange(bucket) % R
    X, Y = (jnp.asarray(np.asarray(X)[idx]), jnp.asarray(np.asarray(Y)[idx])) if per_run else (jnp.asarray(X),
                                                                                                jnp.asarray(Y))
    W, A0, B0 = (jnp.asarray(np.asarray(a)[idx], dtype=X.dtype) for a in (W, A0, B0))
    rules = Rule(*(jnp.asarray(np.broadcast_to(np.asarray(v, dtype=np.float64), (R,))[idx], dtype=X.dtype)
                   for v in rules))
    seeds = np.broadcast_to(np.asarray(seeds), (R,))[idx]
    keys = jax.vmap(lambda k: jax.random.key(k, impl="rbg"))(jnp.asarray(seeds, dtype=jnp.uint32))  # fast compile
    As, Bs, div = _compiled(float(s), int(steps), int(stride), per_run)(X, Y, W, A0, B0, rules, keys)
    return Trajectories(np.asarray(As)[:R], np.asarray(Bs)[:R], np.arange(steps // stride + 1) * stride,
                        np.asarray(div)[:R])


RUN_BUCKET = 64


# -- What each update rule conserves under gradient flow ---------------------------------------------------


def balance_matrix(A, B, lr_a=1.0, lr_b=1.0):
    """``Q = AAᵀ/η_a − BᵀB/η_b`` (``(..., r, r)``): conserved by the gradient flow of any loss of ``BA`` with
    learning rates ``η_a`` (A) and ``η_b`` (B) — LoRA (``η_a = η_b``: Du, Hu & Lee 2018, arXiv:1806.00900),
    LoRA+ (``η_b = ratio · η_a``) and ALLoRA under SGD (its factor ``c`` multiplies ``G = ∂L/∂(BA)``, which
    both factor gradients share).

    Proof: ``∂L/∂A = BᵀG``, ``∂L/∂B = GAᵀ``, so ``d(AAᵀ)/dt = −η_a (BᵀGAᵀ + AGᵀB)`` and
    ``d(BᵀB)/dt = −η_b (BᵀGAᵀ + AGᵀB)``; dividing by the rates makes them equal.
    """
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    return (np.einsum("...kj,...lj->...kl", A, A) / lr_a - np.einsum("...ik,...il->...kl", B, B) / lr_b)


def scaled_gd_invariant(A, B, delta):
    """``log det(AAᵀ + δI) − log det(BᵀB + δI)`` (``(...,)``): conserved by the flow of scaled GD
    (Zhang & Pilanci 2024, ``dA = −(BᵀB + δI)⁻¹ ∂L/∂A``, ``dB = −∂L/∂B (AAᵀ + δI)⁻¹``), which does not conserve
    ``AAᵀ − BᵀB``.

    Proof: with ``K = AAᵀ``, ``J = BᵀB``, ``M = BᵀGAᵀ``: ``tr((K+δ)⁻¹ dK) = −2 tr((K+δ)⁻¹(J+δ)⁻¹M)`` and
    ``tr((J+δ)⁻¹ dJ) = −2 tr((J+δ)⁻¹ M (K+δ)⁻¹)``, equal by the cyclic property of the trace.
    """
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    r = A.shape[-2]
    K = np.einsum("...kj,...lj->...kl", A, A) + delta * np.eye(r)
    J = np.einsum("...ik,...il->...kl", B, B) + delta * np.eye(r)
    return np.linalg.slogdet(K)[1] - np.linalg.slogdet(J)[1]


def conservation_violation(A, B, *, lr_a=1.0, lr_b=1.0, scaled_delta=None):
    """How far a trajectory is from conserving its rule's invariant, relative to how much its parts moved.

    ``A (..., records, r, d_in)``, ``B (..., records, d_out, r)``. For LoRA, LoRA+ and ALLoRA (``scaled_delta``
    None): ``||ΔQ|| / (||Δ(AAᵀ)||/η_a + ||Δ(BᵀB)||/η_b)`` with ``Δ`` the change since record 0 and ``Q`` of
    :func:`balance_matrix`; for scaled GD: ``|ΔΦ| / (|Δ log det(AAᵀ+δ)| + |Δ log det(BᵀB+δ)|)`` with ``Φ`` of
    :func:`scaled_gd_invariant`. Scale-free, in [0, 1]: 0 when the two parts moved by the same amount (the
    invariant kept), 1 when only one moved; 0/0 (nothing moved) is 0.
    """
    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    if scaled_delta is None:
        AA = np.einsum("...kj,...lj->...kl", A, A) / lr_a
        BB = np.einsum("...ik,...il->...kl", B, B) / lr_b
        dA, dB = AA - AA[..., :1, :, :], BB - BB[..., :1, :, :]
        num = np.linalg.norm(dA - dB, axis=(-2, -1))
        den = np.linalg.norm(dA, axis=(-2, -1)) + np.linalg.norm(dB, axis=(-2, -1))
    else:
        r = A.shape[-2]
        ka = np.linalg.slogdet(np.einsum("...kj,...lj->...kl", A, A) + scaled_delta * np.eye(r))[1]
        kb = np.linalg.slogdet(np.einsum("...ik,...il->...kl", B, B) + scaled_delta * np.eye(r))[1]
        dA, dB = ka - ka[..., :1], kb - kb[..., :1]
        num, den = np.abs(dA - dB), np.abs(dA) + np.abs(dB)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def dropout_fixed_point(sigmas, keep, site, rank):
    """Singular values of the minimizer of the expected-dropout loss on the whitened toy (XᵀX = nI, s = 1).

    The expected loss is ``½||BA − T||² + P`` with ``λ = (1 − q)/q``: input dropout ``P = (λ/2)||BA||²``, so the
    minimizer is ``q·T`` (restricted to the top ``rank`` modes); bottleneck dropout
    ``P = (λ/2) Σ_k ||A_k||² ||B_{:,k}||²``, whose smallest value over factorizations of ``M = BA`` is
    ``(λ/2r)||M||_*²`` (Mianjy, Arora & Vidal 2018, arXiv:1806.09777), so ``m_i = σ_i − (λ/r) Σ_j m_j`` on the
    active modes: with ``k`` active, ``Σ m = Σ_{i<=k} σ_i / (1 + λk/r)``.

    Returns ``m`` (same length as ``sigmas``, descending input assumed, zeros beyond ``rank``).
    """
    sig = np.asarray(sigmas, np.float64)
    lam = (1.0 - float(keep)) / float(keep)
    m = np.zeros_like(sig)
    top = min(int(rank), sig.size)
    if site == "input":
        m[:top] = float(keep) * sig[:top]
        return m
    if site != "bottleneck":
        raise ValueError(f"site: unknown value {site!r}; allowed: ('input', 'bottleneck')")
    for k in range(top, 0, -1):
        total = sig[:k].sum() / (1.0 + lam * k / rank)
        cand = sig[:k] - lam * total / rank
        if cand.min() > 0:
            m[:k] = cand
            return m
    return m


def fixed_point_progress(sigmas, keep, site, rank) -> float:
    """The learned fraction ``<M, T>/||T||²`` of :func:`dropout_fixed_point` (aligned with ``T``'s modes)."""
    sig = np.asarray(sigmas, np.float64)
    return float(np.sum(sig * dropout_fixed_point(sig, keep, site, rank)) / np.sum(sig * sig))
