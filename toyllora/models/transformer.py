"""A small decoder-only transformer in pure JAX, with LoRA on any subset of its projections.

One block (pre-norm)::

    h = h + o(attention(q(n₁(h)), k(n₁(h)), v(n₁(h))))      causal, multi-head
    h = h + mlp_out(gelu(mlp_in(n₂(h))))

with ``n(h) = g ⊙ h / rms(h)`` (RMSNorm, learned gain), learned token and position embeddings, a final
RMSNorm and an output head. No biases. Every projection is a ``(d_out, d_in)`` matrix in PEFT's
orientation, so :func:`toyllora.lora.init` / :func:`~toyllora.lora.apply` / :func:`~toyllora.lora.merge`
adapt it unchanged (scaling modes, the three dropout sites, the inits, DoRA, the ALLoRA family).

Heads (:class:`TransformerConfig` ``head``):

* ``"lm"``: next-token logits ``(n, T, vocab)`` from a separate (untied) ``unembed`` matrix; the model's
  ``task`` is ``"next_token"`` (loss: :func:`toyllora.models.masked_xent`, negative targets ignored).
* ``"classify"``: class logits ``(n, n_classes)`` from a ``cls_head`` applied to one pooled vector:
  ``pool="last"`` (default) takes the last position, the only one that sees the whole sequence under the
  causal mask; ``pool="mean"`` averages all positions. The model's ``task`` is ``"classification"``.
  The head is new at fine-tuning time: drawn in :meth:`TransformerLoRA.init` (std ``1/sqrt(width)``)
  unless ``base`` already holds a ``cls_head``, and trained with the adapters when ``train_head``
  (PEFT's ``modules_to_save`` for sequence classification).

The base weights are a plain dict (see :func:`init_base`)::

    {"embed": (V, D), "pos": (T_max, D), "norm_out": (D,), "unembed": (V, D),
     "blocks": ({"norm_attn": (D,), "q": (D, D), "k": (D, D), "v": (D, D), "o": (D, D),
                 "norm_mlp": (D,), "mlp_in": (M, D), "mlp_out": (D, M)}, ...)}

Example:
    >>> import jax, jax.numpy as jnp
    >>> from toyllora.config import LoraConfig
    >>> arch = TransformerConfig(vocab=11, width=8, heads=2, layers=1, mlp=16, max_len=5)
    >>> base = init_base(jax.random.key(0), arch)
    >>> m = TransformerLoRA(LoraConfig(rank=2), arch, targets=("q", "v", "mlp_in"))
    >>> frozen, params = m.init(jax.random.key(1), base)
    >>> sorted(params["blocks"][0])
    ['mlp_in', 'q', 'v']
    >>> X = jnp.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    >>> m.apply(frozen, params, X).shape        # (n, T, vocab)
    (2, 4, 11)
    >>> full = TransformerLoRA(None, arch)       # cfg=None: full fine-tuning, params = the base dict
    >>> f0, p0 = full.init(jax.random.key(1), base)
    >>> bool(jnp.allclose(m.apply(frozen, params, X), full.apply(f0, p0, X), atol=1e-6))   # B = 0
    True
"""

from __future__ import annotations

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np

from toyllora import lora
from toyllora.config import LoraConfig

TARGETS = ("q", "k", "v", "o", "mlp_in", "mlp_out")
HEAD_KINDS = ("lm", "classify")
POOLS = ("last", "mean")
TASK_OF_HEAD = {"lm": "next_token", "classify": "classification"}
NORM_EPS = 1e-6
MASKED = -1e9            # additive score of a future position (cheaper to compile than a where)


