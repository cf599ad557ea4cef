"""Flaw 3 — the ripple effect of the scaling factor across the layers of a deep linear network.

The network is :class:`toyllora.models.MultilinearLoRA` with square layers of one width ``d``::

    f_L(x) = M_L n(... n(M_1 x)),      M_l = W_l + s·B_l A_l      (n = identity, RMSNorm or LayerNorm)

Here the layers are stacked arrays, ``Ws (L, d, d)``, ``As (L, r, d)``, ``Bs (L, d, r)``, with ``s`` a
(possibly traced) scalar, so that one call gives every depth ``1..L`` at once (the depth-``L'`` network is
the first ``L'`` layers) and ``jit``/``vmap`` run over ``s``. :func:`as_model` turns the stack into the
model's own ``(model, frozen, params)``; the tests check that both forwards agree.

The paper's chain (arXiv:2410.09692, Sec. 3.3), with spectral norms ``||·||``::

    ||f_L(x)|| <= ||M_L ... M_1|| ||x||                       (operator norm of the product)
              <= Π_l ||M_l|| ||x||                             (submultiplicativity)
              <= Π_l (||W_l|| + |s| ||B_l A_l||) ||x||          (triangle inequality; the paper's first step)
              <= C (1 + |s| m̄)^L ||x||                         (AM-GM; the paper's second step)

The last step holds with ``C = Π_l ||W_l||`` and ``m̄ = (1/L) Σ_l ||B_l A_l|| / ||W_l||`` (the arithmetic
mean of the ratios, by AM-GM); it fails in general for other readings such as the ratio of the means.
A lower bound for square layers: ``||f_L(x)|| >= Π_l σ_min(M_l) ||x||`` and
``σ_min(M_l) >= σ_min(W_l) − |s| ||B_l A_l||``.

Example:
    >>> from toyllora.theory import ripple
    >>> Ws, As, Bs = ripple.network(0, "aligned", L=3, d=6, rank=2, ratio=0.5)
    >>> c = ripple.bound_chain(Ws, As, Bs, s=2.0)
    >>> bool(abs(c["realized_worst"][-1] / c["amgm"][-1] - 1) < 1e-4)   # the aligned net attains the bound
    True
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from toyllora import data as data_lib
from toyllora import lora, models
from toyllora.config import LoraConfig

NORMS = models.NORMS
KINDS = ("aligned", "random")


# -- the network ---------------------------------------------------------------------------------------
def _check_stack(Ws, As, Bs):
    if Ws.ndim != 3 or Ws.shape[1] != Ws.shape[2]:
        raise ValueError(f"Ws: must be a stack (L, d, d) of square layers, got shape {Ws.shape}")
    L, d, _ = Ws.shape
    if As.ndim != 3 or As.shape[0] != L or As.shape[2] != d:
        raise ValueError(f"As: must have shape (L, r, d) = ({L}, r, {d}), got {As.shape}")
    if Bs.shape != (L, d, As.shape[1]):
        raise ValueError(f"Bs: must have shape (L, d, r) = {(L, d, As.shape[1])}, got {Bs.shape}")


def merged(Ws, As, Bs, s):
    """The merged layers ``M_l = W_l + s·B_l A_l``, shape ``(L, d, d)`` (as :func:`toyllora.lora.merge`).

    Works on JAX arrays and, for the exact float64 evaluation of the bounds, on NumPy arrays.
    """
    _check_stack(Ws, As, Bs)
    return Ws + s * (Bs @ As)


def as_model(Ws, As, Bs, s, norm=None):
    """The same network as ``(MultilinearLoRA, frozen, params)`` (``s`` a Python number).

    >>> import jax.numpy as jnp
    >>> m, frozen, params = as_model(jnp.ones((2, 3, 3)), jnp.ones((2, 1, 3)), jnp.zeros((2, 3, 1)), 4.0)
    >>> m.cfg.s, len(params)
    (4.0, 2)
    """
    _check_stack(Ws, As, Bs)
    cfg = LoraConfig(rank=int(As.shape[1]), scaling=float(s))
    params = tuple(lora.LoraParams(A=A, B=B) for A, B in zip(As, Bs))
    return models.MultilinearLoRA(cfg=cfg, norm=norm), tuple(Ws), params


def normalize(h, kind, eps=1e-6):
    """:func:`toyllora.models.normalize` for JAX arrays; the same formula in NumPy for NumPy arrays."""
    if not isinstance(h, np.ndarray):
        return models.normalize(h, kind, eps)
    if kind is None:
        return h
    if kind == "layer":
        h = h - h.mean(axis=-1, keepdims=True)
    return h / np.sqrt(np.mean(np.square(h), axis=-1, keepdims=True) + eps)


def forward_prefixes(Ws, As, Bs, X, s, norm=None, eps=1e-6):
    """Outputs of every depth: ``out[L'-1] = f_{L'}(X)`` for ``L' = 1..L``; ``X (n, d)`` -> ``(L, n, d)``.

    Normalization (``None``, ``"rms"``, ``"layer"``; :func:`toyllora.models.normalize`, whose ``eps`` is the
    default here) sits between layers, as in :class:`toyllora.models.MultilinearLoRA`, so ``out[-1]`` equals
    that model's output. NumPy inputs are evaluated in NumPy (float64, nothing to compile), JAX inputs in JAX.
    """
    if norm not in NORMS:
        raise ValueError(f"norm: unknown value {norm!r}; allowed: {NORMS}")
    Ms = merged(Ws, As, Bs, s)
    h, outs = X, []
    for l, M in enumerate(Ms):
        h = (h if l == 0 else normalize(h, norm, eps)) @ M.T
        outs.append(h)
    return _xp(Ws).stack(outs)


def _xp(a):
    """NumPy for NumPy inputs (exact float64, nothing to compile), else jax.numpy (jit/vmap-able)."""
    return np if isinstance(a, np.ndarray) else jnp


def prefix_products(Ms):
    """``P_L' = M_L' ... M_1`` for every depth, ``(L, d, d)`` (NumPy or JAX arrays)."""
    xp = _xp(Ms)
    P, out = xp.eye(Ms.shape[-1], dtype=Ms.dtype), []
    for M in Ms:
        P = M @ P
        out.append(P)
    return xp.stack(out)


# -- norms and the chain of bounds -------------------------------------------------------------------------
def singular_values(M):
    """Singular values, descending, of a matrix or a stack of matrices (NumPy or JAX)."""
    return _xp(M).linalg.svd(M, compute_uv=False)


def spectral_norm(M):
    """``||M||_2`` (largest singular value), batched over leading axes."""
    return singular_values(M)[..., 0]


def bound_chain(Ws, As, Bs, s, X=None) -> dict:
    """Every step of the paper's chain, and the matching lower bounds, for every depth ``1..L``.

    NumPy inputs are evaluated in NumPy (what the claims use: exact float64, no compilation); JAX inputs in
    JAX (what the tests use, under jit, in float32 and float64). Returns a dict of ``(L,)`` arrays (entry
    ``L'-1`` is the depth-``L'`` network):

    * ``realized_worst``: ``||M_L'...M_1||`` = ``max_x ||f_L'(x)|| / ||x||``; ``realized_x`` (if ``X`` is
      given): the mean over the rows of ``X`` of ``||f_L'(x)|| / ||x||``;
    * ``merged_product``: ``Π ||M_l||``; ``triangle``: ``Π (||W_l|| + |s| ||B_l A_l||)`` (paper, step 1);
      ``amgm``: ``C (1 + |s| m̄)^L'`` with ``C = Π ||W_l||`` and ``m̄`` the mean of ``||B_l A_l|| / ||W_l||``
      over the first ``L'`` layers (paper, step 2); ``C`` and ``mbar`` themselves;
    * ``lower``: ``Π σ_min(M_l)`` (``<= ||f_L'(x)||/||x||`` for every x); ``lower_triangle``:
      ``Π max(σ_min(W_l) − |s| ||B_l A_l||, 0)``;
    * ``base_worst``: ``||W_L'...W_1||``; ``change_worst``: ``||M_L'...M_1 − W_L'...W_1||``, bounded by
      ``change_triangle`` = ``triangle − C`` <= ``change_amgm`` = ``C ((1 + |s| m̄)^L' − 1)``.
    """
    xp = _xp(Ws)
    Ms = merged(Ws, As, Bs, s)
    depth = xp.arange(1, Ws.shape[0] + 1, dtype=Ws.dtype)
    sv_M, sv_W = singular_values(Ms), singular_values(Ws)
    nW = sv_W[:, 0]
    nBA = spectral_norm(Bs @ As)
    P, Q = prefix_products(Ms), prefix_products(Ws)
    C = xp.cumprod(nW)
    mbar = xp.cumsum(nBA / nW) / depth
    triangle = xp.cumprod(nW + xp.abs(s) * nBA)
    amgm = C * (1.0 + xp.abs(s) * mbar) ** depth
    out = {
        "realized_worst": spectral_norm(P),
        "merged_product": xp.cumprod(sv_M[:, 0]),
        "triangle": triangle,
        "amgm": amgm,
        "C": C,
        "mbar": mbar,
        "lower": xp.cumprod(sv_M[:, -1]),
        "lower_triangle": xp.cumprod(xp.maximum(sv_W[:, -1] - xp.abs(s) * nBA, 0.0)),
        "base_worst": spectral_norm(Q),
        "change_worst": spectral_norm(P - Q),
        "change_triangle": triangle - C,
        "change_amgm": C * ((1.0 + xp.abs(s) * mbar) ** depth - 1.0),
    }
    if X is not None:
        outs = xp.einsum("lij,nj->lni", P, X)
        out["realized_x"] = xp.mean(xp.linalg.norm(outs, axis=-1) / xp.linalg.norm(X, axis=-1), axis=-1)
    return out


def ratio_of_means_bound(Ws, As, Bs, s):
    """A *wrong* reading of the paper's ``m̄`` (``mean ||B_l A_l|| / mean ||W_l||``), for the counterexample test.

    ``C (1 + |s| m̄)^L`` with this ``m̄`` is not an upper bound in general (see proofs/ripple_bound_chain.md).
    """
    nW, nBA = spectral_norm(Ws), spectral_norm(Bs @ As)
    return jnp.prod(nW) * (1.0 + jnp.abs(s) * jnp.mean(nBA) / jnp.mean(nW)) ** Ws.shape[0]


def growth_rate(values, depths=None):
    """Per-layer growth rate ``exp(slope)`` of a least-squares line through ``log(values)`` against depth.

    >>> round(growth_rate(np.array([2.0, 4.0, 8.0])), 6)
    2.0
    """
    values = np.asarray(values, dtype=np.float64)
    depths = np.arange(1, len(values) + 1) if depths is None else np.asarray(depths, dtype=np.float64)
    return float(np.exp(np.polyfit(depths, np.log(values), 1)[0]))


# -- constructions (NumPy float64 from a seeded Generator, as toyllora.data; JAX arrays out) ---------------
def _as_jax(*arrays):
    out = tuple(data_lib.as_float(a) for a in arrays)
    return out[0] if len(out) == 1 else out


def random_base(rng, L: int, d: int):
    """``W_l`` with i.i.d. ``N(0, 1/d)`` entries, ``(L, d, d)`` (NumPy float64; ``rng`` a NumPy Generator)."""
    return rng.standard_normal((L, d, d)) / np.sqrt(d)


def _orthogonal(rng, n, d):
    Q, R = np.linalg.qr(rng.standard_normal((n, d, d)))
    return Q * np.sign(np.diagonal(R, axis1=-2, axis2=-1))[:, None, :]


def chained_base(rng, L: int, d: int):
    """``W_l = Q_l diag(σ_l) Q_{l-1}ᵀ``: each layer's top output direction is the next layer's top input one.

    ``σ_l`` are the singular values of an ``N(0, 1/d)`` matrix (the spectrum of :func:`random_base`); ``Q_l``
    random orthogonal. With :func:`aligned_adapters` this network attains the whole chain of bounds.
    """
    Qs = _orthogonal(rng, L + 1, d)
    sig = np.linalg.svd(random_base(rng, L, d), compute_uv=False)
    return np.einsum("lij,lj,lkj->lik", Qs[1:], sig, Qs[:-1])


def aligned_adapters(Ws, rank: int, ratio):
    """Adapters along the top-``rank`` singular directions of each ``W_l``: ``B_l A_l = c_l U_r V_rᵀ``.

    ``c_l = ratio_l ||W_l||`` so that ``||B_l A_l|| / ||W_l|| = ratio_l`` (``ratio``: scalar or ``(L,)``, >= 0).
    Then ``||W_l + s B_l A_l|| = ||W_l|| + s ||B_l A_l||`` for ``s >= 0`` (the triangle step is attained).
    Returns ``(As, Bs)`` as NumPy float64.
    """
    Ws = np.asarray(Ws, np.float64)
    U, S, Vt = np.linalg.svd(Ws)
    ratio = np.broadcast_to(np.asarray(ratio, np.float64), (Ws.shape[0],))
    root = np.sqrt(ratio * S[:, 0])
    return Vt[:, :rank, :] * root[:, None, None], U[:, :, :rank] * root[:, None, None]


def random_adapters(rng, Ws, rank: int, ratio):
    """Gaussian factors rescaled so that ``||B_l A_l|| / ||W_l|| = ratio_l`` exactly (same bound as aligned).

    Returns ``(As, Bs)`` as NumPy float64.
    """
    Ws = np.asarray(Ws, np.float64)
    L, d, _ = Ws.shape
    A = rng.standard_normal((L, rank, d))
    B = rng.standard_normal((L, d, rank))
    ratio = np.broadcast_to(np.asarray(ratio, np.float64), (L,))
    norm = lambda M: np.linalg.svd(M, compute_uv=False)[..., 0]
    root = np.sqrt(ratio * norm(Ws) / norm(B @ A))
    return A * root[:, None, None], B * root[:, None, None]


def network(seed: int, kind: str, L: int, d: int, rank: int, ratio, *, numpy: bool = False):
    """``(Ws, As, Bs)`` of one of the two test networks, from ``np.random.default_rng(seed)``: JAX arrays in
    the default float dtype, or NumPy float64 with ``numpy=True``.

    ``kind="aligned"``: :func:`chained_base` with :func:`aligned_adapters` (attains the whole chain);
    ``kind="random"``: :func:`random_base` with :func:`random_adapters` (same ratios ``||B_l A_l||/||W_l||``).

    >>> Ws, As, Bs = network(0, "random", L=2, d=4, rank=1, ratio=0.1)
    >>> Ws.shape, As.shape, Bs.shape
    ((2, 4, 4), (2, 1, 4), (2, 4, 1))
    """
    if kind not in KINDS:
        raise ValueError(f"kind: unknown value {kind!r}; allowed: {KINDS}")
    for name, v in (("L", L), ("d", d), ("rank", rank)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"{name}: must be an integer >= 1, got {v!r}")
    if rank > d:
        raise ValueError(f"rank: must be <= d = {d}, got {rank}")
    rng = np.random.default_rng(seed)
    if kind == "aligned":
        Ws = chained_base(rng, L, d)
        As, Bs = aligned_adapters(Ws, rank, ratio)
    else:
        Ws = random_base(rng, L, d)
        As, Bs = random_adapters(rng, Ws, rank, ratio)
    return (Ws, As, Bs) if numpy else _as_jax(Ws, As, Bs)


def top_input(Ws):
    """The top right singular vector of ``W_1`` (the worst-case input of the aligned network), ``(d,)``."""
    return _as_jax(np.linalg.svd(np.asarray(Ws[0], np.float64))[2][0])


# -- coupling between layers -------------------------------------------------------------------------------
def _flatten(As, Bs):
    L = As.shape[0]
    return jnp.concatenate([As.reshape(L, -1), Bs.reshape(L, -1)], axis=1)   # (L, p)


def _unflatten(theta, As, Bs):
    L, r, d = As.shape
    return theta[:, : r * d].reshape(L, r, d), theta[:, r * d:].reshape(L, d, r)


def regression_loss(Ws, As, Bs, X, Y, s, norm=None):
    """``0.5 · mean_n ||f_L(x_n) − y_n||²`` (:func:`toyllora.models.mse`) of the full-depth network."""
    return models.mse(forward_prefixes(Ws, As, Bs, X, s, norm)[-1], Y)


def layer_blocks(Ws, As, Bs, X, Y, s, norm=None):
    """Frobenius norms ``||H_kl||_F`` of the blocks of the loss Hessian in the adapter parameters, ``(L, L)``.

    ``H_kl = ∂²ℒ / ∂θ_k ∂θ_l`` with ``θ_l = (A_l, B_l)``: how layer ``k``'s gradient moves, to first order,
    when layer ``l``'s adapter moves (``Δ∇_k ℒ ≈ H_kl Δθ_l``).
    """
    theta = _flatten(As, Bs)
    L, p = theta.shape

    def f(t):
        A, B = _unflatten(t.reshape(L, p), As, Bs)
        return regression_loss(Ws, A, B, X, Y, s, norm)

    H = jax.hessian(f)(theta.reshape(-1)).reshape(L, p, L, p)
    return jnp.sqrt(jnp.sum(jnp.square(H), axis=(1, 3)))


def coupling(blocks):
    """Normalized coupling ``κ_kl = ||H_kl|| / sqrt(||H_kk|| ||H_ll||)`` and its mean over ``k != l``.

    >>> k, mean = coupling(np.array([[4.0, 1.0], [1.0, 1.0]]))
    >>> float(mean), k.tolist()
    (0.5, [[1.0, 0.5], [0.5, 1.0]])
    """
    blocks = np.asarray(blocks, dtype=np.float64)
    diag = np.sqrt(np.diag(blocks))
    kappa = blocks / np.maximum(np.outer(diag, diag), 1e-300)
    L = len(blocks)
    mean = (kappa.sum() - np.trace(kappa)) / (L * (L - 1)) if L > 1 else 0.0
    return kappa, float(mean)
