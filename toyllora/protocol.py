"""The one head-to-head protocol: every method on every task, tuned and scored the same way.

For each (task, method, optimizer):

1. **Tune**: one vmapped :meth:`Trainer.sweep` over a log2 learning-rate grid (:func:`lr_grid`: the same
   points for every method, LoRA+'s expressed in B's learning rate; × the LoRA+ ratio for ``lora+tuned``)
   and ``tune_seeds`` seeds on the *validation* split (``data_val``: its evaluation arrays are the
   validation split). Both budgets come from the same runs (a short run is a prefix of a long run),
   and each budget selects its own learning rate: the grid point with the best mean validation score.
   A grid point with a failed tuning run is never selected while one without failures exists
   (:func:`select`).
2. **Test**: the two selected settings re-run on ``final_seeds`` fresh seeds (the same seed integers for
   every method, so differences are paired by seed) and scored on the *test* split.

Scores are "points", higher is better: classification: test accuracy in %; regression:
``100 · (1 − test loss / test loss of the base model)`` (the % of the base model's loss removed).

Failure rule (stated once, applied everywhere): a run *fails* at budget ``T`` if the Trainer reports a
non-finite update before step ``T`` (``0 <= diverged_step < T``), or if its test loss at ``T`` is
non-finite or larger than ``1000 ×`` the base model's. A failed run scores what the base model scores
(0 points for regression, the base accuracy for classification) — never a silent NaN — and failures are
counted in every table.

Optimizers: ``"sgd"`` and ``"adam"`` (no momentum, no weight decay) and, for the ``scaled`` method, scaled
GD / scaled AdamW (:func:`toyllora.optim.scaled_gd`, :func:`toyllora.optim.scaled_adamw`). SGD and Adam live
in one :class:`ProtocolOptimizer` selected per run by a traced flag, so both optimizers — and LoRA, LoRA+16
and LoRA+tuned, which differ only in the traced ratio — share one compiled program per task; a run's update
is exactly the chosen optimizer's (the other branch is computed and discarded).

Example:
    >>> from toyllora import protocol
    >>> sorted(protocol.METHODS)[:3]
    ['allora', 'allora+D', 'allora-A']
    >>> protocol.method_config("allora", rank=4).eta
    2.0
    >>> float(protocol.score_points("regression", test_loss=0.25, base_loss=1.0))
    75.0

References:
  Huang & Balestriero, "ALLoRA", arXiv:2410.09692; LoRA+ arXiv:2402.12354; rsLoRA arXiv:2312.03732;
  DoRA arXiv:2402.09353; PiSSA arXiv:2404.02948; scaled GD arXiv:2402.02347.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from toyllora import data as data_lib
from toyllora import models, optim
from toyllora.config import LoraConfig
from toyllora.train import Trainer

OPTIMIZERS = ("sgd", "adam")
BUDGETS = ("short", "long")
FAIL_LOSS_FACTOR = 1000.0
ETA2 = {"allora-eta2=1": 1.0, "allora-eta2=2": 2.0, "allora": 4.0}
ALLORA_ETA = 2.0  # the paper's listing default, 1/eta² = 1/4

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


# -- one optimizer for the whole protocol -----------------------------------------------------------


def _select(flag, new, old):
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), new, old)


@dataclasses.dataclass(frozen=True)
class ProtocolOptimizer:
    """``hp -> optax transform``: SGD or Adam, selected per run by ``hp["adam"]`` (0 or 1), with the LoRA+ ratio
    ``hp["b_ratio"]`` on B (1 = plain); ``scaled=True`` gives scaled GD / scaled AdamW instead (Zhang &
    Pilanci; no ratio). Hashable, so Trainers that use it compile once for both optimizers.

    >>> import jax.numpy as jnp
    >>> from toyllora.lora import LoraParams
    >>> p = LoraParams(A=jnp.ones((1, 2)), B=jnp.ones((2, 1)))
    >>> opt = ProtocolOptimizer()({"lr": 0.1, "adam": 0.0, "b_ratio": 16.0})
    >>> u, _ = opt.update(p, opt.init(p), p)
    >>> round(float(u.A[0, 0]), 4), round(float(u.B[0, 0]), 4)
    (-0.1, -1.6)
    """

    scaled: bool = False
    delta: float = 1e-6

    def __call__(self, hp):
        lr = hp["lr"]
        if self.scaled:
            branches = (optim.scaled_gd(lr, self.delta), optim.scaled_adamw(lr, self.delta))
        else:
            plus = optim.scale_by_lora_plus(hp.get("b_ratio", 1.0))
            branches = (optax.chain(plus, optax.scale_by_learning_rate(lr)),
                        optax.chain(optax.scale_by_adam(), plus, optax.scale_by_learning_rate(lr)))
        use_adam = jnp.asarray(hp.get("adam", 0.0)) > 0.5

        def init(params):
            return tuple(b.init(params) for b in branches)

        def update(updates, state, params=None, **extra):
            outs = [b.update(updates, s, params) for b, s in zip(branches, state)]
            return _select(use_adam, outs[1][0], outs[0][0]), tuple(o[1] for o in outs)

        return optax.GradientTransformationExtraArgs(init, update)


def optimizer_hp(optimizer: str, method: str) -> dict:
    """The constant flags of a method under an optimizer (``adam``, ``b_ratio``)."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer: unknown value {optimizer!r}; allowed: {OPTIMIZERS}")
    return {"adam": float(optimizer == "adam"), "b_ratio": 16.0 if method == "lora+16" else 1.0}


