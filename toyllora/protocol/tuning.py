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
from toyllora.protocol.methods import METHODS, method_config
from toyllora.protocol.tasks import TASKS, Task, make_task, score_runs
from toyllora.train import Trainer

OPTIMIZERS = ("sgd", "adam")
# Adaptive optimizers beyond Adam (allora.vs-adaptive-optimizers): each its own compiled program; the claims
# that iterate over OPTIMIZERS (SGD and Adam, one program) are unchanged by them.
ADAPTIVE_OPTIMIZERS = ("adafactor", "rownorm")
ALL_OPTIMIZERS = OPTIMIZERS + ADAPTIVE_OPTIMIZERS
OPTIMIZER_NAMES = {"sgd": "SGD", "adam": "Adam", "adafactor": "Adafactor", "rownorm": "row-normalized SGD"}
KINDS = ("sgd-adam",) + ADAPTIVE_OPTIMIZERS   # ProtocolOptimizer kinds
ADAFACTOR = dict(min_dim_size_to_factor=1, multiply_by_parameter_scale=False)   # see ProtocolOptimizer
ROWNORM_EPS = 1e-8
BUDGETS = ("short", "long")


def _select(flag, new, old):
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), new, old)


@dataclasses.dataclass(frozen=True)
class ProtocolOptimizer:
    """``hp -> optax transform``: SGD or Adam, selected per run by ``hp["adam"]`` (0 or 1), with the LoRA+ ratio
    ``hp["b_ratio"]`` on B (1 = plain); ``scaled=True`` gives scaled GD / scaled AdamW instead (Zhang &
    Pilanci; no ratio). Hashable, so Trainers that use it compile once for both optimizers.

    ``kind`` selects one of the further adaptive optimizers instead (its own compiled program, no ``adam``
    flag; the LoRA+ ratio still applies to B):

    * ``"adafactor"``: ``optax.adafactor`` as it is run for LoRA fine-tuning (HF Trainer's
      ``optim="adafactor"``): a fixed learning rate (no relative step, ``multiply_by_parameter_scale=False``),
      factored second moments for every matrix (``min_dim_size_to_factor=1``, as a large model's matrices
      are; per-row and per-column statistics), update clipping at block RMS 1, no momentum (Shazeer & Stern
      2018, arXiv:1804.04235);
    * ``"rownorm"``: row-normalized SGD, :func:`toyllora.optim.row_normalized_sgd` (every row of every
      gradient divided by its norm).

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
    kind: str = "sgd-adam"

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind: unknown value {self.kind!r}; allowed: {KINDS}")
        if self.scaled and self.kind != "sgd-adam":
            raise ValueError(f"scaled: scaled GD / AdamW is its own optimizer; allowed only with kind='sgd-adam', "
                             f"got kind={self.kind!r}")

    def __call__(self, hp):
        lr = hp["lr"]
        if self.kind != "sgd-adam":
            return _adaptive(self.kind, lr, hp.get("b_ratio", 1.0))
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


def _adaptive(kind: str, lr, b_ratio):
    """One of :data:`ADAPTIVE_OPTIMIZERS` with the LoRA+ ratio on B (after the base scaling, before the lr)."""
    plus = optim.scale_by_lora_plus(b_ratio)
    if kind == "adafactor":  # optax.adafactor(None, ...) has no lr and ends with scale(-1): lr multiplies after
        return optax.chain(optax.adafactor(None, **ADAFACTOR), plus, optax.scale(lr))
    return optax.chain(optim.normalize_by_row_norm(ROWNORM_EPS), plus, optax.scale_by_learning_rate(lr))



def optimizer_hp(optimizer: str, method: str) -> dict:
    """The constant flags of a method under an optimizer (``adam``, ``b_ratio``); any of
    :data:`ALL_OPTIMIZERS` (``adam`` is 0 for the adaptive kinds, which do not read it)."""
    if optimizer not in ALL_OPTIMIZERS:
        raise ValueError(f"optimizer: unknown value {optimizer!r}; allowed: {ALL_OPTIMIZERS}")
    return {"adam": float(optimizer == "adam"), "b_ratio": 16.0 if method == "lora+16" else 1.0}



@dataclasses.dataclass(frozen=True)
class Budget:
    """The sizes of the protocol: step budgets, the lr grid and its extension, task draws, seeds, the batch
    and LoRA+'s tuned ratios.

    A frozen dataclass, so a claim's ``Params`` can hold one (hashable, recorded as a dict).

    Attributes:
      short, long: the two step budgets scored (a short run is a prefix of the long one).
      stride: metrics are recorded every ``stride`` steps (must divide both budgets).
      lr_points, lr_step: the base grid: ``lr_points`` learning rates ``lr_step`` apart in log2.
      max_extension: how many log2 steps a grid may grow beyond an edge while the selected value sits there.
      draws: task draws (data seeds) per master seed; every score interval covers draws × seeds.
      tune_seeds, final_seeds: optimization seeds per draw for tuning (validation split) and for scoring
        (test split); disjoint, and the final seeds are the same for every method (paired).
      batch_size: mini-batch size.
      lora_plus_ratios: the ratios ``lora+tuned`` tunes over, on a grid of ``lr_points // len(ratios)``
        learning rates (so it gets as many tuning runs as every other method).
    """

    short: int
    long: int
    stride: int
    lr_points: int
    lr_step: float
    tune_seeds: int
    final_seeds: int
    batch_size: int
    lora_plus_ratios: tuple = (4.0, 16.0)
    draws: int = 3
    max_extension: int = 3

    def __post_init__(self):
        for name in ("short", "long", "stride", "lr_points", "tune_seeds", "final_seeds", "batch_size", "draws"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {v!r}")
        if self.short % self.stride or self.long % self.stride or self.short > self.long:
            raise ValueError(f"stride: must divide short ({self.short}) <= long ({self.long}), got {self.stride}")
        if self.lr_points % len(self.lora_plus_ratios):
            raise ValueError(f"lora_plus_ratios: their number must divide lr_points = {self.lr_points}, "
                             f"got {len(self.lora_plus_ratios)}")
        if isinstance(self.max_extension, bool) or not isinstance(self.max_extension, int) or self.max_extension < 0:
            raise ValueError(f"max_extension: must be an integer >= 0, got {self.max_extension!r}")


FULL_BUDGET = Budget(short=40, long=400, stride=20, lr_points=8, lr_step=1.0, tune_seeds=2, final_seeds=6,
                     batch_size=32, lora_plus_ratios=(4.0, 16.0), draws=3, max_extension=3)
FAST_BUDGET = Budget(short=20, long=100, stride=20, lr_points=4, lr_step=2.0, tune_seeds=2, final_seeds=4,
                     batch_size=32, lora_plus_ratios=(4.0, 16.0), draws=2, max_extension=1)


def budget(fast: bool) -> Budget:
    """The sizes of the protocol: :data:`FAST_BUDGET` (a smoke-test version) or :data:`FULL_BUDGET`."""
    return FAST_BUDGET if fast else FULL_BUDGET


def _check_budget(b) -> Budget:
    if not isinstance(b, Budget):
        raise ValueError(f"budget: must be a toyllora.protocol.Budget (e.g. protocol.budget(fast)), got {b!r}")
    return b


LR_TOP = {"sgd": 0.0, "adam": -1.0, "adafactor": -1.0, "rownorm": -1.0}  # log2 of the largest lr of the base grid
LORA_PLUS_SHIFT = 4.0  # log2(16): LoRA+'s grid is A's lr, placed so that B's lr (16·lr) spans the common grid


def _lr_step(method, budget: Budget) -> float:
    """The grid's log2 step: ``lora+tuned`` spreads its lr points ``len(ratios)`` times wider (equal runs)."""
    return budget.lr_step * (len(budget.lora_plus_ratios) if method == "lora+tuned" else 1)


