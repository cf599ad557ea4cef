"""A validated LoRA-family configuration (one frozen dataclass, hashable so jit can take it as static).

The adapter kinds (``adapter=``): ``"lora"`` (``W + s·B A``, the default), ``"mora"`` (MoRA, a square
matrix between parameter-free compression and decompression, :mod:`toyllora.mora`) and ``"adalora"``
(AdaLoRA, ``W + s·P diag(Λ) Q`` with importance-based rank allocation, :mod:`toyllora.adalora`).

Example:
    >>> from toyllora.config import LoraConfig, RankAllocation
    >>> cfg = LoraConfig(rank=4, alpha=8.0, scaling="rslora", keep=0.9, dropout_site="bottleneck")
    >>> cfg.s
    4.0
    >>> LoraConfig(rank=0)
    Traceback (most recent call last):
    ...
    ValueError: rank: must be an integer >= 1, got 0
    >>> LoraConfig(rank=2, adapter="mora", scaling="none").mora_type_value
    'rope'
    >>> LoraConfig(rank=2, adapter="mora", scaling="none", dora=True)
    Traceback (most recent call last):
    ...
    ValueError: dora: not combinable with adapter='mora'; allowed: False
    >>> alloc = RankAllocation(target_rank=2, total_steps=100, init_warmup=10, final_warmup=20)
    >>> LoraConfig(rank=3, adapter="adalora", allocation=alloc).allocation.beta1
    0.85
"""

from __future__ import annotations

import dataclasses
import math

from toyllora.conventions import ADAPTS, DEFAULT_ETA, DROPOUT_SITES, SCALING_MODES, scale

INITS = ("init_a", "init_b", "pissa", "both", "milora")  # from W alone
GRADIENT_INITS = ("lora_ga",)  # need the first full gradient of W: ``lora.init(..., grad=G)``
INIT_DISTS = ("kaiming", "gaussian")
METHODS = ("lora", "allora", "allora_od", "asf")
ALLORA_METHODS = ("allora", "allora_od", "asf")
ADAPTERS = ("lora", "mora", "adalora")
MORA_TYPES = ("rope", "sharing", "truncation")  # MoRA Eq. 9 (small ranks), Eq. 6 (large ranks), truncation
LORA_GA_DIRECTIONS = ("ArB2r", "A2rBr")  # which of the top 2r singular vectors A and B take
DEFAULT_LORA_GA_GAMMA = 16.0  # LoRA-GA's stable-scale gamma (official code and PEFT default)


