"""MoRA: a square matrix ``M (r̂ × r̂)`` between parameter-free compression and decompression.

One adapted layer computes ``y = W x + f_decomp(M f_comp(x))`` (no scaling factor, ``M = 0`` at the
start so the output equals the base model). ``r̂`` is chosen so that MoRA trains as many parameters as
LoRA of rank ``r``: ``r̂² ≈ r (d_in + d_out)``, i.e. ``r̂ = round(sqrt(r (d_in + d_out)))`` (as the
official code). The operators (``x`` of length ``d_in``; inputs are wrapped around, ``x_{k mod d_in}``,
when ``d_in`` is not a multiple of ``r̂``, as the official code does):

* ``"rope"`` (Eq. 9, the paper's choice for small ranks and our default): cut the wrapped input into
  ``n = ceil(d_in / r̂)`` chunks ``x^(t)`` of length ``r̂``, rotate chunk ``t`` as RoPE does (pairs
  ``(j, j + ⌊r̂/2⌋)`` by the angle ``t · 10000^(−2j/r̂)``; for odd ``r̂`` the last entry is left as is),
  apply ``M`` to every chunk, concatenate, and tile to ``d_out``: ``ΔW = tile(blockdiag(M R_1, ..., M R_n))``.
* ``"sharing"`` (Eq. 6, for large ranks): ``f_comp(x)_j = Σ_{k ≡ j (mod r̂)} x_{k mod d_in}`` over
  ``k < n r̂``, ``f_decomp(z)_i = z_{i mod r̂}``.
* ``"truncation"``: ``f_comp(x) = x_{1:r̂}``, ``f_decomp(z) = [z; 0]``.

``ΔW`` is a fixed linear map of ``M`` (:func:`delta`), so MoRA merges into ``W`` like LoRA.

Example:
    >>> import jax.numpy as jnp
    >>> from toyllora import mora
    >>> mora.square_size(rank=2, d_in=6, d_out=10)          # round(sqrt(2 · 16)) = round(5.66)
    6
    >>> p = mora.init(jnp.zeros((10, 6)), rank=2)
    >>> p.M.shape, float(jnp.abs(mora.delta(p, "rope")).max())
    ((6, 6), 0.0)
    >>> mora.compress(jnp.arange(5.0), r_hat=2, kind="sharing").tolist()   # [x0+x2+x4, x1+x3+x0]
    [6.0, 4.0]

References:
  Jiang et al., "MoRA: High-Rank Updating for Parameter-Efficient Fine-Tuning", arXiv:2405.12130.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from toyllora.config import MORA_TYPES

ROPE_BASE = 10000.0


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class MoraParams:
    """MoRA's trainable square matrix ``M (r̂, r̂)``; the layer sizes travel as static metadata."""

    M: jax.Array
    d_in: int = dataclasses.field(metadata=dict(static=True))
    d_out: int = dataclasses.field(metadata=dict(static=True))


def square_size(rank: int, d_in: int, d_out: int) -> int:
    """``r̂ = round(sqrt(rank · (d_in + d_out)))``: MoRA's ``r̂²`` parameters match LoRA's ``r (d_in + d_out)``.

    >>> square_size(8, 4096, 4096)
    256
    """
    return int(math.sqrt(rank * (d_in + d_out)) + 0.5)


def _check_kind(kind: str) -> None:
    if kind not in MORA_TYPES:
        raise ValueError(f"mora_type: unknown value {kind!r}; allowed: {MORA_TYPES}")


def init(W, rank: int) -> MoraParams:
    """``M = 0`` of size ``r̂ × r̂`` for ``W (d_out, d_in)`` (ValueError if ``r̂ > min(d_in, d_out)``)."""
    d_out, d_in = W.shape
    r_hat = square_size(rank, d_in, d_out)
    if r_hat > min(d_in, d_out):
        raise ValueError(f"rank: MoRA's r̂ = round(sqrt(rank·(d_in + d_out))) = {r_hat} must be <= "
                         f"min(d_in, d_out) = {min(d_in, d_out)}; got rank={rank}")
    return MoraParams(M=jnp.zeros((r_hat, r_hat), W.dtype), d_in=d_in, d_out=d_out)


