"""The LoRA family on one linear layer: parameters, init, apply (train/eval) and merge.

``y = W x + s · B A x`` (see :mod:`toyllora.conventions`). The trainable parameters are an explicit
registered pytree, :class:`LoraParams`; the frozen base weight travels separately.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from toyllora.config import LoraConfig
    >>> from toyllora import lora
    >>> W = jax.random.normal(jax.random.key(0), (3, 5))
    >>> cfg = LoraConfig(rank=2)
    >>> W_frozen, p = lora.init(jax.random.key(1), W, cfg)
    >>> p.A.shape, p.B.shape
    ((2, 5), (3, 2))
    >>> x = jnp.ones((4, 5))
    >>> bool(jnp.allclose(lora.apply(W_frozen, p, x, cfg), x @ W.T))   # B = 0: the base model
    True
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from toyllora import allora
from toyllora.config import LoraConfig


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class LoraParams:
    """Trainable adapter parameters: ``A (r, d_in)``, ``B (d_out, r)``, DoRA ``magnitude (d_out,)`` or None."""

    A: jax.Array
    B: jax.Array
    magnitude: jax.Array | None = None


def factor_labels(params, a="A", b="B", magnitude="magnitude", other="other"):
    """A labels tree with the structure of ``params``: each ``LoraParams`` leaf labelled by its field.

    Used with ``optax.partition`` (e.g. LoRA+); selection is by structure, never by name strings.
    """

    def label(node):
        if isinstance(node, LoraParams):
            return LoraParams(A=a, B=b, magnitude=None if node.magnitude is None else magnitude)
        return jax.tree.map(lambda _: other, node)

    return jax.tree.map(label, params, is_leaf=lambda n: isinstance(n, LoraParams))


def _check_rank(W, cfg: LoraConfig) -> None:
    d_out, d_in = W.shape
    if cfg.rank > min(d_in, d_out):
        raise ValueError(f"rank: must be <= min(d_in, d_out) = {min(d_in, d_out)}, got {cfg.rank}")


def _random_factor(key, shape, fan_in, cfg: LoraConfig, dtype):
    if cfg.init_dist_value == "kaiming":  # PEFT: kaiming_uniform_(a=sqrt(5)) -> bound 1/sqrt(fan_in)
        bound = 1.0 / math.sqrt(fan_in)
        z = jax.random.uniform(key, shape, dtype, -bound, bound)
    else:  # PEFT "gaussian": std 1/r
        z = jax.random.normal(key, shape, dtype) / cfg.rank
    return cfg.init_scale_value * z


def init(key, W, cfg: LoraConfig):
    """Create the adapter for base weight ``W (d_out, d_in)``.

    Returns:
      ``(W_frozen, params)``: the frozen weight (the residual ``W - s·BA`` for ``pissa`` and ``both``, so the
      output equals the base model at init for every scheme) and a :class:`LoraParams`.
    """
    if W.ndim != 2:
        raise ValueError(f"W: must be a (d_out, d_in) matrix, got shape {W.shape}")
    _check_rank(W, cfg)
    d_out, d_in = W.shape
    r, s, dtype = cfg.rank, cfg.s, W.dtype
    ka, kb = jax.random.split(key)
    if cfg.init == "init_a":
        A = _random_factor(ka, (r, d_in), d_in, cfg, dtype)
        B = jnp.zeros((d_out, r), dtype)
    elif cfg.init == "init_b":
        A = jnp.zeros((r, d_in), dtype)
        B = _random_factor(kb, (d_out, r), r, cfg, dtype)
    elif cfg.init == "both":
        A = _random_factor(ka, (r, d_in), d_in, cfg, dtype)
        B = _random_factor(kb, (d_out, r), r, cfg, dtype)
    else:  # pissa: W = U S Vᵀ, B = U_r sqrt(S_r)/sqrt(s), A = sqrt(S_r) V_rᵀ/sqrt(s)
        U, S, Vt = jnp.linalg.svd(W, full_matrices=False)
        root = jnp.sqrt(S[:r]) / math.sqrt(abs(s))
        B = U[:, :r] * root[None, :] * math.copysign(1.0, s)
        A = root[:, None] * Vt[:r]
    W_frozen = W - s * (B @ A) if cfg.init in ("pissa", "both") else W
    magnitude = None
    if cfg.dora:
        magnitude = jnp.linalg.norm(W_frozen + s * (B @ A), axis=1)
    return W_frozen, LoraParams(A=A, B=B, magnitude=magnitude)


def dropout_mask(key, shape, keep: float, dtype):
    """Inverted dropout mask with values in {0, 1/keep}."""
    return jax.random.bernoulli(key, keep, shape).astype(dtype) / keep


def branch(params: LoraParams, x, cfg: LoraConfig, *, train: bool = False, key=None):
    """The adapter branch ``s · B A x`` (with dropout at its site in train mode, and the ALLoRA family).

    >>> import jax.numpy as jnp
    >>> from toyllora.config import LoraConfig
    >>> p = LoraParams(A=jnp.ones((1, 2)), B=jnp.ones((3, 1)))
    >>> branch(p, jnp.ones((2,)), LoraConfig(rank=1, alpha=2.0)).tolist()
    [4.0, 4.0, 4.0]
    """
    A, B = params.A, params.B
    use_dropout = train and cfg.keep < 1.0
    if use_dropout and key is None:
        raise ValueError("key: a PRNG key is required in train mode when keep < 1")
    site = cfg.dropout_site
    mask_shape = {"input": x.shape, "bottleneck": x.shape[:-1] + (cfg.rank,),
                  "output": x.shape[:-1] + (B.shape[0],)}[site]
    mask = dropout_mask(key, mask_shape, cfg.keep, x.dtype) if use_dropout else None
    x_in = x * mask if (mask is not None and site == "input") else x
    bottleneck = mask if site == "bottleneck" else None
    if cfg.method in ("allora", "allora_od"):
        f = allora.branch(x_in, A, B, eta=cfg.eta_value, adapt=cfg.adapt_value,
                          scale_input_grad=cfg.scale_input_grad,
                          per_sample=cfg.method == "allora_od", bottleneck_mask=bottleneck)
    else:
        h = x_in @ A.T
        if bottleneck is not None:
            h = h * bottleneck
        f = h @ B.T
        if cfg.method == "asf":
            f = allora.asf(f, eta=cfg.eta_value)
    if mask is not None and site == "output":
        f = f * mask
    return cfg.s * f if cfg.s != 1.0 else f


def _dora_row_scale(W, params: LoraParams, cfg: LoraConfig):
    """``m / ||W + s·BA||_row`` with the norm detached (PEFT's DoRA)."""
    norm = jnp.linalg.norm(W + cfg.s * (params.B @ params.A), axis=1)
    return params.magnitude / jax.lax.stop_gradient(norm)


def apply(W, params: LoraParams, x, cfg: LoraConfig, *, train: bool = False, key=None):
    """``W x + s·B A x`` for ``x (..., d_in)``; dropout only in train mode; DoRA rescales rows."""
    if x.shape[-1] != W.shape[1]:
        raise ValueError(f"x: last dimension must be d_in = {W.shape[1]}, got shape {x.shape}")
    y = x @ W.T + branch(params, x, cfg, train=train, key=key)
    if cfg.dora:
        y = y * _dora_row_scale(W, params, cfg)
    return y


def delta(params: LoraParams, cfg: LoraConfig):
    """The weight update ``s · B A`` (d_out, d_in)."""
    return cfg.s * (params.B @ params.A)


def merge(W, params: LoraParams, cfg: LoraConfig):
    """The merged weight: ``W + s·BA`` (DoRA: rows rescaled to the magnitudes).

    ASF-LoRA changes the forward output non-linearly and cannot be merged (ValueError).
    """
    if cfg.method == "asf":
        raise ValueError("method: 'asf' (ASF-LoRA) cannot be merged into W; allowed: lora, allora, allora_od")
    merged = W + delta(params, cfg)
    if cfg.dora:
        merged = merged * (params.magnitude / jnp.linalg.norm(merged, axis=1))[:, None]
    return merged