# -- tasks ------------------------------------------------------------------------------------------


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


def deep_teacher(seed=0, d=8, layers=3, n_train=64, n_test=256, shift_rank=1, shift=0.5, noise=0.05):
    """A deep linear teacher: base ``W_l`` orthogonal, target ``W_l + ΔW_l`` with ``rank(ΔW_l) = shift_rank``
    and singular values ``shift``; ``Y = f_target(X) + noise``. Returns ``(base, data, data_val)``."""
    rng = np.random.default_rng(seed)
    Ws = [np.linalg.qr(rng.standard_normal((d, d)))[0] for _ in range(layers)]
    Wt = [W + data_lib.shift_matrix(rng, d, d, shift_rank, np.full(shift_rank, shift)) for W in Ws]

    def split(n):
        X = rng.standard_normal((n, d))
        Y = X
        for W in Wt:
            Y = Y @ W.T
        return X, Y + noise * rng.standard_normal(Y.shape)

    f = data_lib._float
    (X, Y), (Xt, Yt), (Xv, Yv) = split(n_train), split(n_test), split(n_test)
    base = tuple(f(W) for W in Ws)
    return base, data_lib.Data(f(X), f(Y), f(Xt), f(Yt)), data_lib.Data(f(X), f(Y), f(Xv), f(Yv))


@functools.lru_cache(maxsize=None)
def pretrained_digits(seed: int = 0, steps: int = 300):
    """The digits MLP (64-32-10) pre-trained by full fine-tuning (Adam, lr 1e-2) on the unshifted split.

    Cached in-process. Returns ``(base, digits)`` where ``base`` is the ``((W, b), ...)`` tuple.
    """
    d = data_lib.digits(seed=seed, n_pretrain=1000, n_finetune=257, n_val=220)
    init = models.init_mlp(jax.random.key(seed), (64, 32, 10))
    model = models.MLPLoRA(cfg=None)
    tr = Trainer(model, optimizer="adam", steps=steps, stride=steps, batch_size=None, metrics=_metrics)
    h = tr.run(init, d.pretrain, {"lr": 1e-2}, seed=seed)
    base = tuple((W, b) for W, (_, b) in zip(h.params, init))
    return base, d


@functools.lru_cache(maxsize=None)
def make_task(name: str, seed: int = 0) -> Task:
    """One of :data:`TASKS`, built from ``seed`` (cached)."""
    if name in ("ols-low", "ols-high"):
        t = data_lib.teacher_student(seed=seed, d_in=16, d_out=8, n_train=64, n_test=256,
                                     shift_rank=2 if name == "ols-low" else 8, noise=0.1)
        return Task(name, lambda cfg: models.LinearLoRA(cfg), t.W0, t.data, t.data_val, 4, "regression")
    if name in ("deep-low", "deep-high"):
        base, d, dv = deep_teacher(seed=seed, shift_rank=1 if name == "deep-low" else 8)
        return Task(name, lambda cfg: models.MultilinearLoRA(cfg), base, d, dv, 2, "regression")
    if name == "diabetes":
        d, dv = data_lib.diabetes(seed=seed, n_train=200, n_val=121)
        base = models.init_mlp(jax.random.key(seed), (10, 32, 1))
        return Task(name, lambda cfg: models.MLPLoRA(cfg, task="regression"), base, d, dv, 1, "regression")
    if name == "digits":
        base, d = pretrained_digits(seed)
        return Task(name, lambda cfg: models.MLPLoRA(cfg), base, d.finetune, d.finetune_val, 4,
                    "classification")
    raise ValueError(f"task: unknown value {name!r}; allowed: {TASKS}")