def lr_grid(optimizer: str, budget: Budget, method: str | None = None) -> np.ndarray:
    """The base log2 learning-rate grid of an optimizer: the same points for every method, except that LoRA+'s
    (whose ``lr`` is A's, B getting ``ratio · lr``) is shifted down by log2(16) so that B's learning rate
    covers the common grid, and ``lora+tuned``'s is coarser (it also tunes the ratio)."""
    b = _check_budget(budget)
    if optimizer not in LR_TOP:
        raise ValueError(f"optimizer: unknown value {optimizer!r}; allowed: {tuple(LR_TOP)}")
    top = LR_TOP[optimizer] - (LORA_PLUS_SHIFT if method in ("lora+16", "lora+tuned") else 0.0)
    step = _lr_step(method, b)
    n = b.lr_points // (len(b.lora_plus_ratios) if method == "lora+tuned" else 1)
    return 2.0 ** (top - step * np.arange(n)[::-1])


def draw_seeds(seed: int, budget: Budget) -> list[int]:
    """The task draws (data seeds) of a master seed."""
    return [1000 * seed + d for d in range(_check_budget(budget).draws)]


def seeds(seed: int, budget: Budget):
    """``(tune_seeds, final_seeds)`` of a master seed: disjoint lists, used in every draw; the final seeds are
    the same for every method (differences are paired by draw and seed)."""
    b = _check_budget(budget)
    base = 1000 * seed
    return [base + 100 + i for i in range(b.tune_seeds)], [base + 500 + i for i in range(b.final_seeds)]