def _positive_int(field, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{field}: must be an integer >= {minimum}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """The architecture (frozen, hashable: a static argument of jit and part of the pre-training cache key).

    Attributes:
      vocab: number of token ids (inputs are integers in ``[0, vocab)``).
      width: model width ``D`` (residual stream).
      heads: attention heads; must divide ``width``.
      layers: transformer blocks.
      mlp: hidden width ``M`` of the GELU MLP.
      max_len: longest sequence (rows of the position embedding).
      head: ``"lm"`` (next-token logits) or ``"classify"`` (pooled class logits).
      pool: ``"last"`` or ``"mean"`` (classify only; ignored by ``"lm"``).
      n_classes: number of classes (``head="classify"`` needs an integer >= 2; ``"lm"`` needs None).

    >>> TransformerConfig(width=96, heads=5)
    Traceback (most recent call last):
    ...
    ValueError: heads: must divide width = 96, got 5
    """

    vocab: int = 64
    width: int = 128
    heads: int = 4
    layers: int = 2
    mlp: int = 512
    max_len: int = 16
    head: str = "lm"
    pool: str = "last"
    n_classes: int | None = None

    def __post_init__(self):
        _positive_int("vocab", self.vocab, 2)
        for name in ("width", "heads", "layers", "mlp", "max_len"):
            _positive_int(name, getattr(self, name))
        if self.width % self.heads:
            raise ValueError(f"heads: must divide width = {self.width}, got {self.heads}")
        if self.head not in HEAD_KINDS:
            raise ValueError(f"head: unknown value {self.head!r}; allowed: {HEAD_KINDS}")
        if self.pool not in POOLS:
            raise ValueError(f"pool: unknown value {self.pool!r}; allowed: {POOLS}")
        if self.head == "classify":
            _positive_int("n_classes", self.n_classes, 2)
        elif self.n_classes is not None:
            raise ValueError(f"n_classes: only head='classify' uses it (allowed: None for head='lm'), "
                             f"got {self.n_classes!r}")

    def projection_shape(self, target: str) -> tuple[int, int]:
        """``(d_out, d_in)`` of one projection of a block."""
        D, M = self.width, self.mlp
        shapes = {"q": (D, D), "k": (D, D), "v": (D, D), "o": (D, D), "mlp_in": (M, D), "mlp_out": (D, M)}
        if target not in shapes:
            raise ValueError(f"targets: unknown module {target!r}; allowed: {TARGETS}")
        return shapes[target]

    def replace(self, **changes) -> "TransformerConfig":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "TransformerConfig":
        return cls(**json.loads(text))


DEFAULT = TransformerConfig()                                  # 412,288 parameters
FAST = TransformerConfig(width=64, heads=4, layers=2, mlp=256)  # 107,840 parameters


def init_base(key, arch: TransformerConfig, dtype=None) -> dict:
    """Random base weights (the start of pre-training), as the plain dict described in the module docstring.

    Token embeddings N(0, 1), positions N(0, 0.1²) (the residual stream starts at unit scale; every block
    reads it through an RMSNorm); projections N(0, 1/d_in), the residual outputs (``o``, ``mlp_out``)
    scaled by ``1/sqrt(2·layers)``; RMSNorm gains 1; ``unembed`` N(0, 1/D). A ``classify`` config also
    gets a ``cls_head`` N(0, 1/D).

    >>> import jax
    >>> base = init_base(jax.random.key(0), FAST)
    >>> n_params(base), sorted(base)
    (107840, ['blocks', 'embed', 'norm_out', 'pos', 'unembed'])
    """
    dtype = dtype or jnp.zeros(()).dtype
    D, L = arch.width, arch.layers
    residual = 1.0 / math.sqrt(2 * L)
    shapes = {"embed": ((arch.vocab, D), 1.0), "pos": ((arch.max_len, D), 0.1),
              "unembed": ((arch.vocab, D), 1.0 / math.sqrt(D))}
    for l in range(L):
        for t in TARGETS:
            d_out, d_in = arch.projection_shape(t)
            shapes[f"{l}/{t}"] = ((d_out, d_in), (residual if t in ("o", "mlp_out") else 1.0) / math.sqrt(d_in))
    if arch.head == "classify":
        shapes["cls_head"] = ((arch.n_classes, D), 1.0 / math.sqrt(D))
    sizes = [math.prod(shape) for shape, _ in shapes.values()]
    z = np.asarray(jax.random.normal(key, (sum(sizes),), dtype))   # one draw, sliced in NumPy: one compile
    offsets = np.cumsum([0] + sizes)
    w = {name: jnp.asarray(std * z[a:b].reshape(shape), dtype)
         for (name, (shape, std)), a, b in zip(shapes.items(), offsets, offsets[1:])}
    ones = jnp.ones((D,), dtype)
    blocks = tuple({"norm_attn": ones, **{t: w[f"{l}/{t}"] for t in TARGETS[:4]}, "norm_mlp": ones,
                    **{t: w[f"{l}/{t}"] for t in TARGETS[4:]}} for l in range(L))
    base = {"embed": w["embed"], "pos": w["pos"], "blocks": blocks, "norm_out": ones, "unembed": w["unembed"]}
    if arch.head == "classify":
        base["cls_head"] = w["cls_head"]
    return base


def n_params(tree) -> int:
    """Number of scalars in a pytree (e.g. a base dict or the trainable adapters)."""
    return int(sum(a.size for a in jax.tree.leaves(tree)))


def rms_norm(h, gain):
    """``gain ⊙ h / sqrt(mean(h²) + eps)`` over the last axis."""
    return gain * h * jax.lax.rsqrt(jnp.mean(jnp.square(h), axis=-1, keepdims=True) + NORM_EPS)


def causal_attention(q, k, v, heads: int):
    """Multi-head softmax attention where position ``t`` sees positions ``<= t``; ``q, k, v: (n, T, D)``.

    >>> import jax.numpy as jnp
    >>> x = jnp.ones((1, 3, 4))
    >>> causal_attention(x, x, x, heads=2).shape
    (1, 3, 4)
    """
    n, T, D = q.shape
    split = lambda a: a.reshape(n, T, heads, D // heads)
    q, k, v = split(q), split(k), split(v)
    scores = jnp.einsum("nthd,nshd->nhts", q, k) / math.sqrt(D // heads)
    future = np.where(np.tril(np.ones((T, T), dtype=bool)), 0.0, MASKED)   # a constant: exp(-1e9) = 0
    probs = jax.nn.softmax(scores + future.astype(scores.dtype), axis=-1)
    return jnp.einsum("nhts,nshd->nthd", probs, v).reshape(n, T, D)


def _check_tokens(X, arch: TransformerConfig):
    if X.ndim != 2:
        raise ValueError(f"X: must be an (n, T) array of token ids, got shape {X.shape}")
    if not jnp.issubdtype(X.dtype, jnp.integer):
        raise ValueError(f"X: token ids must be integers, got dtype {X.dtype}")
    if X.shape[1] > arch.max_len:
        raise ValueError(f"X: sequence length must be <= max_len = {arch.max_len}, got {X.shape[1]}")


def forward(arch: TransformerConfig, weights: dict, project, X):
    """The transformer on token ids ``X (n, T)``; ``project(layer, name, h)`` computes one projection
    (plain ``h @ Wᵀ``, or an adapted layer); ``weights`` supplies everything else (embeddings, gains, heads).
    """
    _check_tokens(X, arch)
    T = X.shape[1]
    h = weights["embed"][X] + weights["pos"][:T]
    for l, block in enumerate(weights["blocks"]):
        a = rms_norm(h, block["norm_attn"])
        att = causal_attention(project(l, "q", a), project(l, "k", a), project(l, "v", a), arch.heads)
        h = h + project(l, "o", att)
        m = rms_norm(h, block["norm_mlp"])
        h = h + project(l, "mlp_out", jax.nn.gelu(project(l, "mlp_in", m)))
    h = rms_norm(h, weights["norm_out"])
    if arch.head == "lm":
        return h @ weights["unembed"].T
    pooled = h[:, -1] if arch.pool == "last" else jnp.mean(h, axis=1)
    return pooled @ weights["cls_head"].T


def _unknown_targets(targets):
    return [t for t in targets if t not in TARGETS]


@dataclasses.dataclass(frozen=True)
class TransformerLoRA:
    """The transformer with LoRA-family adapters on ``targets`` of every block (``cfg=None``: full fine-tuning).

    Attributes:
      cfg: a :class:`~toyllora.config.LoraConfig`, or None for full fine-tuning (every weight trained).
      arch: the :class:`TransformerConfig` (``head`` decides ``task``).
      targets: a non-empty subset of ``("q", "k", "v", "o", "mlp_in", "mlp_out")`` (default PEFT's
        ``("q", "v")``); ignored by full fine-tuning.
      train_head: classify only: train the new ``cls_head`` with the adapters (True) or keep it frozen.

    ``init(key, base) -> (frozen, params)``: with LoRA, ``frozen`` is the base dict whose adapted
    projections hold :func:`toyllora.lora.init`'s frozen weight (the residual for ``pissa``/``both``) and
    ``params = {"blocks": ({target: LoraParams}, ...)}`` (plus ``"cls_head"`` when trained); with
    ``cfg=None``, ``frozen = {}`` and ``params`` is the whole base dict (plus ``cls_head``).
    """

    cfg: LoraConfig | None
    arch: TransformerConfig = DEFAULT
    targets: tuple = ("q", "v")
    train_head: bool = True

    def __post_init__(self):
        if not isinstance(self.arch, TransformerConfig):
            raise ValueError(f"arch: must be a TransformerConfig, got {type(self.arch).__name__}")
        targets = (self.targets,) if isinstance(self.targets, str) else tuple(self.targets)
        object.__setattr__(self, "targets", targets)
        if not targets:
            raise ValueError(f"targets: needs at least one module; allowed: a subset of {TARGETS}")
        if _unknown_targets(targets):
            raise ValueError(f"targets: unknown module {_unknown_targets(targets)[0]!r}; allowed: {TARGETS}")
        if len(set(targets)) != len(targets):
            raise ValueError(f"targets: each module at most once, got {targets}")
        if self.cfg is not None:
            for t in targets:
                d_out, d_in = self.arch.projection_shape(t)
                if self.cfg.rank > min(d_out, d_in):
                    raise ValueError(f"rank: must be <= min(d_out, d_in) = {min(d_out, d_in)} of target {t!r} "
                                     f"({d_out} × {d_in}), got {self.cfg.rank}")

    @property
    def task(self) -> str:
        """``"next_token"`` (head ``lm``) or ``"classification"`` (head ``classify``)."""
        return TASK_OF_HEAD[self.arch.head]

    def _head(self, key, base):
        if self.arch.head != "classify":
            return None
        if "cls_head" in base:
            return base["cls_head"]
        D = self.arch.width
        dtype = base["embed"].dtype
        return jax.random.normal(key, (self.arch.n_classes, D), dtype) / math.sqrt(D)

    def init(self, key, base):
        k_head, k_lora = jax.random.split(key)
        head = self._head(k_head, base)
        weights = {k: v for k, v in base.items() if k != "cls_head"}
        if self.cfg is None:
            params = dict(weights, blocks=tuple(dict(b) for b in weights["blocks"]))
            if head is not None:
                params["cls_head"] = head
            return {}, params
        frozen_blocks, adapters = [], []
        keys = jax.random.split(k_lora, (len(base["blocks"]), len(self.targets)))
        for l, block in enumerate(base["blocks"]):
            fb, ab = dict(block), {}
            for j, t in enumerate(self.targets):
                fb[t], ab[t] = lora.init(keys[l, j], block[t], self.cfg)
            frozen_blocks.append(fb)
            adapters.append(ab)
        frozen = dict(weights, blocks=tuple(frozen_blocks))
        params = {"blocks": tuple(adapters)}
        if head is not None:
            (params if self.train_head else frozen)["cls_head"] = head
        return frozen, params

    def apply(self, frozen, params, X, *, train=False, key=None):
        """Logits for token ids ``X (n, T)``; LoRA dropout only when ``train`` (then ``key`` is needed)."""
        if self.cfg is None:
            return forward(self.arch, params, lambda l, t, h: h @ params["blocks"][l][t].T, X)
        n_layers = len(frozen["blocks"])
        keys = jax.random.split(key, (n_layers, len(self.targets))) if (train and key is not None) else None
        index = {t: j for j, t in enumerate(self.targets)}

        def project(l, t, h):
            W = frozen["blocks"][l][t]
            if t not in index:
                return h @ W.T
            k = None if keys is None else keys[l, index[t]]
            return lora.apply(W, params["blocks"][l][t], h, self.cfg, train=train, key=k)

        weights = dict(frozen)
        if "cls_head" in params:
            weights["cls_head"] = params["cls_head"]
        return forward(self.arch, weights, project, X)

    def weights(self, frozen, params) -> dict:
        """The effective base dict: every adapted projection merged (:func:`toyllora.lora.merge`).

        ``TransformerLoRA(None, arch).apply({}, m.weights(frozen, params), X)`` equals ``m.apply(...)``.
        """
        if self.cfg is None:
            return params
        blocks = []
        for fb, ab in zip(frozen["blocks"], params["blocks"]):
            blocks.append({**fb, **{t: lora.merge(fb[t], p, self.cfg) for t, p in ab.items()}})
        out = dict(frozen, blocks=tuple(blocks))
        if "cls_head" in params:
            out["cls_head"] = params["cls_head"]
        return out
