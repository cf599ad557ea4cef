"""The exact Hessian of the one-layer LoRA loss with respect to the pair (A, B), its inertia and conditioning.

The loss of the adapter branch on rows ``X (n, d_in)`` with branch target ``T = Y − X W_frozenᵀ`` is::

    L(A, B) = (c/2) ||X (s B A)ᵀ − T||²_F  +  expected dropout penalty (optional)

with ``c = 1/n`` (``reduction="mean"``, the toyllora default :func:`toyllora.models.mse`) or ``c = 1``
(``"sum"``). Parameters are flattened row-major as ``θ = [vec(A), vec(B)]`` (``A (r, d_in)`` first).
With ``Σ = c XᵀX``, ``E = X (sBA)ᵀ − T`` and ``G = c Eᵀ X`` (= ∂L/∂(sBA)) the blocks are::

    H_AA[(k,j),(k',j')] = s² (BᵀB)[k,k'] Σ[j,j']                     = s² (BᵀB ⊗ Σ)
    H_BB[(i,l),(i',l')] = s² δ_ii' (A Σ Aᵀ)[l,l']                    = s² (I ⊗ A Σ Aᵀ)
    H_AB[(k,j),(i,l)]   = s² B[i,k] (A Σ)[l,j] + s G[i,j] δ_kl

(``proofs/zeroinit_hessian.md``). At the LoRA start ``B = 0`` the spectrum is known in closed form
(:func:`spectrum_at_zero`) and its inertia is :func:`predicted_inertia`.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X, T, A = rng.normal(size=(6, 3)), rng.normal(size=(6, 2)), rng.normal(size=(1, 3))
    >>> B = np.zeros((2, 1))
    >>> H = hessian(A, B, X, T)
    >>> H.shape
    (5, 5)
    >>> inertia(np.linalg.eigvalsh(np.asarray(H, dtype=np.float64)))   # (negative, zero, positive)
    (2, 1, 2)
    >>> predicted_inertia(d_in=3, d_out=2, rank=1, rank_g=2, rank_m=1)
    (2, 1, 2)

References:
  Huang & Balestriero, arXiv:2410.09692 (the "degenerate start" of the OpenReview version);
  Haynsworth (1968) inertia additivity; Kawaguchi, "Deep learning without poor local minima",
  arXiv:1605.07110 (saddles of linear networks).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from toyllora.conventions import DROPOUT_SITES

MAX_PARAMS = 2048  # r·(d_in + d_out) above this: a (P, P) dense Hessian is refused (ValueError)
REDUCTIONS = ("mean", "sum")


def default_rtol(dtype=None) -> float:
    """Relative tolerance for counting an eigenvalue as zero: ``|λ| <= rtol · max|λ|``.

    1e-5 for a float32 Hessian, 1e-9 for float64 (the rounding of ``jax.hessian`` is ~1e-7 / 1e-15 relative).
    """
    dtype = jnp.zeros(()).dtype if dtype is None else jnp.dtype(dtype)
    return 1e-9 if dtype == jnp.float64 else 1e-5


def _check(A, B, X, T, reduction, keep, site, max_params=None):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: unknown value {reduction!r}; allowed: {REDUCTIONS}")
    if site not in DROPOUT_SITES:
        raise ValueError(f"site: unknown value {site!r}; allowed: {DROPOUT_SITES}")
    if not (0.0 < float(keep) <= 1.0):
        raise ValueError(f"keep: dropout keep probability must lie in (0, 1], got {keep!r}")
    r, d_in = A.shape
    d_out = B.shape[0]
    if B.shape != (d_out, r) or X.shape[1] != d_in or T.shape != (X.shape[0], d_out):
        raise ValueError(f"A, B, X, T: need A (r, d_in), B (d_out, r), X (n, d_in), T (n, d_out); got "
                         f"{A.shape}, {B.shape}, {X.shape}, {T.shape}")
    if max_params is not None and r * (d_in + d_out) > max_params:
        raise ValueError(f"max_params: the exact Hessian is limited to r·(d_in + d_out) <= {max_params} "
                         f"parameters (a dense (P, P) matrix); got P = {r * (d_in + d_out)} "
                         f"(r={r}, d_in={d_in}, d_out={d_out}); use smaller sizes or raise max_params")


def flatten(A, B):
    """``θ = [vec(A), vec(B)]``, row-major."""
    return jnp.concatenate([jnp.ravel(A), jnp.ravel(B)])


def unflatten(theta, rank: int, d_in: int, d_out: int):
    """Inverse of :func:`flatten`: ``(A (r, d_in), B (d_out, r))``."""
    k = rank * d_in
    return theta[:k].reshape(rank, d_in), theta[k:].reshape(d_out, rank)


def _c(n, reduction):
    return 1.0 / n if reduction == "mean" else 1.0


def loss(A, B, X, T, *, s=1.0, reduction="mean", keep=1.0, site="bottleneck"):
    """``(c/2)||X(sBA)ᵀ − T||²`` plus the expected penalty of inverted dropout (keep q) at ``site``.

    Penalties, with ``λ = (1−q)/q``: bottleneck ``(cλs²/2) Σ_k ||X A_kᵀ||² ||B_{:,k}||²``; input
    ``(cλs²/2) Σ_j ||X_{:,j}||² ||(BA)_{:,j}||²``; output ``(cλs²/2) ||X (BA)ᵀ||²``.
    """
    lam = (1.0 - keep) / keep
    lams = jnp.asarray([lam * (site == name) for name in DROPOUT_SITES])
    return _loss(A, B, X, T, _c(X.shape[0], reduction), lams, s)


def _loss(A, B, X, T, c, lams, s):
    """The loss with ``c`` and the per-site dropout weights ``lams`` (input, bottleneck, output) as arrays;
    zero rows of ``X`` and ``T`` contribute nothing (padding)."""
    E = s * (X @ A.T @ B.T) - T
    BA = B @ A
    pen = (lams[0] * jnp.sum(jnp.sum(jnp.square(X), 0) * jnp.sum(jnp.square(BA), 0))
           + lams[1] * jnp.sum(jnp.sum(jnp.square(X @ A.T), 0) * jnp.sum(jnp.square(B), 0))
           + lams[2] * jnp.sum(jnp.square(X @ BA.T)))
    return 0.5 * c * (jnp.sum(E * E) + s * s * pen)


def hessian(A, B, X, T, *, s=1.0, reduction="mean", keep=1.0, site="bottleneck", max_params=MAX_PARAMS):
    """The exact Hessian ``∂²L/∂θ²`` (P × P, P = r(d_in + d_out)) by ``jax.hessian`` on the flat pair.

    Raises ``ValueError`` (naming ``max_params``) when P exceeds ``max_params`` instead of allocating.
    """
    A, B, X, T = (jnp.asarray(a) for a in (A, B, X, T))
    _check(A, B, X, T, reduction, keep, site, max_params)
    r, d_in = A.shape
    n = X.shape[0]
    bucket = max(64, 1 << (n - 1).bit_length())  # pad rows (zeros add nothing): one compile per bucket
    Xp = jnp.zeros((bucket, d_in), X.dtype).at[:n].set(X)
    Tp = jnp.zeros((bucket, T.shape[1]), T.dtype).at[:n].set(T)
    lam = (1.0 - float(keep)) / float(keep)
    lams = jnp.asarray([lam * (site == name) for name in DROPOUT_SITES], dtype=X.dtype)
    c = jnp.asarray(_c(n, reduction), dtype=X.dtype)
    s = jnp.asarray(s, dtype=X.dtype)
    return _hessian_flat(flatten(A, B), Xp, Tp, c, lams, s, dims=(r, d_in, B.shape[0]))


@functools.partial(jax.jit, static_argnames=("dims",))
def _hessian_flat(theta, X, T, c, lams, s, *, dims):
    return jax.hessian(lambda th: _loss(*unflatten(th, *dims), X, T, c, lams, s))(theta)


def factor_blocks(A, B, X, T, *, s=1.0, reduction="mean"):
    """The closed-form blocks ``{"AA", "AB", "BB"}`` of the Hessian (no dropout) at any point (A, B).

    ``AA`` is ``(r·d_in, r·d_in)``, ``AB`` is ``(r·d_in, d_out·r)``, ``BB`` is ``(d_out·r, d_out·r)``.
    """
    A, B, X, T = (jnp.asarray(a) for a in (A, B, X, T))
    _check(A, B, X, T, reduction, 1.0, "bottleneck")
    c = jnp.asarray(_c(X.shape[0], reduction), X.dtype)
    return _blocks(A, B, X, T, c, jnp.asarray(s, X.dtype))


@jax.jit
def _blocks(A, B, X, T, c, s):
    r, d_in = A.shape
    d_out = B.shape[0]
    Sig = c * (X.T @ X)
    G = c * (s * (X @ A.T @ B.T) - T).T @ X
    AA = s * s * jnp.kron(B.T @ B, Sig)
    BB = s * s * jnp.kron(jnp.eye(d_out, dtype=A.dtype), A @ Sig @ A.T)
    AB = (s * s * jnp.einsum("ik,lj->kjil", B, A @ Sig)
          + s * jnp.einsum("ij,kl->kjil", G, jnp.eye(r, dtype=A.dtype)))
    return {"AA": AA, "AB": AB.reshape(r * d_in, d_out * r), "BB": BB}


def assemble(blocks):
    """The full symmetric Hessian from its blocks."""
    return jnp.block([[blocks["AA"], blocks["AB"]], [blocks["AB"].T, blocks["BB"]]])


def _dropout_curvature(M, A, Sig, keep, site):
    if keep >= 1.0:
        return M
    lam = (1.0 - keep) / keep
    if site == "bottleneck":
        return M + lam * np.diag(np.diag(M))
    if site == "input":
        return M + lam * (A * np.diag(Sig)[None, :]) @ A.T
    return (1.0 + lam) * M


def spectrum_at_zero(A, X, T, *, s=1.0, reduction="mean", keep=1.0, site="bottleneck"):
    """The closed-form eigenvalues (ascending, float64) of the Hessian at ``B = 0`` (the LoRA start).

    With ``μ_k`` the eigenvalues of ``M = A Σ Aᵀ`` (plus the dropout curvature) and ``g_i`` the singular
    values of ``G = −c Tᵀ X`` (``min(d_in, d_out)`` of them): for every ``k`` and ``i <= min(d_in, d_out)``
    the pair ``(s²μ_k ± sqrt(s⁴μ_k² + 4 s² g_i²)) / 2``; for ``d_out > d_in`` also ``s²μ_k`` once per extra
    output row; for ``d_in > d_out`` a zero once per extra input column.
    """
    A, X, T = (np.asarray(a, dtype=np.float64) for a in (A, X, T))
    _check(A, np.zeros((T.shape[1], A.shape[0])), X, T, reduction, keep, site)
    r, d_in = A.shape
    d_out = T.shape[1]
    c = _c(X.shape[0], reduction)
    Sig = c * X.T @ X
    mu = np.linalg.eigvalsh(_dropout_curvature(A @ Sig @ A.T, A, Sig, keep, site))
    g = np.linalg.svd(c * T.T @ X, compute_uv=False)
    p, q = s * s * mu[:, None], s * g[None, :]
    root = np.sqrt(p * p + 4.0 * q * q)
    eigs = [((p + root) / 2).ravel(), ((p - root) / 2).ravel()]
    if d_out > d_in:
        eigs.append(np.repeat(s * s * mu, d_out - d_in))
    if d_in > d_out:
        eigs.append(np.zeros(r * (d_in - d_out)))
    return np.sort(np.concatenate(eigs))


def predicted_inertia(*, d_in: int, d_out: int, rank: int, rank_g: int, rank_m: int, init: str = "init_a"):
    """``(negative, zero, positive)`` eigenvalue counts of the Hessian at the start, from dimensions and ranks.

    ``init_a`` (A random, B = 0): with ``ρ = rank(G) = rank(XᵀT)`` and ``m = rank(M) = rank(X Aᵀ)``::

        negative = r ρ,   positive = r ρ + m (d_out − ρ),   zero = r (d_in − ρ) + (r − m)(d_out − ρ).

    ``init_b`` (B random, A = 0), valid when ``BᵀB ⊗ Σ`` is positive definite (B full column rank and
    ``rank(X) = d_in``; ``rank_m`` is then ``r``): ``(r ρ, r (d_out − ρ), r d_in)``.
    """
    r, rho, m = rank, rank_g, rank_m
    if not (0 <= rho <= min(d_in, d_out) and 0 <= m <= r):
        raise ValueError(f"rank_g, rank_m: need 0 <= rank_g <= min(d_in, d_out) and 0 <= rank_m <= rank, "
                         f"got {rank_g}, {rank_m}")
    if init == "init_a":
        return r * rho, r * (d_in - rho) + (r - m) * (d_out - rho), r * rho + m * (d_out - rho)
    if init == "init_b":
        if m != r:
            raise ValueError("rank_m: the init_b formula needs BᵀB ⊗ Σ positive definite (rank_m = rank)")
        return r * rho, r * (d_out - rho), r * d_in
    raise ValueError(f"init: unknown value {init!r}; allowed: ('init_a', 'init_b')")


def numerical_rank(M, rtol=None) -> int:
    """Rank of a matrix: singular values above ``rtol · max`` (float64 SVD)."""
    sv = np.linalg.svd(np.asarray(M, dtype=np.float64), compute_uv=False)
    if sv.size == 0 or sv[0] == 0.0:
        return 0
    rtol = 1e-9 if rtol is None else rtol
    return int(np.sum(sv > rtol * sv[0]))


def inertia(eigs, rtol=None):
    """``(negative, zero, positive)`` counts, an eigenvalue being zero when ``|λ| <= rtol · max|λ|``.

    ``rtol`` defaults to :func:`default_rtol` of JAX's default float dtype.

    >>> inertia(np.array([-2.0, 1e-12, 0.0, 3.0]), rtol=1e-9)
    (1, 2, 1)
    """
    eigs = np.asarray(eigs, dtype=np.float64)
    rtol = default_rtol() if rtol is None else rtol
    scale = np.max(np.abs(eigs)) if eigs.size else 0.0
    zero = np.abs(eigs) <= rtol * scale
    return int(np.sum((eigs < 0) & ~zero)), int(np.sum(zero)), int(np.sum((eigs > 0) & ~zero))


def condition_number(eigs, rtol=None) -> float:
    """``max|λ| / min|λ|`` over the non-zero eigenvalues (inf when all are zero).

    >>> condition_number(np.array([-4.0, 0.0, 2.0]), rtol=1e-9)
    2.0
    """
    eigs = np.abs(np.asarray(eigs, dtype=np.float64))
    rtol = default_rtol() if rtol is None else rtol
    nz = eigs[eigs > rtol * (eigs.max() if eigs.size else 0.0)]
    return float(nz.max() / nz.min()) if nz.size else float("inf")


# -- float64 closed forms (NumPy): independent of JAX_ENABLE_X64 -----------------------------------------


def hessian64(A, B, X, T, *, s=1.0, reduction="mean", keep=1.0, site="bottleneck", row_weights=None):
    """The exact Hessian of :func:`loss` at any point ``(A, B)``, in closed form and NumPy float64.

    The same matrix as :func:`hessian` (flattening ``θ = [vec(A), vec(B)]`` row-major), computed without
    autodiff so that eigenvalues near the zero tolerance are resolved in float64 whatever JAX's default
    precision is (``tests/test_hessian.py`` checks it against ``jax.hessian``).

    ``row_weights`` (``w``, one per output unit, default all 1) weights the squared error of each output:
    ``(c/2) Σ_i w_i ||E_{:,i}||²`` — with ``w = c`` ALLoRA's per-row factor held fixed, whose update field is
    the gradient of this loss (its Jacobian is this Hessian). Blocks, with ``Wd = diag(w)``::

        H_AA = s² (BᵀWdB ⊗ Σ),   H_BB = s² (Wd ⊗ AΣAᵀ),
        H_AB[(k,j),(i,l)] = s² (WdB)[i,k] (AΣ)[l,j] + s (WdG)[i,j] δ_kl,

    plus the expected-dropout penalty (not weighted): input and output penalties are least-squares terms
    of ``BA`` with zero target (the same blocks with ``Σ → cλ diag(XᵀX)`` or ``cλ XᵀX``); the bottleneck
    penalty ``(cλs²/2) Σ_k h_k b_k`` (``h_k = A_k XᵀX A_kᵀ``, ``b_k = ||B_{:,k}||²``) adds
    ``cλs² b_k XᵀX`` to the (A_k, A_k) block, ``cλs² h_k I`` to the (B_{:,k}, B_{:,k}) block and
    ``2cλs² B[i,k] (XᵀX A_kᵀ)_j`` to the (A[k,j], B[i,k]) entries.
    """
    A, B, X, T = (np.asarray(a, dtype=np.float64) for a in (A, B, X, T))
    _check(A, B, X, T, reduction, keep, site)
    r, d_in = A.shape
    d_out = B.shape[0]
    w = np.ones(d_out) if row_weights is None else np.asarray(row_weights, np.float64).reshape(d_out)
    c = _c(X.shape[0], reduction)
    H = _ls_blocks(A, B, c * X.T @ X, c * (s * X @ A.T @ B.T - T).T @ X, s, w)
    lam = (1.0 - float(keep)) / float(keep)
    if lam > 0.0:
        XtX = X.T @ X
        if site in ("input", "output"):
            Sig = c * lam * (np.diag(np.diag(XtX)) if site == "input" else XtX)
            H = H + _ls_blocks(A, B, Sig, s * (B @ A) @ Sig, s, np.ones(d_out))
        else:
            k_a = r * d_in
            h = np.einsum("kj,jl,kl->k", A, XtX, A)
            b = np.sum(B * B, axis=0)
            g = c * lam * s * s
            P = np.zeros_like(H)
            for k in range(r):
                ia = slice(k * d_in, (k + 1) * d_in)
                P[ia, ia] += g * b[k] * XtX
                ib = k_a + np.arange(d_out) * r + k          # B[i, k] for every i
                P[ib, ib] += g * h[k]
                cross = 2.0 * g * np.outer(XtX @ A[k], B[:, k])  # (d_in, d_out): A[k, j] × B[i, k]
                P[ia, ib] += cross
                P[ib, ia] += cross.T
            H = H + P
    return H


def _ls_blocks(A, B, Sig, G, s, w):
    """The Hessian of ``½ Σ_i w_i ||row i of (sBA − target) in the Σ metric||²`` with gradient ``G`` (float64)."""
    r, d_in = A.shape
    d_out = B.shape[0]
    WB = w[:, None] * B
    AA = s * s * np.kron(B.T @ WB, Sig)
    BB = s * s * np.kron(np.diag(w), A @ Sig @ A.T)
    AB = (s * s * np.einsum("ik,lj->kjil", WB, A @ Sig)
          + s * np.einsum("ij,kl->kjil", w[:, None] * G, np.eye(r)))
    AB = AB.reshape(r * d_in, d_out * r)
    return np.block([[AA, AB], [AB.T, BB]])


def full_ft_spectrum(X, d_out: int, *, reduction="mean"):
    """Eigenvalues (ascending, float64) of the Hessian of ``(c/2)||X ΔWᵀ − T||²`` in ``ΔW`` (full fine-tuning).

    The Hessian is ``I_{d_out} ⊗ c XᵀX`` at every point: each eigenvalue of ``c XᵀX`` ``d_out`` times, so
    ``d_out (d_in − rank X)`` zeros (all of them when ``n < d_in``) whatever the target.
    """
    X = np.asarray(X, dtype=np.float64)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: unknown value {reduction!r}; allowed: {REDUCTIONS}")
    ev = np.linalg.eigvalsh(_c(X.shape[0], reduction) * X.T @ X)
    return np.sort(np.repeat(ev, int(d_out)))


def spectrum_summary(eigs, rtol: float = 1e-9) -> dict:
    """Counts and conditioning of a float64 spectrum, with how well the zero tolerance separates it.

    ``zero_gap`` is the smallest non-zero ``|λ|/max|λ|`` divided by the largest zero one (inf when there is
    no zero): a count is only meaningful when this is large (the zeros are rounding, the rest is not).
    """
    ev = np.asarray(eigs, dtype=np.float64)
    neg, zero, pos = inertia(ev, rtol)
    scale = float(np.abs(ev).max()) if ev.size else 0.0
    rel = np.abs(ev) / scale if scale > 0 else np.zeros_like(ev)
    zeros, nonzeros = rel[rel <= rtol], rel[rel > rtol]
    gap = float(nonzeros.min() / zeros.max()) if zeros.size and nonzeros.size and zeros.max() > 0 else float("inf")
    return {"negative": neg, "zero": zero, "positive": pos, "params": int(ev.size),
            "condition": condition_number(ev, rtol), "max_abs_eig": scale,
            "min_nonzero_rel": float(nonzeros.min()) if nonzeros.size else 0.0,
            "max_zero_rel": float(zeros.max()) if zeros.size else 0.0, "zero_gap": gap}
