"""The compiled training engine: one jit-compiled ``lax.scan`` over steps, ``vmap`` over seeds and grids.

A :class:`Trainer` (hashable: model, optimizer, budget) is compiled once; calling it again with other data
of the same shapes, other learning rates or seeds reuses the compiled program. A sweep over a grid of
hyper-parameters × seeds is one vmapped call, sharded over the devices when there are several.

Example:
    >>> import jax.numpy as jnp
    >>> from toyllora.config import LoraConfig
    >>> from toyllora.data import teacher_student
    >>> from toyllora.models import LinearLoRA
    >>> from toyllora.train import Trainer, grid
    >>> t = teacher_student(seed=0, d_in=8, d_out=4, n_train=32, n_test=32, shift_rank=1)
    >>> tr = Trainer(LinearLoRA(LoraConfig(rank=1, alpha=1.0)), optimizer="adam", steps=200, stride=50)
    >>> h = tr.run(t.W0, t.data, {"lr": 0.05}, seed=0)
    >>> bool(h.metrics["train_loss"][-1] < 0.05 * h.metrics["train_loss"][0]), int(h.diverged_step)
    (True, -1)
    >>> hs = tr.sweep(t.W0, t.data, grid(lr=[0.01, 0.05]), seeds=[0, 1, 2])
    >>> hs.metrics["train_loss"].shape   # (grid, seeds, records)
    (2, 3, 5)
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from toyllora import adalora, allora, lora, models
from toyllora.config import LoraConfig

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")


class History(NamedTuple):
    """What a run returns. ``metrics[name]`` has a leading records axis (step 0, stride, 2·stride, ...)."""

    metrics: dict
    steps: Any            # (records,) step index of each record
    diverged_step: Any    # first step whose loss or update was non-finite (the run stops there), or -1
    params: Any           # final trainable parameters
    frozen: Any           # frozen part (residual weights, biases)


def grid(**axes) -> dict:
    """The Cartesian product of hyper-parameter lists, as flat arrays of equal length.

    >>> {k: v.tolist() for k, v in grid(lr=[0.1, 0.2], ratio=[1.0, 16.0]).items()}
    {'lr': [0.1, 0.1, 0.2, 0.2], 'ratio': [1.0, 16.0, 1.0, 16.0]}
    """
    if not axes:
        raise ValueError("grid: needs at least one axis, e.g. grid(lr=[...])")
    names = list(axes)
    combos = list(itertools.product(*[list(np.atleast_1d(axes[n])) for n in names]))
    return {n: np.asarray([c[i] for c in combos], dtype=np.float64) for i, n in enumerate(names)}


def make_optimizer(name: str, hp: dict, params=None) -> optax.GradientTransformation:
    """An optax optimizer from a name and hyper-parameters (which may be traced scalars).

    ``hp`` keys: ``lr`` (required), ``b_ratio`` (LoRA+: B's learning rate is ``b_ratio · lr``, through
    ``optax.partition`` on the parameter structure), ``momentum`` (default 0.9), ``weight_decay``
    (adamw, default 1e-4).
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer: unknown value {name!r}; allowed: {OPTIMIZERS}")
    unknown = set(hp) - {"lr", "b_ratio", "momentum", "weight_decay"}
    if unknown:
        raise ValueError(f"hp: unknown hyper-parameters {sorted(unknown)}; allowed: lr, b_ratio, momentum, "
                         "weight_decay")
    if "lr" not in hp:
        raise ValueError("hp: 'lr' (the learning rate) is required")

    def base(lr):
        if name == "sgd":
            return optax.sgd(lr)
        if name == "momentum":
            return optax.sgd(lr, momentum=hp.get("momentum", 0.9))
        if name == "adam":
            return optax.adam(lr)
        return optax.adamw(lr, weight_decay=hp.get("weight_decay", 1e-4))

    if "b_ratio" not in hp:
        return base(hp["lr"])
    transforms = {"A": base(hp["lr"]), "B": base(hp["lr"] * hp["b_ratio"]),
                  "magnitude": base(hp["lr"]), "other": base(hp["lr"])}
    return optax.partition(transforms, lora.factor_labels)


