"""The one place where toyllora's LoRA conventions live.

One adapted layer computes ``y = W x + s · B A x`` with

====================  ==============================  ==========================
toyllora (and PEFT)   shape                           role
====================  ==============================  ==========================
``W``                 ``(d_out, d_in)``               frozen base weight
``A``                 ``(r, d_in)``                   input-side factor
``B``                 ``(d_out, r)``                  output-side factor, 0 at the default start
``s``                 scalar, :func:`scale`           scaling factor
====================  ==============================  ==========================

A batch is stored as rows: ``Y = X Wᵀ + s X Aᵀ Bᵀ`` with ``X: (n, d_in)``.

How other code bases spell the same layer (see the README table):

* HF PEFT, LoRA+, rsLoRA: ``W + s·B A``, ``B: d_out×r``, ``A: r×d_in``; B is zero at start.
* ALLoRA paper, Sec. 3: ``X (W + A B)`` with ``A: D×r``, ``B: r×C`` (regression rows); its ``A`` is our
  ``Aᵀ`` and its ``B`` is our ``Bᵀ``; B (output side) is zero at start.
* flax nnx ``LoRA``: ``x @ a @ b`` with ``a: in×r`` (our ``Aᵀ``), ``b: r×out`` (our ``Bᵀ``), no scale.
* lorax: ``W + (alpha/r)·b a`` with ``b: M×k`` (our B), ``a: k×N`` (our A).

Example:
    >>> from toyllora.conventions import scale
    >>> scale("lora", alpha=16.0, rank=4)
    4.0
    >>> scale("rslora", alpha=16.0, rank=4)
    8.0
"""

from __future__ import annotations

import math

SCALING_MODES = ("lora", "rslora", "none")
DROPOUT_SITES = ("input", "bottleneck", "output")  # B A (m⊙x) (PEFT), B (m⊙A x) (paper Sec. 3.1), m⊙B A x
ADAPTS = ("both", "B", "A")  # which factors ALLoRA's per-row factor reaches (the paper: both)
DEFAULT_ETA = 2.0  # ALLoRA's eta in the paper's listing: 1/eta² = 1/4


def scale(mode: str | float, alpha: float, rank: int) -> float:
    """The scaling factor ``s`` of ``y = W x + s·B A x``: the only function that computes it.

    Args:
      mode: ``"lora"`` (``alpha / r``), ``"rslora"`` (``alpha / sqrt(r)``), ``"none"`` (1), or a number
        used as ``s`` directly (e.g. LoRA×eta).
      alpha: the LoRA alpha.
      rank: the rank ``r``.

    Returns:
      ``s`` as a Python float.
    """
    if isinstance(mode, str):
        if mode == "lora":
            return float(alpha) / rank
        if mode == "rslora":
            return float(alpha) / math.sqrt(rank)
        if mode == "none":
            return 1.0
        raise ValueError(f"scaling: unknown mode {mode!r}; allowed: {SCALING_MODES} or a finite number")
    value = float(mode)
    if not math.isfinite(value):
        raise ValueError(f"scaling: must be one of {SCALING_MODES} or a finite number, got {mode!r}")
    return value
