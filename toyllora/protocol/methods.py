"""The methods of the head-to-head protocol: each name, what it is, and its :class:`LoraConfig`.

Most methods are one :class:`LoraConfig` at a given rank (:func:`method_config`). Three need to know more
about the run, and get it from :func:`config_for` (a task and a budget):

* ``adalora``: its budget schedule spans the run (``RankAllocation.total_steps = steps``), and its initial
  rank ``ceil(1.5 r)`` is capped by the smallest adapted layer;
* ``mora``: its square matrix ``r̂ = round(sqrt(r'(d_in + d_out)))`` must fit every adapted layer
  (``r̂ <= min(d_in, d_out)``, the MoRA paper's operators), so ``r'`` is the largest rank ``<= r`` for which it
  does (MoRA then trains at most as many parameters as LoRA of rank ``r``);
* ``lora-ga`` needs ``2r <= min(d_in, d_out)`` in every layer (its A and B take 2r singular vectors).

A method that cannot be built on a task (MoRA and LoRA-GA on the diabetes MLP, whose output layer is
32 → 1) is *not applicable* there (:func:`applicable`); the claims leave those cells out and say so.

``allora-s4`` and ``allora-s4+D`` (the ablation's "adaptive factor on, scaling α/r") are ALLoRA's custom VJP
with LoRA's scaling factor on the branch output, ``s · ALLoRA(B A x)`` (the factor ``c_i`` still from the
row norms of ``B A``). :class:`LoraConfig` keeps the ALLoRA family at ``s = 1`` (the paper's method), so
these two use :class:`ScaledAlloraConfig`, a subclass whose ``s`` is a stored number.

Example:
    >>> from toyllora.protocol import methods
    >>> methods.method_config("allora", rank=4).eta
    2.0
    >>> methods.method_config("rslora", rank=4).s
    8.0
    >>> methods.method_config("allora-s4", rank=4).s, methods.method_config("allora-s4", rank=4).method
    (4.0, 'allora')
    >>> methods.mora_rank(4, [(8, 16)])          # r̂(4) = 10 > 8, r̂(3) = round(sqrt(72)) = 8 fits
    3
    >>> methods.method_config("adalora", rank=4, steps=400).allocation.target_rank
    4
"""

from __future__ import annotations

import dataclasses
import math

from toyllora import mora
from toyllora.config import LoraConfig, RankAllocation
from toyllora.conventions import DEFAULT_ETA

ETA2 = {"allora-eta2=1": 1.0, "allora-eta2=2": 2.0, "allora": 4.0}
ALLORA_ETA = DEFAULT_ETA  # the paper's listing default, 1/eta² = 1/4

# method name -> (what it is, in words). Order = table order.
METHODS = {
    "full": "full fine-tuning (every weight trained)",
    "lora": "LoRA, dropout 0.05 (keep 0.95), s = alpha/r (the paper's reference)",
    "lora-d0": "LoRA without dropout (keep 1.0)",
    "lora-s1": "LoRA with s = 1, dropout 0.05",
    "lora-s2": "LoRA with s = 2, dropout 0.05",
    "lora-s1-d0": "LoRA with s = 1 and no dropout (ALLoRA without its adaptive factor)",
    "rslora": "rsLoRA, s = alpha/sqrt(r), dropout 0.05",
    "lora+16": "LoRA+ with lr_B = 16 lr_A, dropout 0.05",
    "lora+tuned": "LoRA+ with the ratio tuned with the lr, dropout 0.05",
    "dora": "DoRA (magnitude per output unit, detached norm), dropout 0.05",
    "pissa": "PiSSA init (SVD split, residual base), dropout 0.05",
    "milora": "MiLoRA init (the minor r singular triplets, residual base), dropout 0.05",
    "lora-ga": "LoRA-GA init (SVD of the first full gradient, stable scale gamma = 16), dropout 0.05",
    "init_b": "Init[B]: B random, A = 0, dropout 0.05",
    "scaled": "scaled GD (SGD) / scaled AdamW (Adam), δ = 1e-6, dropout 0.05",
    "adalora": "AdaLoRA (P diag(Λ) Q, initial rank ceil(1.5 r) → r on the cubic schedule, γ = 0.1), dropout 0.05",
    "mora": "MoRA (square r̂ × r̂ matrix, RoPE compression, r̂ fitted to the layers), dropout 0.05",
    "allora-eta2=1": "ALLoRA, eta² = 1",
    "allora-eta2=2": "ALLoRA, eta² = 2",
    "allora": "ALLoRA, eta² = 4 (the listing's default)",
    "allora+D": "ALLoRA + dropout 0.05, eta² = 4",
    "allora-s4": "ALLoRA with LoRA's scaling s = alpha/r on its output, eta² = 4",
    "allora-s4+D": "ALLoRA with s = alpha/r and dropout 0.05, eta² = 4",
    "allora-OD": "ALLoRA-OD (per-sample factor from |f(x)|), eta² = 4",
    "asf": "ASF-LoRA (forward output adapted), eta² = 4",
    "lora-x-eta": "LoRA×eta: s = eta = 2, no dropout",
    "allora-B": "ALLoRA with the factor on B's gradient only, eta² = 4",
    "allora-A": "ALLoRA with the factor on A's gradient only, eta² = 4",
}
LORA_PLUS_RATIOS = (4.0, 16.0, 64.0)
KEEP = 0.95
NEEDS_RUN = ("adalora",)                 # need the run length (steps)
NEEDS_SHAPES = ("adalora", "mora", "lora-ga")   # fitted to (or checked against) the adapted layers
ADALORA_INITIAL = 1.5                    # AdaLoRA's initial rank / target rank (the paper's b(0) = 1.5 b(T))
ADALORA_WARMUP = (0.1, 0.3, 10)          # t_i, t_f as fractions of the run, mask interval ΔT in steps


