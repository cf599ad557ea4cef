"""Pre-trained base models for the fine-tuning claims: the digits MLP, pre-trained by full fine-tuning.

One function, cached in-process, serves every claim that fine-tunes the digits MLP (the dropout claims and
the head-to-head ``digits`` task), so a (seed, setting) is pre-trained once per process.

Example:
    >>> from toyllora import pretrain
    >>> base, digits, acc = pretrain.digits_mlp(0, sizes=(64, 10), steps=20)
    >>> [W.shape for W, _ in base], digits.finetune.X.shape[1], 0.0 <= acc <= 1.0
    ([(10, 64)], 64, True)
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from toyllora import data as data_lib
from toyllora import models
from toyllora.theory import dropout as dropout_theory
from toyllora.train import Trainer

LOSSES = ("xent", "mse")


def _onehot_mse(model, frozen, params, X, Y, key=None):
    """Squared loss on one-hot labels (the loss under which the last layer's dropout has a closed form)."""
    logits = model.apply(frozen, params, X)
    return models.mse(logits, dropout_theory.one_hot_targets(Y, logits.shape[-1], logits.dtype))


def _accuracy(model, base, frozen, params, data):
    return {"test_acc": models.accuracy(model, frozen, params, data.X_test, data.Y_test)}


@functools.lru_cache(maxsize=None)
def digits_mlp(seed: int = 0, *, sizes=(64, 64, 64, 10), steps: int = 400, lr: float = 1e-2, loss: str = "xent",
               n_pretrain: int = 1000, n_finetune: int = 256, n_val: int = 150):
    """The digits MLP pre-trained by full-batch Adam on the unshifted pre-training split (biases stay 0).

    Args:
      seed: the data split and the He init.
      sizes: layer widths ``(64, ..., 10)``.
      steps, lr: the pre-training budget and Adam's learning rate.
      loss: ``"xent"`` (soft-max cross-entropy) or ``"mse"`` (squared loss on one-hot labels).
      n_pretrain, n_finetune, n_val: the split sizes of :func:`toyllora.data.digits`.

    Returns:
      ``(base, digits, held_out_accuracy)``: ``base = ((W_1, b_1), ...)`` for :class:`toyllora.models.MLPLoRA`,
      the :class:`toyllora.data.Digits` splits, and the accuracy on the held-out pre-training images.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss: unknown value {loss!r}; allowed: {LOSSES}")
    d = data_lib.digits(seed=seed, n_pretrain=n_pretrain, n_finetune=n_finetune, n_val=n_val)
    init = models.init_mlp(jax.random.key(seed), tuple(sizes))
    model = models.MLPLoRA(cfg=None)
    tr = Trainer(model, optimizer="adam", steps=steps, stride=steps, metrics=_accuracy,
                 objective=None if loss == "xent" else _onehot_mse)
    h = tr.run(init, d.pretrain, {"lr": lr}, seed=seed)
    base = tuple((W, b) for W, (_, b) in zip(h.params, init))
    return base, d, float(np.asarray(h.metrics["test_acc"])[-1])
