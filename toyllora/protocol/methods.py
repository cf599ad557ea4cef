"""The methods of the head-to-head protocol: each name, what it is, and its :class:`LoraConfig`.

Example:
    >>> from toyllora.protocol import methods
    >>> methods.method_config("allora", rank=4).eta
    2.0
    >>> methods.method_config("rslora", rank=4).s
    8.0
"""

from __future__ import annotations

import math

from toyllora.config import LoraConfig
from toyllora.conventions import DEFAULT_ETA

ETA2 = {"allora-eta2=1": 1.0, "allora-eta2=2": 2.0, "allora": 4.0}
ALLORA_ETA = DEFAULT_ETA  # the paper's listing default, 1/eta² = 1/4

# method name -> (what it is, in words). Order = table order.
METHODS = {
    "full": "full fine-tuning (every weight trained)",
    "lora": "LoRA, dropout 0.05 (keep 0.95), s = alpha/r (the paper's reference)",
    "lora-d0": "LoRA without dropout (keep 1.0)",
    "rslora": "rsLoRA, s = alpha/sqrt(r), dropout 0.05",
    "lora+16": "LoRA+ with lr_B = 16 lr_A, dropout 0.05",
    "lora+tuned": "LoRA+ with the ratio tuned with the lr, dropout 0.05",
    "dora": "DoRA (magnitude per output unit, detached norm), dropout 0.05",
    "pissa": "PiSSA init (SVD split, residual base), dropout 0.05",
    "init_b": "Init[B]: B random, A = 0, dropout 0.05",
    "scaled": "scaled GD (SGD) / scaled AdamW (Adam), δ = 1e-6, dropout 0.05",
    "allora-eta2=1": "ALLoRA, eta² = 1",
    "allora-eta2=2": "ALLoRA, eta² = 2",
    "allora": "ALLoRA, eta² = 4 (the listing's default)",
    "allora+D": "ALLoRA + dropout 0.05, eta² = 4",
    "allora-OD": "ALLoRA-OD (per-sample factor from |f(x)|), eta² = 4",
    "asf": "ASF-LoRA (forward output adapted), eta² = 4",
    "lora-x-eta": "LoRA×eta: s = eta = 2, no dropout",
    "allora-B": "ALLoRA with the factor on B's gradient only, eta² = 4",
    "allora-A": "ALLoRA with the factor on A's gradient only, eta² = 4",
}
LORA_PLUS_RATIOS = (4.0, 16.0, 64.0)
KEEP = 0.95


def method_config(method: str, rank: int, alpha: float | None = None) -> LoraConfig | None:
    """The :class:`LoraConfig` of a protocol method (``None`` = full fine-tuning).

    ``alpha`` defaults to ``4 · rank`` (LoRA's ``s = 4``, rsLoRA's ``s = 4 sqrt(r)``, LoRA×eta's ``s = 2``).
    """
    if method not in METHODS:
        raise ValueError(f"method: unknown value {method!r}; allowed: {tuple(METHODS)}")
    alpha = 4.0 * rank if alpha is None else float(alpha)
    base = LoraConfig(rank=rank, alpha=alpha, keep=KEEP)
    allora = LoraConfig(rank=rank, method="allora", scaling="none", eta=ALLORA_ETA)
    table = {
        "full": None,
        "lora": base, "lora+16": base, "lora+tuned": base, "scaled": base,
        "lora-d0": base.replace(keep=1.0),
        "rslora": base.replace(scaling="rslora"),
        "dora": base.replace(dora=True),
        "pissa": base.replace(init="pissa"),
        "init_b": base.replace(init="init_b"),
        "allora-eta2=1": allora.replace(eta=1.0),
        "allora-eta2=2": allora.replace(eta=math.sqrt(2.0)),
        "allora": allora,
        "allora+D": allora.replace(keep=KEEP),
        "allora-OD": allora.replace(method="allora_od"),
        "asf": allora.replace(method="asf"),
        "lora-x-eta": LoraConfig(rank=rank, alpha=alpha, scaling=ALLORA_ETA),
        "allora-B": allora.replace(adapt="B"),
        "allora-A": allora.replace(adapt="A"),
    }
    return table[method]