def _chunks(d_in: int, r_hat: int) -> int:
    return -(-d_in // r_hat)


def _rope_tables(n_chunks: int, r_hat: int):
    """``cos, sin (n_chunks, r̂)`` (NumPy float64): pair ``(j, j+h)`` of chunk ``t`` turns by ``t·10000^(−2j/r̂)``."""
    h = r_hat // 2
    inv_freq = ROPE_BASE ** (-2.0 * np.arange(h) / r_hat)
    angles = np.outer(np.arange(n_chunks), inv_freq)
    cos, sin = np.ones((n_chunks, r_hat)), np.zeros((n_chunks, r_hat))
    cos[:, :h], cos[:, h:2 * h] = np.cos(angles), np.cos(angles)
    sin[:, :h], sin[:, h:2 * h] = np.sin(angles), np.sin(angles)
    return cos, sin


def _rotate(chunks, cos, sin):
    """RoPE on the last axis: ``(c_j, c_{j+h}) -> (c_j cos − c_{j+h} sin, c_{j+h} cos + c_j sin)``."""
    r_hat = chunks.shape[-1]
    h = r_hat // 2
    # for odd r̂ the unpaired last entry has cos = 1, sin = 0: its partner value does not matter
    partner = jnp.concatenate([-chunks[..., h:2 * h], chunks[..., :h], chunks[..., 2 * h:]], axis=-1)
    return chunks * cos.astype(chunks.dtype) + partner * sin.astype(chunks.dtype)


def compress(x, r_hat: int, kind: str):
    """MoRA's ``f_comp``: ``x (..., d_in)`` to ``(..., r̂)`` (``"rope"``: ``(..., n_chunks, r̂)``, rotated)."""
    _check_kind(kind)
    d_in = x.shape[-1]
    if kind == "truncation":
        return x[..., :r_hat]
    n = _chunks(d_in, r_hat)
    wrapped = x[..., np.arange(n * r_hat) % d_in]
    chunks = wrapped.reshape(x.shape[:-1] + (n, r_hat))
    if kind == "sharing":
        return chunks.sum(axis=-2)
    cos, sin = _rope_tables(n, r_hat)
    return _rotate(chunks, cos, sin)


def decompress(z, d_out: int, kind: str):
    """MoRA's ``f_decomp``: ``(..., r̂)`` (``"rope"``: ``(..., n_chunks, r̂)``) to ``(..., d_out)``."""
    _check_kind(kind)
    if kind == "truncation":
        pad = jnp.zeros(z.shape[:-1] + (d_out - z.shape[-1],), z.dtype)
        return jnp.concatenate([z, pad], axis=-1)
    if kind == "rope":
        z = z.reshape(z.shape[:-2] + (z.shape[-2] * z.shape[-1],))
    return z[..., np.arange(d_out) % z.shape[-1]]


def branch(params: MoraParams, x, kind: str):
    """``f_decomp(M f_comp(x))`` for ``x (..., d_in)``: the adapter's output ``(..., d_out)``."""
    r_hat = params.M.shape[0]
    return decompress(compress(x, r_hat, kind) @ params.M.T, params.d_out, kind)


def delta(params: MoraParams, kind: str):
    """MoRA's weight update ``ΔW (d_out, d_in)`` in closed form (decompression · M · compression).

    Built from the operator matrices, not by running :func:`branch`, so ``forward == merged`` is a check.
    """
    _check_kind(kind)
    M, d_in, d_out = params.M, params.d_in, params.d_out
    r_hat = M.shape[0]
    dt = M.dtype
    if kind == "truncation":
        return jnp.asarray(np.eye(d_out, r_hat), dt) @ M @ jnp.asarray(np.eye(r_hat, d_in), dt)
    n = _chunks(d_in, r_hat)
    if kind == "sharing":
        C = np.zeros((r_hat, d_in))
        for k in range(n * r_hat):
            C[k % r_hat, k % d_in] += 1.0
        D = np.zeros((d_out, r_hat))
        D[np.arange(d_out), np.arange(d_out) % r_hat] = 1.0
        return jnp.asarray(D, dt) @ M @ jnp.asarray(C, dt)
    # rope: ΔW = D · blockdiag_t(M R_t) · C, with C the wrap-around chunking and D the tiling
    cos, sin = _rope_tables(n, r_hat)
    h = r_hat // 2
    K = np.zeros((n, r_hat, d_in))  # K_t = R_t C_t: rotation of chunk t applied to the wrapped input
    for t in range(n):
        R = np.diag(cos[t])
        for j in range(h):
            R[j, j + h], R[j + h, j] = -sin[t, j], sin[t, j]
        C_t = np.zeros((r_hat, d_in))
        C_t[np.arange(r_hat), (t * r_hat + np.arange(r_hat)) % d_in] = 1.0
        K[t] = R @ C_t
    rows = np.arange(d_out) % (n * r_hat)
    D = np.zeros((n, d_out, r_hat))  # D_t: output rows fed by chunk t
    D[rows // r_hat, np.arange(d_out), rows % r_hat] = 1.0
    return jnp.einsum("toa,ab,tbi->oi", jnp.asarray(D, dt), M, jnp.asarray(K, dt))