def _metrics(model, base, frozen, params, data):
    """Only what the protocol scores (fewer ops, faster compiles): losses and, for classifiers, accuracy."""
    out = {"train_loss": models.loss(model, frozen, params, data.X, data.Y),
           "test_loss": models.loss(model, frozen, params, data.X_test, data.Y_test)}
    if model.task == "classification":
        out["test_acc"] = models.accuracy(model, frozen, params, data.X_test, data.Y_test)
    return out


# -- scoring ----------------------------------------------------------------------------------------


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


# -- the protocol -----------------------------------------------------------------------------------


class Budget(NamedTuple):
    short: int
    long: int
    stride: int
    lr_points: int      # grid points per optimizer
    lr_step: float      # log2 step
    tune_seeds: int
    final_seeds: int
    batch_size: int


def budget(fast: bool) -> Budget:
    """The sizes of the protocol (fast: a smoke-test version)."""
    if fast:
        return Budget(short=20, long=100, stride=20, lr_points=4, lr_step=2.0, tune_seeds=5, final_seeds=10,
                      batch_size=32)
    return Budget(short=40, long=400, stride=20, lr_points=8, lr_step=1.0, tune_seeds=4, final_seeds=16,
                  batch_size=32)


LR_TOP = {"sgd": 0.0, "adam": -1.0}  # log2 of the largest learning rate in the grid
LORA_PLUS_SHIFT = 4.0  # log2(16): LoRA+'s grid is A's lr, placed so that B's lr (16·lr) spans the common grid


def lr_grid(optimizer: str, fast: bool, method: str | None = None) -> np.ndarray:
    """The log2 learning-rate grid of an optimizer: the same points for every method, except that LoRA+'s
    (whose ``lr`` is A's, B getting ``ratio · lr``) is shifted down by log2(16) so that B's learning rate
    covers the common grid."""
    b = budget(fast)
    top = LR_TOP[optimizer] - (LORA_PLUS_SHIFT if method in ("lora+16", "lora+tuned") else 0.0)
    return 2.0 ** (top - b.lr_step * np.arange(b.lr_points)[::-1])


def seeds(seed: int, fast: bool):
    """``(tune_seeds, final_seeds)``: disjoint lists; the final seeds are the same for every method."""
    b = budget(fast)
    base = 1000 * seed
    return [base + i for i in range(b.tune_seeds)], [base + 500 + i for i in range(b.final_seeds)]


def make_trainer(task: Task, method: str, fast: bool, cfg: LoraConfig | None = None, objective=None) -> Trainer:
    """The protocol's Trainer for a method (or an explicit ``cfg``); equal Trainers share one compile."""
    b = budget(fast)
    cfg = method_config(method, task.rank) if cfg is None else cfg
    return Trainer(task.model_fn(cfg), optimizer=ProtocolOptimizer(scaled=method == "scaled"), steps=b.long,
                   stride=b.stride,
                   batch_size=b.batch_size, metrics=_metrics, objective=objective)


def _grid(optimizer, method, fast):
    lrs = lr_grid(optimizer, fast, method)
    ratios = (LORA_PLUS_RATIOS[0], LORA_PLUS_RATIOS[-1]) if fast else LORA_PLUS_RATIOS
    flags = optimizer_hp(optimizer, method)
    if method == "lora+tuned":
        lr = np.repeat(lrs, len(ratios))
        ratio = np.tile(np.asarray(ratios), len(lrs))
    else:
        lr, ratio = lrs, np.full(len(lrs), flags["b_ratio"])
    n = len(lr)
    return {"lr": lr, "b_ratio": ratio, "adam": np.full(n, flags["adam"])}


def select(val_scores, n_failed) -> int:
    """The selected grid point: the best mean validation score among points whose tuning runs all
    succeeded; if every point has failures, the fewest failures first, then the best score (ties: the
    first, i.e. smallest, learning rate). A failing setting is never preferred to a working one, even when
    every working one is worse than the base model.

    >>> select([-5.0, 0.0, 3.0], [0, 2, 1])
    0
    """
    val, nf = np.asarray(val_scores, dtype=np.float64), np.asarray(n_failed)
    return int(np.lexsort((-val, nf))[0])