def _choice(field: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{field}: unknown value {value!r}; allowed: {tuple(allowed)}")


def _int_at_least(field: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{field}: must be an integer >= {low}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class RankAllocation:
    """AdaLoRA's rank allocation: the cubic budget schedule and the importance EMAs (arXiv:2303.10512).

    The budget ``b(t)`` counts kept singular-value triplets over all AdaLoRA layers together: ``b(0)`` is
    the sum of the initial ranks (``LoraConfig.rank`` per layer), ``b(T) = target_rank × layers``.

    Attributes:
      target_rank: the average rank per layer at the end (1 <= target_rank <= LoraConfig.rank).
      total_steps: ``T``, the number of optimizer steps of the run (> init_warmup + final_warmup).
      init_warmup: ``t_i``, steps at the full initial budget before pruning starts.
      final_warmup: ``t_f``, last steps at the target budget with the rank pattern frozen.
      mask_interval: ``ΔT``, the budget is re-allocated every ``mask_interval`` steps while it shrinks.
      beta1: EMA rate of the sensitivity (the paper's β1, in (0, 1); official default 0.85).
      beta2: EMA rate of the uncertainty (β2, in (0, 1); official default 0.85).
      orth_reg: coefficient γ of the orthogonality regularizer ``Σ ||PᵀP − I||²_F + ||QQᵀ − I||²_F``
        (>= 0; the Trainer adds ``γ·R`` to the objective of AdaLoRA models; official default 0.1).
    """

    target_rank: int
    total_steps: int
    init_warmup: int = 0
    final_warmup: int = 0
    mask_interval: int = 1
    beta1: float = 0.85
    beta2: float = 0.85
    orth_reg: float = 0.1

    def __post_init__(self):
        _int_at_least("target_rank", self.target_rank, 1)
        _int_at_least("init_warmup", self.init_warmup, 0)
        _int_at_least("final_warmup", self.final_warmup, 0)
        _int_at_least("mask_interval", self.mask_interval, 1)
        _int_at_least("total_steps", self.total_steps, 1)
        if self.total_steps <= self.init_warmup + self.final_warmup:
            raise ValueError(f"total_steps: must exceed init_warmup + final_warmup = "
                             f"{self.init_warmup + self.final_warmup}, got {self.total_steps}")
        for name in ("beta1", "beta2"):
            v = getattr(self, name)
            if isinstance(v, bool) or not (isinstance(v, (int, float)) and 0.0 < v < 1.0):
                raise ValueError(f"{name}: must be a number in (0, 1), got {v!r}")
        if isinstance(self.orth_reg, bool) or not (isinstance(self.orth_reg, (int, float))
                                                   and math.isfinite(self.orth_reg) and self.orth_reg >= 0):
            raise ValueError(f"orth_reg: must be a finite number >= 0, got {self.orth_reg!r}")


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    """How one LoRA-family adapter is parametrized, initialised, regularized and trained.

    Attributes:
      rank: r >= 1 (checked against ``min(d_in, d_out)`` when the adapter is created).
      alpha: LoRA alpha, used by the ``lora`` and ``rslora`` scaling modes.
      scaling: ``"lora"`` (alpha/r), ``"rslora"`` (alpha/sqrt r), ``"none"`` (1) or a finite number.
      keep: dropout keep probability q in (0, 1]; 1 means no dropout. Inverted dropout (mask in {0, 1/q}).
      dropout_site: ``"input"`` (PEFT: B A (m⊙x)), ``"bottleneck"`` (B (m⊙A x)), ``"output"`` (m⊙B A x).
      init: ``"init_a"`` (A random, B = 0), ``"init_b"`` (B random, A = 0), ``"pissa"`` (SVD split of the
        top r singular triplets of W, residual base), ``"milora"`` (MiLoRA: the same split of the *minor* r
        triplets), ``"both"`` (both random, residual base so the output still equals the base model),
        ``"lora_ga"`` (LoRA-GA: A and B from the SVD of the first full gradient of W, stable scale, residual
        base; needs ``grad``, see :func:`toyllora.lora.init`). Used by ``adapter="lora"`` only.
      init_dist: distribution of the random factor(s): ``"kaiming"`` (PEFT's kaiming-uniform, bound
        1/sqrt(fan_in)) or ``"gaussian"`` (std 1/r as PEFT's ``"gaussian"``). Not used by the SVD inits.
      init_scale: multiplies the random factor(s). Not used by the SVD inits.
      dora: DoRA (one magnitude per output unit, detached row norm as in PEFT).
      method: ``"lora"``; ``"allora"`` (per-row adaptive gradient, custom VJP); ``"allora_od"`` (per-sample
        factor from |f(x)|); ``"asf"`` (ASF-LoRA: forward output adapted). The ALLoRA family requires
        ``scaling="none"``.
      eta: ALLoRA's eta (ALLoRA family only; default 2, i.e. eta² = 4).
      adapt: which factors ALLoRA's factor reaches: ``"both"`` (paper), ``"B"``, ``"A"`` (allora only).
      scale_input_grad: also scale the gradient passed to the layer input (allora ablation).
      lora_ga_gamma: LoRA-GA's stable-scale γ (A, B times ``d_out^(1/4)/sqrt(γ)``; default 16).
      lora_ga_direction: ``"ArB2r"`` (A from the top r right singular vectors, B from left singular vectors
        r+1..2r: the paper's Algorithm 1, the official and PEFT default) or ``"A2rBr"`` (the swap).
      adapter: ``"lora"`` (default), ``"mora"`` or ``"adalora"`` (see the module docstring).
      mora_type: MoRA's compression/decompression: ``"rope"`` (default; the paper's choice for small
        ranks, Eq. 9), ``"sharing"`` (large ranks, Eq. 6) or ``"truncation"``. MoRA needs ``scaling="none"``.
      allocation: AdaLoRA's :class:`RankAllocation` (required for ``adapter="adalora"``).
    """

    rank: int = 8
    alpha: float = 8.0
    scaling: str | float = "lora"
    keep: float = 1.0
    dropout_site: str = "input"
    init: str = "init_a"
    init_dist: str | None = None
    init_scale: float | None = None
    dora: bool = False
    method: str = "lora"
    eta: float | None = None
    adapt: str | None = None
    scale_input_grad: bool = False
    lora_ga_gamma: float | None = None
    lora_ga_direction: str | None = None
    adapter: str = "lora"
    mora_type: str | None = None
    allocation: RankAllocation | None = None

    def __post_init__(self):
        if isinstance(self.rank, bool) or not isinstance(self.rank, int) or self.rank < 1:
            raise ValueError(f"rank: must be an integer >= 1, got {self.rank!r}")
        if not math.isfinite(float(self.alpha)):
            raise ValueError(f"alpha: must be finite, got {self.alpha!r}")
        if isinstance(self.scaling, str):
            _choice("scaling", self.scaling, SCALING_MODES + ("<a finite number>",))
        scale(self.scaling, self.alpha, self.rank)  # validates numbers
        q = float(self.keep)
        if not (math.isfinite(q) and 0.0 < q <= 1.0):
            raise ValueError(f"keep: dropout keep probability must lie in (0, 1], got {self.keep!r}")
        _choice("dropout_site", self.dropout_site, DROPOUT_SITES)
        _choice("init", self.init, INITS + GRADIENT_INITS)
        if self.init_dist is not None:
            _choice("init_dist", self.init_dist, INIT_DISTS)
        if self.init_scale is not None and not (math.isfinite(self.init_scale) and self.init_scale > 0):
            raise ValueError(f"init_scale: must be a finite number > 0, got {self.init_scale!r}")
        if self.init in ("pissa", "milora", "lora_ga") and (self.init_dist is not None
                                                            or self.init_scale is not None):
            raise ValueError(f"init_dist/init_scale: not used by init={self.init!r} (allowed: None)")
        self._check_lora_ga()
        self._check_adapter()
        _choice("method", self.method, METHODS)
        if self.method == "lora":
            if self.eta is not None:
                raise ValueError("eta: only the ALLoRA family uses eta (method in "
                                 f"{ALLORA_METHODS}); got method='lora'")
            if self.adapt is not None:
                raise ValueError("adapt: only method='allora' uses adapt; got method='lora'")
            if self.scale_input_grad:
                raise ValueError("scale_input_grad: only method='allora' uses it; got method='lora'")
        else:
            if self.scaling != "none":
                raise ValueError(f"scaling: the ALLoRA family has no scaling factor; allowed: 'none' "
                                 f"for method={self.method!r}, got {self.scaling!r}")
            if self.dora:
                raise ValueError(f"dora: not combinable with method={self.method!r}; allowed: False")
            if self.eta is not None and not (math.isfinite(self.eta) and self.eta > 0):
                raise ValueError(f"eta: must be a finite number > 0, got {self.eta!r}")
            if self.method != "allora" and (self.adapt is not None or self.scale_input_grad):
                raise ValueError(f"adapt/scale_input_grad: only method='allora' uses them, "
                                 f"got method={self.method!r}")
            if self.adapt is not None:
                _choice("adapt", self.adapt, ADAPTS)

    def _check_lora_ga(self) -> None:
        if self.init != "lora_ga":
            for name in ("lora_ga_gamma", "lora_ga_direction"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}: only init='lora_ga' uses it; got init={self.init!r} "
                                     "(allowed: None)")
            return
        g = self.lora_ga_gamma
        if g is not None and (isinstance(g, bool) or not isinstance(g, (int, float))
                              or not (math.isfinite(g) and g > 0)):
            raise ValueError(f"lora_ga_gamma: must be a finite number > 0, got {g!r}")
        if self.lora_ga_direction is not None:
            _choice("lora_ga_direction", self.lora_ga_direction, LORA_GA_DIRECTIONS)

    def _check_adapter(self) -> None:
        _choice("adapter", self.adapter, ADAPTERS)
        if self.adapter != "mora" and self.mora_type is not None:
            raise ValueError(f"mora_type: only adapter='mora' uses it; got adapter={self.adapter!r} "
                             "(allowed: None)")
        if self.adapter != "adalora" and self.allocation is not None:
            raise ValueError(f"allocation: only adapter='adalora' uses it; got adapter={self.adapter!r} "
                             "(allowed: None)")
        if self.adapter == "lora":
            return
        kind = repr(self.adapter)
        if self.method != "lora":
            raise ValueError(f"method: adapter={kind} supports method='lora' only (the ALLoRA family acts "
                             f"on B A); allowed: 'lora', got {self.method!r}")
        if self.dora:
            raise ValueError(f"dora: not combinable with adapter={kind}; allowed: False")
        if self.init != "init_a" or self.init_dist is not None or self.init_scale is not None:
            own = "M = 0" if self.adapter == "mora" else "Λ = 0, P and Q Gaussian (std 0.02)"
            raise ValueError(f"init: adapter={kind} has its own init ({own}); allowed: init='init_a' "
                             "(the default, unused), init_dist=None, init_scale=None")
        if self.adapter == "mora":
            if self.mora_type is not None:
                _choice("mora_type", self.mora_type, MORA_TYPES)
            if self.scaling != "none":
                raise ValueError(f"scaling: MoRA has no scaling factor; allowed: 'none' for adapter='mora', "
                                 f"got {self.scaling!r}")
            if self.dropout_site == "bottleneck":
                raise ValueError("dropout_site: adapter='mora' has no bottleneck; allowed: 'input', 'output'")
        else:
            if not isinstance(self.allocation, RankAllocation):
                raise ValueError("allocation: adapter='adalora' needs a RankAllocation(target_rank=..., "
                                 f"total_steps=...), got {self.allocation!r}")
            if self.allocation.target_rank > self.rank:
                raise ValueError(f"target_rank: must be <= rank = {self.rank} (the initial rank), got "
                                 f"{self.allocation.target_rank}")

    @property
    def s(self) -> float:
        """The scaling factor, from :func:`toyllora.conventions.scale`."""
        return scale(self.scaling, self.alpha, self.rank)

    @property
    def eta_value(self) -> float:
        return DEFAULT_ETA if self.eta is None else float(self.eta)

    @property
    def adapt_value(self) -> str:
        return "both" if self.adapt is None else self.adapt

    @property
    def init_dist_value(self) -> str:
        return "kaiming" if self.init_dist is None else self.init_dist

    @property
    def init_scale_value(self) -> float:
        return 1.0 if self.init_scale is None else float(self.init_scale)

    @property
    def lora_ga_gamma_value(self) -> float:
        return DEFAULT_LORA_GA_GAMMA if self.lora_ga_gamma is None else float(self.lora_ga_gamma)

    @property
    def lora_ga_direction_value(self) -> str:
        return "ArB2r" if self.lora_ga_direction is None else self.lora_ga_direction

    @property
    def mora_type_value(self) -> str:
        return "rope" if self.mora_type is None else self.mora_type

    @property
    def needs_gradient(self) -> bool:
        """Whether the init needs the first full gradient of W (``init="lora_ga"``)."""
        return self.init in GRADIENT_INITS

    def replace(self, **changes) -> "LoraConfig":
        return dataclasses.replace(self, **changes)
