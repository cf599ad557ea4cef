"""A validated LoRA-family configuration (one frozen dataclass, hashable so jit can take it as static).

Example:
    >>> from toyllora.config import LoraConfig
    >>> cfg = LoraConfig(rank=4, alpha=8.0, scaling="rslora", keep=0.9, dropout_site="bottleneck")
    >>> cfg.s
    4.0
    >>> LoraConfig(rank=0)
    Traceback (most recent call last):
    ...
    ValueError: rank: must be an integer >= 1, got 0
"""

from __future__ import annotations

import dataclasses
import math

from toyllora.conventions import ADAPTS, DEFAULT_ETA, DROPOUT_SITES, SCALING_MODES, scale

INITS = ("init_a", "init_b", "pissa", "both")
INIT_DISTS = ("kaiming", "gaussian")
METHODS = ("lora", "allora", "allora_od", "asf")
ALLORA_METHODS = ("allora", "allora_od", "asf")


def _choice(field: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{field}: unknown value {value!r}; allowed: {tuple(allowed)}")


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    """How one LoRA-family adapter is parametrized, initialised, regularized and trained.

    Attributes:
      rank: r >= 1 (checked against ``min(d_in, d_out)`` when the adapter is created).
      alpha: LoRA alpha, used by the ``lora`` and ``rslora`` scaling modes.
      scaling: ``"lora"`` (alpha/r), ``"rslora"`` (alpha/sqrt r), ``"none"`` (1) or a finite number.
      keep: dropout keep probability q in (0, 1]; 1 means no dropout. Inverted dropout (mask in {0, 1/q}).
      dropout_site: ``"input"`` (PEFT: B A (m⊙x)), ``"bottleneck"`` (B (m⊙A x)), ``"output"`` (m⊙B A x).
      init: ``"init_a"`` (A random, B = 0), ``"init_b"`` (B random, A = 0), ``"pissa"`` (SVD split, residual
        base), ``"both"`` (both random, residual base so the output still equals the base model).
      init_dist: distribution of the random factor(s): ``"kaiming"`` (PEFT's kaiming-uniform, bound
        1/sqrt(fan_in)) or ``"gaussian"`` (std 1/r as PEFT's ``"gaussian"``). Not used by PiSSA.
      init_scale: multiplies the random factor(s). Not used by PiSSA.
      dora: DoRA (one magnitude per output unit, detached row norm as in PEFT).
      method: ``"lora"``; ``"allora"`` (per-row adaptive gradient, custom VJP); ``"allora_od"`` (per-sample
        factor from |f(x)|); ``"asf"`` (ASF-LoRA: forward output adapted). The ALLoRA family requires
        ``scaling="none"``.
      eta: ALLoRA's eta (ALLoRA family only; default 2, i.e. eta² = 4).
      adapt: which factors ALLoRA's factor reaches: ``"both"`` (paper), ``"B"``, ``"A"`` (allora only).
      scale_input_grad: also scale the gradient passed to the layer input (allora ablation).
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
        _choice("init", self.init, INITS)
        if self.init_dist is not None:
            _choice("init_dist", self.init_dist, INIT_DISTS)
        if self.init_scale is not None and not (math.isfinite(self.init_scale) and self.init_scale > 0):
            raise ValueError(f"init_scale: must be a finite number > 0, got {self.init_scale!r}")
        if self.init == "pissa" and (self.init_dist is not None or self.init_scale is not None):
            raise ValueError("init_dist/init_scale: not used by init='pissa' (allowed: None)")
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

    def replace(self, **changes) -> "LoraConfig":
        return dataclasses.replace(self, **changes)