@dataclasses.dataclass(frozen=True)
class ScaledAlloraConfig(LoraConfig):
    """An ALLoRA-family :class:`LoraConfig` (``scaling="none"``) whose branch is multiplied by ``allora_s``.

    ``lora.branch`` returns ``cfg.s · f`` for every method, so this is ALLoRA's custom VJP with LoRA's
    scaling factor on top: the gradients of A and B get ``s`` from the chain rule and ``c_i`` from the row
    norms of ``B A``. Only the ablation uses it.

    >>> ScaledAlloraConfig(rank=2, method="allora", scaling="none", allora_s=4.0).s
    4.0
    """

    allora_s: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        if self.method not in ("allora", "allora_od", "asf"):
            raise ValueError(f"method: ScaledAlloraConfig is for the ALLoRA family, got {self.method!r}")
        if not (math.isfinite(self.allora_s) and self.allora_s > 0):
            raise ValueError(f"allora_s: must be a finite number > 0, got {self.allora_s!r}")

    @property
    def s(self) -> float:
        return float(self.allora_s)


def mora_rank(rank: int, shapes) -> int:
    """The largest ``r' <= rank`` whose MoRA square ``r̂(r')`` fits every layer ``(d_out, d_in)``; 0 if none."""
    for r in range(rank, 0, -1):
        if all(mora.square_size(r, d_in, d_out) <= min(d_in, d_out) for d_out, d_in in shapes):
            return r
    return 0


def adalora_initial_rank(rank: int, shapes=None) -> int:
    """AdaLoRA's initial rank: ``ceil(1.5 r)``, capped by the smallest adapted layer (never below ``r``)."""
    r0 = int(math.ceil(ADALORA_INITIAL * rank))
    if shapes:
        r0 = min(r0, min(min(s) for s in shapes))
    return max(r0, rank)


def adalora_allocation(rank: int, steps: int) -> RankAllocation:
    """The protocol's AdaLoRA schedule over a run of ``steps``: target rank ``r``, ``t_i = 0.1 T``,
    ``t_f = 0.3 T``, re-allocation every 10 steps, the official EMAs (0.85) and ``γ = 0.1``."""
    ti, tf, every = ADALORA_WARMUP
    return RankAllocation(target_rank=rank, total_steps=int(steps), init_warmup=int(ti * steps),
                          final_warmup=int(tf * steps), mask_interval=every)


