"""Toy models with LoRA on their layers, and full fine-tuning of each as a reference.

* :class:`LinearLoRA` — linear regression with one adapted layer (the OLS toy).
* :class:`MultilinearLoRA` — ``L`` layers ``W_l + s·B_l A_l``, optional RMSNorm/LayerNorm between them.
* :class:`MLPLoRA` — a small ReLU MLP with LoRA on every layer (classification).

Every model is a frozen (hashable) dataclass with ``init(key, base, *, grad=None) -> (frozen, params)``
and ``apply(frozen, params, X, *, train=False, key=None)``. ``cfg=None`` means full fine-tuning: then the
trainable ``params`` are the weights themselves and ``frozen`` holds what stays fixed. ``grad`` is the
first full gradient of the loss w.r.t. every adapted weight, in the structure :func:`first_gradients`
returns; only ``init="lora_ga"`` needs it (the Trainer computes it from its training data).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from toyllora.config import LoraConfig
    >>> m = MultilinearLoRA(cfg=LoraConfig(rank=2), norm="rms")
    >>> Ws = tuple(jnp.eye(4) for _ in range(3))
    >>> frozen, params = m.init(jax.random.key(0), Ws)
    >>> m.apply(frozen, params, jnp.ones((7, 4))).shape
    (7, 4)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax

from toyllora import lora
from toyllora.config import LoraConfig

NORMS = (None, "rms", "layer")


def mse(pred, Y):
    """``0.5 · mean_n ||pred_n − Y_n||²`` (sum over outputs, mean over samples)."""
    return 0.5 * jnp.mean(jnp.sum(jnp.square(pred - Y).reshape(pred.shape[0], -1), axis=-1))


def xent(logits, labels):
    """Mean softmax cross-entropy against integer labels."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def normalize(h, kind, eps=1e-6):
    """RMSNorm (``h / rms(h)``) or LayerNorm (centred, then divided by the std), no learned gain."""
    if kind is None:
        return h
    if kind == "rms":
        return h * jax.lax.rsqrt(jnp.mean(jnp.square(h), axis=-1, keepdims=True) + eps)
    h = h - jnp.mean(h, axis=-1, keepdims=True)
    return h * jax.lax.rsqrt(jnp.mean(jnp.square(h), axis=-1, keepdims=True) + eps)


def _layer_keys(key, n, train):
    return jax.random.split(key, n) if (train and key is not None) else [None] * n


def _adapted(W, p, x, cfg, train, key):
    if cfg is None:
        return x @ p.T
    return lora.apply(W, p, x, cfg, train=train, key=key)


@dataclasses.dataclass(frozen=True)
class LinearLoRA:
    """``y = (W + s·BA) x``: the OLS toy. ``base`` is ``W0 (d_out, d_in)``."""

    cfg: LoraConfig | None
    task: str = "regression"

    def init(self, key, base, *, grad=None):
        if self.cfg is None:
            return jnp.zeros_like(base), base
        return lora.init(key, base, self.cfg, grad=grad)

    def apply(self, frozen, params, X, *, train=False, key=None):
        return _adapted(frozen, params, X, self.cfg, train, key)

    def weights(self, frozen, params):
        """The effective weight matrices (merged), as a tuple."""
        return (params,) if self.cfg is None else (lora.merge(frozen, params, self.cfg),)


@dataclasses.dataclass(frozen=True)
class MultilinearLoRA:
    """``f(x) = W_L' n(... n(W_1' x))`` with ``W_l' = W_l + s·B_l A_l``; ``base`` is a tuple of ``W_l``."""

    cfg: LoraConfig | None
    norm: str | None = None
    task: str = "regression"

    def __post_init__(self):
        if self.norm not in NORMS:
            raise ValueError(f"norm: unknown value {self.norm!r}; allowed: {NORMS}")

    def init(self, key, base, *, grad=None):
        if self.cfg is None:
            return tuple(jnp.zeros_like(W) for W in base), tuple(base)
        keys = jax.random.split(key, len(base))
        grads = (None,) * len(base) if grad is None else tuple(grad)
        pairs = [lora.init(k, W, self.cfg, grad=g) for k, W, g in zip(keys, base, grads)]
        return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)

    def apply(self, frozen, params, X, *, train=False, key=None):
        h = X
        keys = _layer_keys(key, len(params), train)
        for l, (W, p, k) in enumerate(zip(frozen, params, keys)):
            if l > 0:
                h = normalize(h, self.norm)
            h = _adapted(W, p, h, self.cfg, train, k)
        return h

    def weights(self, frozen, params):
        if self.cfg is None:
            return tuple(params)
        return tuple(lora.merge(W, p, self.cfg) for W, p in zip(frozen, params))


