"""Tuning and testing: the learning-rate grids, the budgets, the one optimizer, and the protocol itself.

See :mod:`toyllora.protocol` for the protocol in words.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from toyllora import optim
from toyllora.config import LoraConfig
from toyllora.protocol import tasks
from toyllora.protocol.methods import LORA_PLUS_RATIOS, METHODS, method_config
from toyllora.protocol.tasks import TASKS, Task, make_task, score_runs
from toyllora.train import Trainer

OPTIMIZERS = ("sgd", "adam")
BUDGETS = ("short", "long")


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



@dataclasses.dataclass(frozen=True)
class Budget:
    """The sizes of the protocol: step budgets, the lr grid, the seeds, the batch and LoRA+'s tuned ratios.

    A frozen dataclass, so a claim's ``Params`` can hold one (hashable, recorded as a dict).
    """

    short: int
    long: int
    stride: int
    lr_points: int      # grid points per optimizer
    lr_step: float      # log2 step
    tune_seeds: int
    final_seeds: int
    batch_size: int
    lora_plus_ratios: tuple = LORA_PLUS_RATIOS  # the ratios lora+tuned tunes over


FULL_BUDGET = Budget(short=40, long=400, stride=20, lr_points=8, lr_step=1.0, tune_seeds=4, final_seeds=16,
                     batch_size=32)
FAST_BUDGET = Budget(short=20, long=100, stride=20, lr_points=4, lr_step=2.0, tune_seeds=5, final_seeds=10,
                     batch_size=32, lora_plus_ratios=(LORA_PLUS_RATIOS[0], LORA_PLUS_RATIOS[-1]))


def budget(fast: bool) -> Budget:
    """The sizes of the protocol: :data:`FAST_BUDGET` (a smoke-test version) or :data:`FULL_BUDGET`."""
    return FAST_BUDGET if fast else FULL_BUDGET


def _check_budget(b) -> Budget:
    if not isinstance(b, Budget):
        raise ValueError(f"budget: must be a toyllora.protocol.Budget (e.g. protocol.budget(fast)), got {b!r}")
    return b


LR_TOP = {"sgd": 0.0, "adam": -1.0}  # log2 of the largest learning rate in the grid
LORA_PLUS_SHIFT = 4.0  # log2(16): LoRA+'s grid is A's lr, placed so that B's lr (16·lr) spans the common grid


def lr_grid(optimizer: str, budget: Budget, method: str | None = None) -> np.ndarray:
    """The log2 learning-rate grid of an optimizer: the same points for every method, except that LoRA+'s
    (whose ``lr`` is A's, B getting ``ratio · lr``) is shifted down by log2(16) so that B's learning rate
    covers the common grid."""
    b = _check_budget(budget)
    top = LR_TOP[optimizer] - (LORA_PLUS_SHIFT if method in ("lora+16", "lora+tuned") else 0.0)
    return 2.0 ** (top - b.lr_step * np.arange(b.lr_points)[::-1])


def seeds(seed: int, budget: Budget):
    """``(tune_seeds, final_seeds)``: disjoint lists; the final seeds are the same for every method."""
    b = _check_budget(budget)
    base = 1000 * seed
    return [base + i for i in range(b.tune_seeds)], [base + 500 + i for i in range(b.final_seeds)]


def make_trainer(task: Task, method: str, budget: Budget, cfg: LoraConfig | None = None,
                 objective=None) -> Trainer:
    """The protocol's Trainer for a method (or an explicit ``cfg``); equal Trainers share one compile."""
    b = _check_budget(budget)
    cfg = method_config(method, task.rank) if cfg is None else cfg
    return Trainer(task.model_fn(cfg), optimizer=ProtocolOptimizer(scaled=method == "scaled"), steps=b.long,
                   stride=b.stride,
                   batch_size=b.batch_size, metrics=tasks.metrics, objective=objective)


def _grid(optimizer, method, budget: Budget):
    lrs = lr_grid(optimizer, budget, method)
    ratios = budget.lora_plus_ratios
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


def tune_and_test(task: Task, method: str, optimizer: str, seed: int, budget: Budget, *, trainer=None,
                  progress=None) -> dict:
    """The protocol for one (task, method, optimizer): tune on validation, re-run on fresh seeds, score.

    Returns a dict with, per budget: the selected ``lr`` (and ``b_ratio``), whether it sits at the grid's
    edge, the validation score of every grid point, and the ``scores``/``test_loss``/``failed`` arrays
    over the final seeds.
    """
    b = _check_budget(budget)
    trainer = make_trainer(task, method, b) if trainer is None else trainer
    tune, final = seeds(seed, b)
    chunk = b.tune_seeds * b.lr_points
    g = _grid(optimizer, method, b)
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
def method_results(task_name: str, method: str, seed: int, budget: Budget) -> dict:
    """Cached: the protocol for one (task, method), both optimizers (one compiled program)."""
    task = make_task(task_name, seed)
    trainer = make_trainer(task, method, budget)
    return {opt: tune_and_test(task, method, opt, seed, budget, trainer=trainer) for opt in OPTIMIZERS}


def run(methods, *, seed: int = 0, budget: Budget, tasks, progress: bool = True) -> dict:
    """``results[task][method][optimizer]`` for the given methods and tasks (e.g. :data:`TASKS` or
    :data:`FAST_TASKS`), cached per (task, method, seed, budget), with a progress bar over the sweeps."""
    from tqdm.auto import tqdm

    _check_budget(budget)
    tasks = tuple(tasks)
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"methods: unknown method {m!r}; allowed: {tuple(METHODS)}")
    for t in tasks:
        if t not in TASKS:
            raise ValueError(f"tasks: unknown task {t!r}; allowed: {TASKS}")
    pairs = [(t, m) for t in tasks for m in methods]
    out: dict = {t: {} for t in tasks}
    for t, m in tqdm(pairs, desc="protocol sweeps", disable=not progress, leave=False):
        out[t][m] = method_results(t, m, seed, budget)
    return out


def cells(results: dict):
    """Every (task, budget, optimizer) cell of a results dict, in table order."""
    return [(t, b, o) for t in results for b in BUDGETS for o in OPTIMIZERS]


def scores(results: dict, method: str, cell) -> np.ndarray:
    t, b, o = cell
    return np.asarray(results[t][method][o][b]["scores"])