def _tree_where(cond, new, old):
    return jax.tree.map(lambda a, b: jnp.where(cond, a, b), new, old)


def _all_finite(tree):
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def _adapter_metrics(cfg, layers) -> dict:
    """Norms of MoRA's M or AdaLoRA's P, Λ, Q (per layer and overall), ||ΔW||, row norms, AdaLoRA ranks."""
    fro = lambda a: jnp.sqrt(jnp.sum(jnp.square(a)))
    fields = ("M",) if cfg.adapter == "mora" else ("P", "E", "Q")
    out = {}
    for f in fields:
        out[f"layer_norm_{f}"] = jnp.stack([fro(getattr(p, f)) for p in layers])
        out[f"norm_{f}"] = jnp.sqrt(jnp.sum(jnp.square(out[f"layer_norm_{f}"])))
    deltas = [lora.delta(p, cfg) for p in layers]
    out["delta_norm"] = jnp.sqrt(sum(jnp.sum(jnp.square(d)) for d in deltas))
    out["rownorms"] = jnp.concatenate([jnp.linalg.norm(d, axis=1) for d in deltas])
    if cfg.adapter == "adalora":
        out["layer_rank"] = jnp.stack([jnp.sum(p.E != 0) for p in layers])  # nonzero singular values
        out["orth_penalty"] = adalora.orthogonality_penalty(tuple(layers))
    return out


def default_metrics(model, base, frozen, params, data) -> dict:
    """Train/test loss (and accuracy), ||A||, ||B||, ||ΔW||, per-layer norms and the row norms of BA.

    MoRA and AdaLoRA models report the norms of their own factors instead (``norm_M``; ``norm_P``,
    ``norm_E``, ``norm_Q``), ``delta_norm``, the row norms of ``ΔW`` and, for AdaLoRA, ``layer_rank`` (the
    nonzero singular values per layer) and ``orth_penalty``.
    """
    out = {"train_loss": models.loss(model, frozen, params, data.X, data.Y),
           "test_loss": models.loss(model, frozen, params, data.X_test, data.Y_test)}
    if model.task == "classification":
        out["train_acc"] = models.accuracy(model, frozen, params, data.X, data.Y)
        out["test_acc"] = models.accuracy(model, frozen, params, data.X_test, data.Y_test)
    layers = params if isinstance(params, tuple) else (params,)
    if model.cfg is None:
        bases = base if isinstance(base, tuple) else (base,)
        bases = tuple(b[0] if isinstance(b, tuple) else b for b in bases)
        out["delta_norm"] = jnp.sqrt(sum(jnp.sum(jnp.square(W - B0)) for W, B0 in zip(layers, bases)))
        return out
    if getattr(model.cfg, "adapter", "lora") != "lora":
        out.update(_adapter_metrics(model.cfg, layers))
        return out
    fro = lambda a: jnp.sqrt(jnp.sum(jnp.square(a)))
    out["layer_norm_A"] = jnp.stack([fro(p.A) for p in layers])
    out["layer_norm_B"] = jnp.stack([fro(p.B) for p in layers])
    out["norm_A"] = jnp.sqrt(jnp.sum(jnp.square(out["layer_norm_A"])))
    out["norm_B"] = jnp.sqrt(jnp.sum(jnp.square(out["layer_norm_B"])))
    out["delta_norm"] = jnp.sqrt(sum(jnp.sum(jnp.square(lora.delta(p, model.cfg))) for p in layers))
    out["rownorms"] = jnp.concatenate([allora.product_row_norms(p.A, p.B) for p in layers])
    return out


