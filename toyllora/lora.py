"""The LoRA family on one linear layer: parameters, init, apply (train/eval) and merge.

``y = W x + s · B A x`` (see :mod:`toyllora.conventions`). The trainable parameters are an explicit
registered pytree, :class:`LoraParams`; the frozen base weight travels separately. The other adapter
kinds of :class:`~toyllora.config.LoraConfig` go through the same four functions (``init``, ``apply``,
``delta``, ``merge``) with their own pytrees: ``adapter="mora"`` → :class:`toyllora.mora.MoraParams`,
``adapter="adalora"`` → :class:`toyllora.adalora.AdaLoraParams`.

Inits of ``LoraParams`` (``cfg.init``): random (``init_a``, ``init_b``, ``both``), from the SVD of ``W``
(``pissa``: top r triplets, arXiv:2404.02948; ``milora``: minor r triplets, arXiv:2406.09044), or from the
SVD of the first full gradient ``G = ∂L/∂W`` (``lora_ga``, arXiv:2407.05000; pass ``grad=G``).

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

from toyllora import adalora, allora, mora
from toyllora.adalora import AdaLoraParams
from toyllora.config import LoraConfig
from toyllora.mora import MoraParams


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class LoraParams:
    """Trainable adapter parameters: ``A (r, d_in)``, ``B (d_out, r)``, DoRA ``magnitude (d_out,)`` or None."""

    A: jax.Array
    B: jax.Array
    magnitude: jax.Array | None = None


ADAPTER_PARAMS = (LoraParams, MoraParams, AdaLoraParams)


def factor_labels(params, a="A", b="B", magnitude="magnitude", other="other"):
    """A labels tree with the structure of ``params``: each adapter leaf labelled by its role.

    ``LoraParams``: by field. AdaLoRA: ``P`` (output side) as ``b``, ``Q`` (input side) as ``a``, the
    singular values ``E`` as ``other``. MoRA's single matrix ``M`` as ``other`` (LoRA+'s B/A ratio does
    not apply to it). Used with ``optax.partition`` (e.g. LoRA+); selection is by structure, never by
    name strings.
    """

    def label(node):
        if isinstance(node, LoraParams):
            return LoraParams(A=a, B=b, magnitude=None if node.magnitude is None else magnitude)
        if isinstance(node, AdaLoraParams):
            return AdaLoraParams(P=b, E=other, Q=a)
        if isinstance(node, MoraParams):
            return MoraParams(M=other, d_in=node.d_in, d_out=node.d_out)
        return jax.tree.map(lambda _: other, node)

    return jax.tree.map(label, params, is_leaf=lambda n: isinstance(n, ADAPTER_PARAMS))


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


def _lora_ga_factors(grad, cfg: LoraConfig):
    """LoRA-GA's ``(A, B)`` from ``G = U S Vᵀ``: ``A = c V[:, :r]ᵀ``, ``B = c U[:, r:2r]`` (``"ArB2r"``; the
    swap for ``"A2rBr"``) with the stable scale ``c = d_out^(1/4) / sqrt(γ)`` (arXiv:2407.05000, Sec. 3.2-3.3
    and Algorithm 1)."""
    d_out, d_in = grad.shape
    r = cfg.rank
    if 2 * r > min(d_in, d_out):
        raise ValueError(f"rank: init='lora_ga' uses 2·rank singular vectors of the gradient; needs 2·rank <= "
                         f"min(d_in, d_out) = {min(d_in, d_out)}, got rank={r}")
    U, _, Vt = jnp.linalg.svd(grad, full_matrices=False)
    c = d_out ** 0.25 / math.sqrt(cfg.lora_ga_gamma_value)
    if cfg.lora_ga_direction_value == "ArB2r":
        return c * Vt[:r], c * U[:, r:2 * r]
    return c * Vt[r:2 * r], c * U[:, :r]


def init(key, W, cfg: LoraConfig, *, grad=None):
    """Create the adapter for base weight ``W (d_out, d_in)``.

    Args:
      key: PRNG key (random factors; unused by the SVD inits and MoRA).
      W: the base weight ``(d_out, d_in)``.
      cfg: the configuration.
      grad: ``∂L/∂W (d_out, d_in)``, the first full gradient of the loss at ``W`` (required by
        ``init="lora_ga"`` and used by it only; :func:`toyllora.models.first_gradients` computes it for the
        toy models, and the Trainer does so on its training data).

    Returns:
      ``(W_frozen, params)``: the frozen weight (the residual ``W - s·BA`` for ``pissa``, ``milora``,
      ``lora_ga`` and ``both``, so the output equals the base model at init for every scheme) and the
      adapter's pytree (:class:`LoraParams`, or :class:`~toyllora.mora.MoraParams` /
      :class:`~toyllora.adalora.AdaLoraParams` for ``adapter="mora"`` / ``"adalora"``, with ``W`` frozen).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> W, G = jnp.eye(4), jnp.diag(jnp.array([4.0, 3.0, 2.0, 1.0]))
      >>> _, p = init(jax.random.key(0), W, LoraConfig(rank=1, init="lora_ga"), grad=G)
      >>> [round(float(v), 3) for v in jnp.abs(p.A[0])]     # A = c·v_1ᵀ, c = 4^(1/4) / sqrt(16)
      [0.354, 0.0, 0.0, 0.0]
      >>> [round(float(v), 3) for v in jnp.abs(p.B[:, 0])]  # B = c·u_2
      [0.0, 0.354, 0.0, 0.0]
      >>> init(jax.random.key(0), W, LoraConfig(rank=1, init="lora_ga"))
      Traceback (most recent call last):
      ...
      ValueError: grad: init='lora_ga' needs the first full gradient dL/dW of shape (4, 4); pass grad=...
    """
    if W.ndim != 2:
        raise ValueError(f"W: must be a (d_out, d_in) matrix, got shape {W.shape}")
    if cfg.needs_gradient:
        if grad is None:
            raise ValueError(f"grad: init='lora_ga' needs the first full gradient dL/dW of shape {W.shape}; "
                             "pass grad=...")
        if tuple(grad.shape) != tuple(W.shape):
            raise ValueError(f"grad: must have the shape of W {W.shape}, got {grad.shape}")
    elif grad is not None:
        raise ValueError(f"grad: only init='lora_ga' uses grad; got init={cfg.init!r} "
                         f"(adapter={cfg.adapter!r}), allowed: None")
    if cfg.adapter == "mora":
        return W, mora.init(W, cfg.rank)
    _check_rank(W, cfg)
    if cfg.adapter == "adalora":
        return W, adalora.init(key, W, cfg.rank)
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
    elif cfg.init == "lora_ga":
        A, B = _lora_ga_factors(grad.astype(dtype), cfg)
    else:  # pissa (top r) / milora (minor r): W = U S Vᵀ, B = U_r sqrt(S_r)/sqrt(s), A = sqrt(S_r) V_rᵀ/sqrt(s)
        U, S, Vt = jnp.linalg.svd(W, full_matrices=False)
        keep = slice(0, r) if cfg.init == "pissa" else slice(S.shape[0] - r, S.shape[0])
        root = jnp.sqrt(S[keep]) / math.sqrt(abs(s))
        B = U[:, keep] * root[None, :] * math.copysign(1.0, s)
        A = root[:, None] * Vt[keep]
    W_frozen = W - s * (B @ A) if cfg.init in ("pissa", "milora", "lora_ga", "both") else W
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
    use_dropout = train and cfg.keep < 1.0
    if use_dropout and key is None:
        raise ValueError("key: a PRNG key is required in train mode when keep < 1")
    site = cfg.dropout_site
    mask_shape = {"input": x.shape, "bottleneck": x.shape[:-1] + (cfg.rank,),
                  "output": x.shape[:-1] + (_d_out(params),)}[site]
    mask = dropout_mask(key, mask_shape, cfg.keep, x.dtype) if use_dropout else None
    x_in = x * mask if (mask is not None and site == "input") else x
    bottleneck = mask if site == "bottleneck" else None
    if cfg.adapter == "mora":
        f = mora.branch(params, x_in, cfg.mora_type_value)
    elif cfg.adapter == "adalora":
        f = adalora.branch(params, x_in, 1.0, bottleneck_mask=bottleneck)
    elif cfg.method in ("allora", "allora_od"):
        A, B = params.A, params.B
        f = allora.branch(x_in, A, B, eta=cfg.eta_value, adapt=cfg.adapt_value,
                          scale_input_grad=cfg.scale_input_grad,
                          per_sample=cfg.method == "allora_od", bottleneck_mask=bottleneck)
    else:
        A, B = params.A, params.B
        h = x_in @ A.T
        if bottleneck is not None:
            h = h * bottleneck
        f = h @ B.T
        if cfg.method == "asf":
            f = allora.asf(f, eta=cfg.eta_value)
    if mask is not None and site == "output":
        f = f * mask
    return cfg.s * f if cfg.s != 1.0 else f


def _d_out(params) -> int:
    if isinstance(params, MoraParams):
        return params.d_out
    if isinstance(params, AdaLoraParams):
        return params.P.shape[0]
    return params.B.shape[0]


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


def delta(params, cfg: LoraConfig):
    """The weight update ``s · B A`` (d_out, d_in); MoRA: its fixed linear map of M; AdaLoRA: ``s·P diag(Λ) Q``."""
    if cfg.adapter == "mora":
        return mora.delta(params, cfg.mora_type_value)
    if cfg.adapter == "adalora":
        return adalora.delta(params, cfg.s)
    return cfg.s * (params.B @ params.A)


def merge(W, params: LoraParams, cfg: LoraConfig):
    """The merged weight: ``W + ΔW`` (:func:`delta`; DoRA: rows rescaled to the magnitudes).

    ASF-LoRA changes the forward output non-linearly and cannot be merged (ValueError).
    """
    if cfg.method == "asf":
        raise ValueError("method: 'asf' (ASF-LoRA) cannot be merged into W; allowed: lora, allora, allora_od")
    merged = W + delta(params, cfg)
    if cfg.dora:
        merged = merged * (params.magnitude / jnp.linalg.norm(merged, axis=1))[:, None]
    return merged