def draw_tasks(name: str, seed: int, budget: Budget) -> list:
    """The task ``name`` drawn once per draw seed of the master seed (same shapes: one compiled program)."""
    return [make_task(name, ds) for ds in draw_seeds(seed, budget)]


def make_trainer(task: Task, method: str, budget: Budget, cfg: LoraConfig | None = None,
                 objective=None, optimizer: str | None = None) -> Trainer:
    """The protocol's Trainer for a method (or an explicit ``cfg``); equal Trainers share one compile.

    ``optimizer``: ``None``, ``"sgd"`` or ``"adam"`` give the one SGD/Adam program; one of
    :data:`ADAPTIVE_OPTIMIZERS` gives that optimizer's own program."""
    b = _check_budget(budget)
    cfg = method_config(method, task.rank) if cfg is None else cfg
    kind = optimizer if optimizer in ADAPTIVE_OPTIMIZERS else "sgd-adam"
    if optimizer is not None and optimizer not in ALL_OPTIMIZERS:
        raise ValueError(f"optimizer: unknown value {optimizer!r}; allowed: {ALL_OPTIMIZERS}")
    return Trainer(task.model_fn(cfg), optimizer=ProtocolOptimizer(scaled=method == "scaled", kind=kind),
                   steps=b.long,
                   stride=b.stride,
                   batch_size=b.batch_size, metrics=tasks.metrics, objective=objective)


def _settings(optimizer, method, budget: Budget, lrs) -> dict:
    """The hyper-parameter arrays of the grid points at learning rates ``lrs`` (× ratios for lora+tuned)."""
    lrs = np.asarray(lrs, dtype=np.float64)
    flags = optimizer_hp(optimizer, method)
    if method == "lora+tuned":
        ratios = budget.lora_plus_ratios
        lr, ratio = np.repeat(lrs, len(ratios)), np.tile(np.asarray(ratios, dtype=np.float64), len(lrs))
    else:
        lr, ratio = lrs, np.full(len(lrs), flags["b_ratio"])
    return {"lr": lr, "b_ratio": ratio, "adam": np.full(len(lr), flags["adam"])}


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


STEPS = ("short", "long")


def _as_draws(tasks_) -> list:
    draws = [tasks_] if isinstance(tasks_, Task) else list(tasks_)
    if not draws or not all(isinstance(t, Task) for t in draws):
        raise ValueError("tasks: need a Task or a non-empty list of Tasks (one per task draw)")
    return draws