@dataclasses.dataclass(frozen=True)
class MLPLoRA:
    """ReLU MLP ``logits = W_L' relu(... relu(W_1' x + b_1)) + b_L``; biases frozen; LoRA on every layer.

    ``base`` is a tuple of ``(W_l, b_l)`` pairs (e.g. from :func:`init_mlp` then pre-training).
    """

    cfg: LoraConfig | None
    task: str = "classification"

    def init(self, key, base, *, grad=None):
        Ws = tuple(W for W, _ in base)
        bs = tuple(b for _, b in base)
        if self.cfg is None:
            return (tuple(jnp.zeros_like(W) for W in Ws), bs), Ws
        keys = jax.random.split(key, len(Ws))
        grads = (None,) * len(Ws) if grad is None else tuple(grad)
        pairs = [lora.init(k, W, self.cfg, grad=g) for k, W, g in zip(keys, Ws, grads)]
        return (tuple(p[0] for p in pairs), bs), tuple(p[1] for p in pairs)

    def apply(self, frozen, params, X, *, train=False, key=None):
        Ws, bs = frozen
        h = X
        keys = _layer_keys(key, len(params), train)
        for l, (W, b, p, k) in enumerate(zip(Ws, bs, params, keys)):
            if l > 0:
                h = jax.nn.relu(h)
            h = _adapted(W, p, h, self.cfg, train, k) + b
        return h

    def weights(self, frozen, params):
        Ws, _ = frozen
        if self.cfg is None:
            return tuple(params)
        return tuple(lora.merge(W, p, self.cfg) for W, p in zip(Ws, params))


def init_mlp(key, sizes, dtype=None) -> tuple[tuple[Any, Any], ...]:
    """He-initialised ``((W_1, b_1), ...)`` for layer widths ``sizes = (d_0, ..., d_L)``."""
    dtype = dtype or jnp.zeros(()).dtype
    keys = jax.random.split(key, len(sizes) - 1)
    return tuple((jax.random.normal(k, (o, i), dtype) * jnp.sqrt(2.0 / i), jnp.zeros((o,), dtype))
                 for k, i, o in zip(keys, sizes[:-1], sizes[1:]))


def loss(model, frozen, params, X, Y, *, train=False, key=None):
    """The model's training loss: :func:`mse` for regression, :func:`xent` for classification."""
    pred = model.apply(frozen, params, X, train=train, key=key)
    return xent(pred, Y) if model.task == "classification" else mse(pred, Y)


def accuracy(model, frozen, params, X, labels):
    return jnp.mean(jnp.argmax(model.apply(frozen, params, X), axis=-1) == labels)


def first_gradients(model, base, X, Y):
    """``∂L/∂W`` at the base weights for every weight the model adapts (LoRA-GA's input), in eval mode.

    The gradient of the full fine-tuning model (``cfg=None``) of the same kind: an array for
    :class:`LinearLoRA`, a tuple of arrays (one per layer, biases excluded) for :class:`MultilinearLoRA`
    and :class:`MLPLoRA`, i.e. the structure ``model.init(key, base, grad=...)`` takes.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from toyllora.config import LoraConfig
        >>> m = LinearLoRA(LoraConfig(rank=1, init="lora_ga"))
        >>> W0, X = jnp.zeros((4, 3)), jnp.eye(3)
        >>> G = first_gradients(m, W0, X, jnp.ones((3, 4)))     # mse: G = (X W0ᵀ − Y)ᵀ X / n
        >>> bool(jnp.allclose(G, -jnp.ones((4, 3)) / 3))
        True
        >>> frozen, params = m.init(jax.random.key(0), W0, grad=G)
        >>> bool(jnp.allclose(m.apply(frozen, params, X), X @ W0.T, atol=1e-6))   # still the base model
        True

    References:
      Wang, Yu, Li, "LoRA-GA: Low-Rank Adaptation with Gradient Approximation", arXiv:2407.05000.
    """
    full = dataclasses.replace(model, cfg=None)
    frozen, params = full.init(jax.random.key(0), base)  # the key is unused by full fine-tuning
    return jax.grad(lambda p: loss(full, frozen, p, X, Y))(params)