def tune_and_test(task: Task, method: str, optimizer: str, seed: int, fast: bool, *, trainer=None,
                  progress=None) -> dict:
    """The protocol for one (task, method, optimizer): tune on validation, re-run on fresh seeds, score.

    Returns a dict with, per budget: the selected ``lr`` (and ``b_ratio``), whether it sits at the grid's
    edge, the validation score of every grid point, and the ``scores``/``test_loss``/``failed`` arrays
    over the final seeds.
    """
    b = budget(fast)
    trainer = make_trainer(task, method, fast) if trainer is None else trainer
    tune, final = seeds(seed, fast)
    chunk = b.tune_seeds * b.lr_points
    g = _grid(optimizer, method, fast)
    h = trainer.sweep(task.base, task.data_val, g, tune, chunk_size=chunk)
    if progress is not None:
        progress.update(1)
    steps = {"short": b.short, "long": b.long}
    out = {"grid": {k: v.tolist() for k, v in g.items()}}
    chosen = {}
    for name, T in steps.items():
        rec = T // b.stride
        sc, failed = score_runs(task.kind, h.metrics, h.diverged_step, rec, T)
        val, n_fail = sc.mean(axis=1), failed.sum(axis=1)
        i = select(val, n_fail)
        lr_edge = g["lr"][i] in (g["lr"].min(), g["lr"].max())
        chosen[name] = i
        out[name] = {"lr": float(g["lr"][i]), "b_ratio": float(g["b_ratio"][i]), "lr_at_edge": bool(lr_edge),
                     "val_scores": val.tolist(), "val_failures": failed.sum(axis=1).tolist()}
    sel = {k: np.asarray([v[chosen["short"]], v[chosen["long"]]]) for k, v in g.items()}
    # final: (2, S) runs, the same compiled program (chunks of the tuning call's size)
    hf = trainer.sweep(task.base, task.data, sel, final, chunk_size=chunk)
    for row, (name, T) in enumerate(steps.items()):
        rec = T // b.stride
        m = jax.tree.map(lambda a: np.asarray(a)[row], hf.metrics)
        sc, failed = score_runs(task.kind, m, np.asarray(hf.diverged_step)[row], rec, T)
        out[name].update(scores=sc, failed=failed, n_failed=int(failed.sum()),
                         test_loss=np.asarray(m["test_loss"])[:, rec],
                         train_loss=np.asarray(m["train_loss"])[:, rec],
                         test_loss0=np.asarray(m["test_loss"])[:, 0], train_loss0=np.asarray(m["train_loss"])[:, 0],
                         base_loss=float(np.asarray(m["test_loss"])[0, 0]))
    out["final_seeds"] = final
    return out


@functools.lru_cache(maxsize=None)
def method_results(task_name: str, method: str, seed: int, fast: bool) -> dict:
    """Cached: the protocol for one (task, method), both optimizers (one compiled program)."""
    task = make_task(task_name, seed)
    trainer = make_trainer(task, method, fast)
    return {opt: tune_and_test(task, method, opt, seed, fast, trainer=trainer) for opt in OPTIMIZERS}


def run(methods, *, seed: int = 0, fast: bool = False, tasks=None, progress: bool = True) -> dict:
    """``results[task][method][optimizer]`` for the given methods (cached per (task, method, seed, fast)),
    with a progress bar over the (task, method) sweeps."""
    from tqdm.auto import tqdm

    tasks = (FAST_TASKS if fast else TASKS) if tasks is None else tuple(tasks)
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"methods: unknown method {m!r}; allowed: {tuple(METHODS)}")
    for t in tasks:
        if t not in TASKS:
            raise ValueError(f"tasks: unknown task {t!r}; allowed: {TASKS}")
    pairs = [(t, m) for t in tasks for m in methods]
    out: dict = {t: {} for t in tasks}
    for t, m in tqdm(pairs, desc="protocol sweeps", disable=not progress, leave=False):
        out[t][m] = method_results(t, m, seed, fast)
    return out


def cells(results: dict):
    """Every (task, budget, optimizer) cell of a results dict, in table order."""
    return [(t, b, o) for t in results for b in BUDGETS for o in OPTIMIZERS]


def scores(results: dict, method: str, cell) -> np.ndarray:
    t, b, o = cell
    return np.asarray(results[t][method][o][b]["scores"])