@dataclasses.dataclass(frozen=True)
class Trainer:
    """A training budget for one model and optimizer, compiled once per distinct Trainer.

    Attributes:
      model: a model from :mod:`toyllora.models`.
      optimizer: one of ``sgd, momentum, adam, adamw`` or a callable ``hp -> optax.GradientTransformation``.
      steps: number of optimizer steps (a multiple of ``stride``).
      stride: metrics are recorded at step 0 and every ``stride`` steps.
      batch_size: mini-batch size, or None for full batch. Each step draws ``batch_size`` indices uniformly
        with replacement (i.i.d. SGD sampling; a per-step permutation costs a sort per run and step).
      objective: optional ``objective(model, frozen, params, X, Y, key) -> scalar`` replacing the default
        (the model's loss in train mode, dropout masks drawn from ``key``), e.g. a closed-form expected loss.
      init: optional ``init(model, key, base) -> (frozen, params)`` replacing ``model.init``.
      metrics: optional ``metrics(model, base, frozen, params, data) -> dict`` replacing
        :func:`default_metrics`.

    The baselines that need more than an optimizer get it here, from the model's config:

    * ``init="lora_ga"`` (LoRA-GA): without an ``init``, the adapters are created by
      ``model.init(key, base, grad=models.first_gradients(model, base, data.X, data.Y))`` — the first full
      gradient on the whole training set (the expected gradient that LoRA-GA's averaged batches estimate).
    * ``adapter="adalora"``: the optimizer (named or from the callable) is wrapped in
      :func:`toyllora.adalora.allocate_ranks` with ``cfg.allocation`` (pass the plain base optimizer), and
      ``allocation.orth_reg × adalora.orthogonality_penalty(params)`` is added to the objective (the default
      or the one given). ``allocation.total_steps`` is the schedule's ``T`` and must equal ``steps``.
    """

    model: Any
    optimizer: str | Callable = "adam"
    steps: int = 100
    stride: int = 10
    batch_size: int | None = None
    objective: Callable | None = None
    init: Callable | None = None
    metrics: Callable | None = None

    def __post_init__(self):
        if isinstance(self.optimizer, str) and self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: unknown value {self.optimizer!r}; allowed: {OPTIMIZERS} or a callable")
        for name in ("steps", "stride"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {v!r}")
        if self.steps % self.stride:
            raise ValueError(f"stride: must divide steps = {self.steps}, got {self.stride}")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ValueError(f"batch_size: must be None or an integer >= 1, got {self.batch_size!r}")
        cfg = self._cfg()
        if cfg is not None and cfg.adapter == "adalora" and cfg.allocation.total_steps != self.steps:
            raise ValueError(f"steps: an AdaLoRA model's budget schedule has T = allocation.total_steps = "
                             f"{cfg.allocation.total_steps}; steps must equal it, got {self.steps}")

    # -- one run -------------------------------------------------------------------------------------
    def _cfg(self):
        """The model's LoraConfig, or None (full fine-tuning, or a model configured otherwise)."""
        cfg = getattr(self.model, "cfg", None)
        return cfg if isinstance(cfg, LoraConfig) else None

    def _optimizer(self, hp):
        opt = self.optimizer(hp) if callable(self.optimizer) else make_optimizer(self.optimizer, hp)
        cfg = self._cfg()
        if cfg is not None and cfg.adapter == "adalora":
            opt = adalora.allocate_ranks(opt, cfg.allocation)
        return opt

    def _objective(self, frozen, params, X, Y, key):
        if self.objective is not None:
            value = self.objective(self.model, frozen, params, X, Y, key)
        else:
            value = models.loss(self.model, frozen, params, X, Y, train=True, key=key)
        cfg = self._cfg()
        if cfg is not None and cfg.adapter == "adalora" and cfg.allocation.orth_reg > 0:
            value = value + cfg.allocation.orth_reg * adalora.orthogonality_penalty(params)
        return value

    def _init(self, key, base, data):
        if self.init is not None:
            return self.init(self.model, key, base)
        cfg = self._cfg()
        if cfg is not None and cfg.needs_gradient:
            grad = models.first_gradients(self.model, base, data.X, data.Y)
            return self.model.init(key, base, grad=grad)
        return self.model.init(key, base)

    def _run(self, base, data, hp, key):
        model = self.model
        k_init, k_train = jax.random.split(key)
        frozen, params = self._init(k_init, base, data)
        opt = self._optimizer(hp)
        state = opt.init(params)
        n = data.X.shape[0]
        if self.batch_size is not None and self.batch_size > n:
            raise ValueError(f"batch_size: must be <= n_train = {n}, got {self.batch_size}")
        value_and_grad = jax.value_and_grad(self._objective, argnums=1)
        metric_fn = self.metrics or default_metrics

        def step(carry, t):
            # ``prev`` holds the parameters before the last update, so that a run whose loss turns
            # non-finite is rolled back to the last parameters with a finite loss and stops there.
            params, prev, state, diverged = carry
            kb, kd = jax.random.split(jax.random.fold_in(k_train, t))
            X, Y = data.X, data.Y
            if self.batch_size is not None:
                idx = jax.random.randint(kb, (self.batch_size,), 0, n)
                X, Y = X[idx], Y[idx]
            loss, grads = value_and_grad(frozen, params, X, Y, kd)
            updates, new_state = opt.update(grads, state, params)
            new_params = optax.apply_updates(params, updates)
            alive = diverged < 0
            loss_ok = jnp.isfinite(loss)
            step_ok = loss_ok & _all_finite(new_params)
            keep = alive & step_ok
            rolled = _tree_where(alive & ~loss_ok, prev, params)
            next_params = _tree_where(keep, new_params, rolled)
            next_prev = _tree_where(keep, params, prev)
            state = _tree_where(keep, new_state, state)
            diverged = jnp.where(alive & ~step_ok, t.astype(jnp.int32), diverged)
            return (next_params, next_prev, state, diverged), None

        def block(carry, i):
            carry, _ = jax.lax.scan(step, carry, i * self.stride + jnp.arange(self.stride))
            return carry, metric_fn(model, base, frozen, carry[0], data)

        first = metric_fn(model, base, frozen, params, data)
        carry0 = (params, params, state, jnp.array(-1, jnp.int32))
        (params, _, _, diverged), rest = jax.lax.scan(block, carry0, jnp.arange(self.steps // self.stride))
        metrics = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, rest)
        steps = jnp.arange(self.steps // self.stride + 1) * self.stride
        return History(metrics, steps, diverged, params, frozen)

    def run(self, base, data, hp: dict, seed: int = 0) -> History:
        """One run (jit-compiled once per Trainer)."""
        validate_data(data)
        return _compiled_single(self)(base, data, _hp_arrays(hp), jax.random.key(seed))

    # -- many runs -----------------------------------------------------------------------------------
    def sweep(self, base, data, hp_grid: dict, seeds, *, chunk_size: int | None = None,
              progress: bool = False, desc: str = "sweep") -> History:
        """All ``grid × seeds`` runs as one vmapped, compiled call (sharded over devices when several).

        Args:
          hp_grid: dict of equal-length 1-D arrays (one entry per setting), e.g. from :func:`grid`.
          seeds: a list of integer seeds (or an int ``S`` for ``range(S)``).
          chunk_size: run the flattened runs in chunks of this many (same compiled call, padded), with a
            progress bar when ``progress``.

        Returns:
          A :class:`History` whose arrays have leading axes ``(G, S)``.
        """
        validate_data(data)
        seeds = list(range(seeds)) if isinstance(seeds, int) else [int(s) for s in seeds]
        lengths = {len(np.atleast_1d(v)) for v in hp_grid.values()}
        if len(lengths) != 1:
            raise ValueError(f"hp_grid: all entries must have the same length, got lengths {sorted(lengths)}")
        G, S = lengths.pop(), len(seeds)
        if S < 1:
            raise ValueError("seeds: need at least one seed")
        hp_flat = {k: np.repeat(np.asarray(v, dtype=np.float64), S) for k, v in hp_grid.items()}
        seed_flat = np.tile(np.asarray(seeds, dtype=np.uint32), G)
        out = run_many(self, base, data, hp_flat, seed_flat, chunk_size=chunk_size, progress=progress,
                       desc=desc)
        return jax.tree.map(lambda a: a.reshape((G, S) + a.shape[1:]), out)


def validate_data(data) -> None:
    """ValueError (naming the field) for empty, mismatched or non-finite training data."""
    for name in ("X", "X_test"):
        x = getattr(data, name)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"{name}: must be a non-empty (n, d_in) array, got shape {x.shape}")
    if data.X.shape[0] != data.Y.shape[0]:
        raise ValueError(f"Y: needs one row per row of X ({data.X.shape[0]}), got {data.Y.shape[0]}")
    if data.X_test.shape[0] != data.Y_test.shape[0]:
        raise ValueError(f"Y_test: needs one row per row of X_test ({data.X_test.shape[0]}), "
                         f"got {data.Y_test.shape[0]}")
    if data.X.shape[1] != data.X_test.shape[1]:
        raise ValueError(f"X_test: must have d_in = {data.X.shape[1]} columns, got {data.X_test.shape[1]}")
    for name in DATA_FIELDS:
        a = np.asarray(getattr(data, name))
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            raise ValueError(f"{name}: contains non-finite values (NaN or inf)")


DATA_FIELDS = ("X", "Y", "X_test", "Y_test")


def _hp_arrays(hp):
    dtype = jnp.zeros(()).dtype
    return {k: jnp.asarray(v, dtype=dtype) for k, v in hp.items()}


@functools.lru_cache(maxsize=None)
def _compiled_single(trainer: Trainer):
    return jax.jit(trainer._run)


@functools.lru_cache(maxsize=None)
def _compiled_many(trainer: Trainer):
    return jax.jit(jax.vmap(trainer._run, in_axes=(None, None, 0, 0)))


def _shard(tree, n_dev):
    """Place the leading (runs) axis across devices with jax.sharding."""
    mesh = jax.make_mesh((n_dev,), ("runs",), axis_types=(jax.sharding.AxisType.Auto,))
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("runs"))
    return jax.device_put(tree, sharding)


def run_many(trainer: Trainer, base, data, hp_flat: dict, seeds_flat, *, chunk_size=None, progress=False,
             desc="sweep") -> History:
    """``N`` independent runs (hyper-parameters and seeds given per run) as vmapped compiled calls."""
    from tqdm.auto import tqdm

    N = len(seeds_flat)
    n_dev = jax.device_count()
    chunk = N if chunk_size is None else int(chunk_size)
    chunk = int(math.ceil(chunk / n_dev) * n_dev)
    fn = _compiled_many(trainer)
    outs = []
    starts = range(0, N, chunk)
    for start in tqdm(starts, desc=desc, disable=not progress or len(starts) < 2, leave=False):
        idx = np.arange(start, start + chunk) % N  # pad by wrapping; padded runs are dropped below
        hp = _hp_arrays({k: np.asarray(v)[idx] for k, v in hp_flat.items()})
        keys = jax.vmap(jax.random.key)(jnp.asarray(np.asarray(seeds_flat)[idx], dtype=jnp.uint32))
        if n_dev > 1:
            hp, keys = _shard((hp, keys), n_dev)
        out = fn(base, data, hp, keys)
        valid = min(chunk, N - start)
        outs.append(jax.tree.map(lambda a: np.asarray(a)[:valid], out))
    return jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *outs)
