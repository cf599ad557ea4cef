"""The tasks of the head-to-head protocol and how a run is scored.

Scores are "points", higher is better: classification: test accuracy in %; regression:
``100 · (1 − test loss / test loss of the base model)`` (the % of the base model's loss removed).

Failure rule (stated once, applied everywhere): a run *fails* at budget ``T`` if the Trainer reports a
non-finite update before step ``T`` (``0 <= diverged_step < T``), or if its test loss at ``T`` is
non-finite or larger than ``1000 ×`` the base model's. A failed run scores what the base model scores
(0 points for regression, the base accuracy for classification) — never a silent NaN — and failures are
counted in every table.

Example:
    >>> from toyllora.protocol import tasks
    >>> float(tasks.score_points("regression", test_loss=0.25, base_loss=1.0))
    75.0
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import numpy as np

from toyllora import data as data_lib
from toyllora import models, pretrain
from toyllora.protocol import methods as methods_lib

FAIL_LOSS_FACTOR = 1000.0


class Task(NamedTuple):
    name: str
    model_fn: object      # cfg -> model
    base: object
    data: data_lib.Data       # evaluation arrays = test split
    data_val: data_lib.Data   # evaluation arrays = validation split
    rank: int
    kind: str             # "regression" | "classification"


TASKS = ("ols-low", "ols-high", "deep-low", "deep-high", "diabetes", "digits")
FAST_TASKS = ("ols-high",)


@functools.lru_cache(maxsize=None)
def make_task(name: str, seed: int = 0) -> Task:
    """One of :data:`TASKS`, built from ``seed`` (cached)."""
    if name in ("ols-low", "ols-high"):
        t = data_lib.teacher_student(seed=seed, d_in=16, d_out=8, n_train=64, n_test=256,
                                     shift_rank=2 if name == "ols-low" else 8, noise=0.1)
        return Task(name, lambda cfg: models.LinearLoRA(cfg), t.W0, t.data, t.data_val, 4, "regression")
    if name in ("deep-low", "deep-high"):
        base, d, dv = data_lib.deep_teacher(seed=seed, layers=3, d=8, n_train=64, n_test=256, base="orthogonal",
                                            shift_rank=1 if name == "deep-low" else 8, shift=0.5, noise=0.05)
        return Task(name, lambda cfg: models.MultilinearLoRA(cfg), base, d, dv, 2, "regression")
    if name == "diabetes":
        d, dv = data_lib.diabetes(seed=seed, n_train=200, n_val=121)
        base = models.init_mlp(jax.random.key(seed), (10, 32, 1))
        return Task(name, lambda cfg: models.MLPLoRA(cfg, task="regression"), base, d, dv, 1, "regression")
    if name == "digits":
        base, d, _ = pretrain.digits_mlp(seed, sizes=(64, 32, 10), steps=300, n_finetune=257, n_val=220)
        return Task(name, lambda cfg: models.MLPLoRA(cfg), base, d.finetune, d.finetune_val, 4,
                    "classification")
    raise ValueError(f"task: unknown value {name!r}; allowed: {TASKS}")


def layer_shapes(task: Task) -> tuple[tuple[int, int], ...]:
    """The ``(d_out, d_in)`` of every layer a task's model adapts (LoRA sits on every weight of every model).

    >>> layer_shapes(make_task("ols-low")), layer_shapes(make_task("diabetes"))
    (((8, 16),), ((32, 10), (1, 32)))
    """
    base = task.base
    layers = base if isinstance(base, tuple) else (base,)
    return tuple(tuple(int(n) for n in (W[0] if isinstance(W, tuple) else W).shape) for W in layers)


def method_config_for(task: Task, method: str, steps: int):
    """A method's :class:`LoraConfig` on a task: :func:`methods.method_config` at the task's rank, with the
    run length (AdaLoRA's schedule) and the task's layers (MoRA's rank, AdaLoRA's initial rank, LoRA-GA's
    check); ValueError where the method cannot be built on the task (:func:`applicable`)."""
    return methods_lib.method_config(method, task.rank, steps=steps, shapes=layer_shapes(task))


def applicable(task: Task, method: str) -> bool:
    """Whether ``method`` can be built on ``task`` (MoRA and LoRA-GA cannot on the diabetes MLP's 32 → 1 layer).

    >>> applicable(make_task("diabetes"), "mora"), applicable(make_task("ols-low"), "mora")
    (False, True)
    """
    return methods_lib.applicable(method, task.rank, layer_shapes(task))


def metrics(model, base, frozen, params, data):
    """Only what the protocol scores (fewer ops, faster compiles): losses and, for classifiers, accuracy."""
    out = {"train_loss": models.loss(model, frozen, params, data.X, data.Y),
           "test_loss": models.loss(model, frozen, params, data.X_test, data.Y_test)}
    if model.task == "classification":
        out["test_acc"] = models.accuracy(model, frozen, params, data.X_test, data.Y_test)
    return out


def score_points(kind: str, *, test_loss=None, base_loss=None, accuracy=None):
    """Points (higher is better): accuracy in % or the % of the base model's test loss removed."""
    if kind == "classification":
        return 100.0 * np.asarray(accuracy, dtype=np.float64)
    if kind == "regression":
        return 100.0 * (1.0 - np.asarray(test_loss, dtype=np.float64) / np.asarray(base_loss, dtype=np.float64))
    raise ValueError(f"kind: unknown value {kind!r}; allowed: ('regression', 'classification')")


def score_runs(kind: str, metrics: dict, diverged_step, record: int, step: int):
    """Scores and failure flags of runs at one record (``step`` = its optimizer step), failure rule applied.

    ``metrics`` arrays have shape ``(..., records)``; returns ``(scores, failed)`` of shape ``(...)``.
    """
    loss = np.asarray(metrics["test_loss"], dtype=np.float64)
    base_loss, loss_t = loss[..., 0], loss[..., record]
    if kind == "classification":
        acc = np.asarray(metrics["test_acc"], dtype=np.float64)
        raw, base = score_points(kind, accuracy=acc[..., record]), score_points(kind, accuracy=acc[..., 0])
    else:
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            raw = score_points(kind, test_loss=loss_t, base_loss=base_loss)
        base = np.zeros_like(raw)
    div = np.asarray(diverged_step)
    failed = ((div >= 0) & (div < step)) | ~np.isfinite(loss_t) | ~np.isfinite(raw) \
        | (loss_t > FAIL_LOSS_FACTOR * base_loss)
    return np.where(failed, base, raw), failed