def method_config(method: str, rank: int, alpha: float | None = None, *, steps: int | None = None,
                  shapes=None) -> LoraConfig | None:
    """The :class:`LoraConfig` of a protocol method (``None`` = full fine-tuning).

    ``alpha`` defaults to ``4 · rank`` (LoRA's ``s = 4``, rsLoRA's ``s = 4 sqrt(r)``, LoRA×eta's ``s = 2``).
    ``steps`` (the run length) is required by ``adalora``; ``shapes`` (the adapted layers' ``(d_out, d_in)``)
    fits ``mora``'s rank and ``adalora``'s initial rank and checks ``lora-ga`` (ValueError when the method
    cannot be built on those layers; :func:`applicable`).
    """
    if method not in METHODS:
        raise ValueError(f"method: unknown value {method!r}; allowed: {tuple(METHODS)}")
    alpha = 4.0 * rank if alpha is None else float(alpha)
    s = alpha / rank
    base = LoraConfig(rank=rank, alpha=alpha, keep=KEEP)
    allora = LoraConfig(rank=rank, method="allora", scaling="none", eta=ALLORA_ETA)
    if method == "adalora":
        if steps is None:
            raise ValueError("steps: adalora's budget schedule spans the run; pass steps (e.g. budget.long)")
        r0 = adalora_initial_rank(rank, shapes)
        return LoraConfig(rank=r0, alpha=s * r0, keep=KEEP, adapter="adalora",
                          allocation=adalora_allocation(rank, steps))
    if method == "mora":
        r = rank if shapes is None else mora_rank(rank, shapes)
        if r == 0:
            raise ValueError(f"rank: MoRA's r̂ fits no layer of shapes {list(shapes)} at any rank <= {rank}")
        return LoraConfig(rank=r, keep=KEEP, adapter="mora", scaling="none")
    if method == "lora-ga" and shapes is not None and any(2 * rank > min(sh) for sh in shapes):
        raise ValueError(f"rank: LoRA-GA needs 2·rank = {2 * rank} <= min(d_in, d_out) in every layer, "
                         f"got shapes {list(shapes)}")
    table = {
        "full": None,
        "lora": base, "lora+16": base, "lora+tuned": base, "scaled": base,
        "lora-d0": base.replace(keep=1.0),
        "lora-s1": base.replace(scaling=1.0),
        "lora-s2": base.replace(scaling=2.0),
        "lora-s1-d0": base.replace(scaling=1.0, keep=1.0),
        "rslora": base.replace(scaling="rslora"),
        "dora": base.replace(dora=True),
        "pissa": base.replace(init="pissa"),
        "milora": base.replace(init="milora"),
        "lora-ga": base.replace(init="lora_ga"),
        "init_b": base.replace(init="init_b"),
        "allora-eta2=1": allora.replace(eta=1.0),
        "allora-eta2=2": allora.replace(eta=math.sqrt(2.0)),
        "allora": allora,
        "allora+D": allora.replace(keep=KEEP),
        "allora-s4": ScaledAlloraConfig(rank=rank, method="allora", scaling="none", eta=ALLORA_ETA, allora_s=s),
        "allora-s4+D": ScaledAlloraConfig(rank=rank, method="allora", scaling="none", eta=ALLORA_ETA,
                                          allora_s=s, keep=KEEP),
        "allora-OD": allora.replace(method="allora_od"),
        "asf": allora.replace(method="asf"),
        "lora-x-eta": LoraConfig(rank=rank, alpha=alpha, scaling=ALLORA_ETA),
        "allora-B": allora.replace(adapt="B"),
        "allora-A": allora.replace(adapt="A"),
    }
    return table[method]


def applicable(method: str, rank: int, shapes) -> bool:
    """Whether :func:`method_config` can build ``method`` at ``rank`` on layers of ``shapes``."""
    try:
        method_config(method, rank, steps=1000, shapes=shapes)
    except ValueError:
        return False
    return True


def trainable_parameters(method: str, rank: int, shapes, steps: int = 1000) -> int:
    """The number of trainable parameters of ``method`` on layers of ``shapes`` (biases frozen).

    >>> trainable_parameters("lora", 4, [(8, 16)]), trainable_parameters("mora", 4, [(8, 16)])
    (96, 64)
    """
    cfg = method_config(method, rank, steps=steps, shapes=shapes)
    total = 0
    for d_out, d_in in shapes:
        if cfg is None:
            total += d_out * d_in
        elif cfg.adapter == "mora":
            total += mora.square_size(cfg.rank, d_in, d_out) ** 2
        elif cfg.adapter == "adalora":
            total += cfg.rank * (d_in + d_out + 1)
        else:
            total += cfg.rank * (d_in + d_out) + (d_out if cfg.dora else 0)
    return total