def tune_and_test(tasks_, method: str, optimizer: str, seed: int, budget: Budget, *, trainer=None,
                  progress=None) -> dict:
    """The protocol for one (task, method, optimizer): tune on validation, extend an edge, re-run on fresh
    seeds, score on test — over every task draw.

    Args:
      tasks_: the task draws (a list of :class:`Task` of one kind and shape, e.g. :func:`draw_tasks`), or one
        Task (one draw).
      method, optimizer: the method (:data:`METHODS`) and ``"sgd"`` / ``"adam"`` (or one of
        :data:`ADAPTIVE_OPTIMIZERS`, with a trainer from ``make_trainer(..., optimizer=optimizer)``).
      seed: the master seed (:func:`seeds`).
      budget: the :class:`Budget`.

    Selection: each budget (short, long) picks the grid point with the best mean validation score over all
    draws × tuning seeds (:func:`select`). While the pick sits at the smallest or largest learning rate tried,
    the grid grows by one log2 step beyond that edge (at most ``budget.max_extension`` times per side); a
    pick still at an edge then is reported with ``at_edge = True`` (comparisons count it as a win for
    neither side). The selected settings are re-run on the final seeds of every draw and scored on the test
    split; scores are ordered draw-major with ``groups`` giving each score's draw.

    Returns:
      ``{"grid": {lr, b_ratio} of every tried point, "short": {...}, "long": {...}, "final_seeds",
      "draw_seeds"}`` with, per budget: ``lr``, ``b_ratio``, ``lr_at_edge`` (at the edge of the base grid),
      ``at_edge`` (still at an edge after extension), ``extended`` (steps added below/above), ``tuning_runs``,
      ``val_scores`` and ``val_failures`` per tried point, and ``scores``, ``groups``, ``failed``,
      ``n_failed``, ``test_loss``, ``train_loss``, ``test_loss0``, ``train_loss0``, ``base_loss`` over the
      final runs.
    """
    b = _check_budget(budget)
    draws = _as_draws(tasks_)
    kind = draws[0].kind
    trainer = make_trainer(draws[0], method, b, optimizer=optimizer) if trainer is None else trainer
    tune, final = seeds(seed, b)
    chunk = max(b.tune_seeds * b.lr_points, len(STEPS) * b.final_seeds)
    step = _lr_step(method, b)
    steps = {"short": b.short, "long": b.long}
    base_lrs = lr_grid(optimizer, b, method)
    tried: dict[float, dict] = {}   # log2 lr -> {budget: (scores (points, draws*tune), failed)}

    def evaluate(log2_lrs):
        g = _settings(optimizer, method, b, 2.0 ** np.asarray(log2_lrs))
        per = {name: ([], []) for name in steps}
        for task in draws:
            h = trainer.sweep(task.base, task.data_val, g, tune, chunk_size=chunk)
            for name, T in steps.items():
                sc, failed = score_runs(kind, h.metrics, h.diverged_step, T // b.stride, T)
                per[name][0].append(sc), per[name][1].append(failed)
        k = len(b.lora_plus_ratios) if method == "lora+tuned" else 1
        for i, e in enumerate(log2_lrs):
            rows = slice(i * k, (i + 1) * k)
            tried[float(e)] = {name: (np.concatenate([s[rows] for s in per[name][0]], axis=1),
                                      np.concatenate([f[rows] for f in per[name][1]], axis=1))
                               for name in steps}

    evaluate(np.log2(base_lrs))
    lo0, hi0 = float(np.log2(base_lrs).min()), float(np.log2(base_lrs).max())
    extended = {"below": 0, "above": 0}

    def pick(name):
        exps = sorted(tried)
        k = len(b.lora_plus_ratios) if method == "lora+tuned" else 1
        sc = np.concatenate([tried[e][name][0] for e in exps])      # (points*k, draws*tune)
        fl = np.concatenate([tried[e][name][1] for e in exps])
        i = select(sc.mean(axis=1), fl.sum(axis=1))
        return exps, i, i // k, sc, fl

    while True:
        grow = set()
        for name in steps:
            exps, _, j, _, _ = pick(name)
            if j == 0 and extended["below"] < b.max_extension:
                grow.add(exps[0] - step)
            elif j == len(exps) - 1 and extended["above"] < b.max_extension:
                grow.add(exps[-1] + step)
        if not grow:
            break
        for e in grow:
            extended["below" if e < lo0 else "above"] += 1
        evaluate(sorted(grow))
    if progress is not None:
        progress.update(1)

    exps = sorted(tried)
    g_all = _settings(optimizer, method, b, 2.0 ** np.asarray(exps))
    out = {"grid": {"lr": g_all["lr"].tolist(), "b_ratio": g_all["b_ratio"].tolist()}}
    chosen = {}
    for name in steps:
        exps, i, j, sc, fl = pick(name)
        chosen[name] = i
        out[name] = {"lr": float(g_all["lr"][i]), "b_ratio": float(g_all["b_ratio"][i]),
                     "lr_at_edge": bool(exps[j] in (lo0, hi0)), "at_edge": bool(j in (0, len(exps) - 1)),
                     "extended": dict(extended), "tuning_runs": int(sc.size),
                     "val_scores": sc.mean(axis=1).tolist(), "val_failures": fl.sum(axis=1).tolist()}
    sel = {k: np.asarray([v[chosen[name]] for name in steps]) for k, v in g_all.items()}
    finals = []
    for task in draws:
        hf = trainer.sweep(task.base, task.data, sel, final, chunk_size=chunk)
        finals.append(hf)
    for row, (name, T) in enumerate(steps.items()):
        rec = T // b.stride
        cols = {k: [] for k in ("scores", "failed", "test_loss", "train_loss", "test_loss0", "train_loss0")}
        base_losses = []
        for hf in finals:
            m = jax.tree.map(lambda a: np.asarray(a)[row], hf.metrics)
            sc, failed = score_runs(kind, m, np.asarray(hf.diverged_step)[row], rec, T)
            cols["scores"].append(sc), cols["failed"].append(failed)
            cols["test_loss"].append(np.asarray(m["test_loss"])[:, rec])
            cols["train_loss"].append(np.asarray(m["train_loss"])[:, rec])
            cols["test_loss0"].append(np.asarray(m["test_loss"])[:, 0])
            cols["train_loss0"].append(np.asarray(m["train_loss"])[:, 0])
            base_losses.append(float(np.asarray(m["test_loss"])[0, 0]))
        cols = {k: np.concatenate(v) for k, v in cols.items()}
        out[name].update(cols, n_failed=int(cols["failed"].sum()),
                         groups=np.repeat(np.arange(len(draws)), b.final_seeds), base_loss=base_losses)
    out["final_seeds"] = final
    out["draw_seeds"] = [int(d) for d in range(len(draws))]
    return out


@functools.lru_cache(maxsize=None)
def method_results(task_name: str, method: str, seed: int, budget: Budget) -> dict:
    """Cached: the protocol for one (task, method) over the master seed's task draws, both optimizers (one
    compiled program)."""
    draws = draw_tasks(task_name, seed, budget)
    trainer = make_trainer(draws[0], method, budget)
    return {opt: tune_and_test(draws, method, opt, seed, budget, trainer=trainer) for opt in OPTIMIZERS}


@functools.lru_cache(maxsize=None)
def optimizer_results(task_name: str, method: str, optimizer: str, seed: int, budget: Budget) -> dict:
    """Cached: the protocol for one (task, method, optimizer) of :data:`ALL_OPTIMIZERS`. SGD and Adam come
    from :func:`method_results` (shared with every claim that runs them); an adaptive optimizer compiles its
    own program and gets the same lr-grid size, extension rule and seeds."""
    if optimizer in OPTIMIZERS:
        return method_results(task_name, method, seed, budget)[optimizer]
    if optimizer not in ALL_OPTIMIZERS:
        raise ValueError(f"optimizer: unknown value {optimizer!r}; allowed: {ALL_OPTIMIZERS}")
    if method == "scaled":
        raise ValueError(f"method: 'scaled' is its own optimizer (scaled GD / AdamW); not combinable with "
                         f"optimizer={optimizer!r}")
    draws = draw_tasks(task_name, seed, budget)
    trainer = make_trainer(draws[0], method, budget, optimizer=optimizer)
    return tune_and_test(draws, method, optimizer, seed, budget, trainer=trainer)


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
