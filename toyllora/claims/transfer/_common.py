"""What the ``transfer.*`` claims share: the pre-trained base transformer, its fine-tuning tasks and one
tune-then-score protocol, the same in spirit as :mod:`toyllora.protocol` on the toys.

The rung: a pre-norm decoder (:mod:`toyllora.models.transformer`) pre-trained once on the mixture
``add, sub, copy, reverse, grammar`` (:mod:`toyllora.pretrain`, cached as ``.npz`` in the results folder)
and LoRA fine-tuned on a shifted task (:mod:`toyllora.data.sequences`):

* ``shifted``: next-token prediction on the shifted mixture (a new operation ``mul``, a permuted
  sub-vocabulary ``map``, a changed grammar rule);
* ``agree``: GLUE-like sequence classification (are two spans equal?), a new ``cls_head`` trained with the
  adapters on the last position.

Protocol (:func:`cell`): for one method, optimizer, task and master seed, ``draws`` task draws; on each,
every learning rate of a log2 grid is run with ``tune_seeds`` tuning seeds in ONE compiled, vmapped sweep
(:meth:`toyllora.train.Trainer.sweep`). The learning rate is picked per record (budget) on the tuning
seeds' mean validation loss over all draws; while the pick of any budget sits at an edge of the grid, a new
window of as many points is added beyond that edge (at most ``max_extend`` windows, the same compiled call;
the top edge first). Only then are the ``score_seeds`` scoring seeds run, at the picked learning rates
alone, each stopped after the last budget that picked it (:func:`stopped_at`). A tuning run records the
validation split only, a scoring run the test split only (:func:`eval_split`). The score of a pick is measured on the scoring seeds only, on the test split: points
``100 · (1 − test loss / base model's test loss)`` (higher is better; a run that diverged counts as the base
model, 0 points). Scores are paired across methods by (draw, scoring seed), so every comparison is an exact
sign-flip test with the draws as groups (:func:`toyllora.protocol.stats.paired_difference`), Holm within a
claim.

Example:
    >>> b = Budget(steps=4, stride=2, batch=4, n_train=8, n_val=8, n_test=8, draws=1, tune_seeds=1,
    ...            score_seeds=1, lr_points=2)
    >>> b.records
    [0, 2, 4]
    >>> [round(x, 5) for x in lr_grid("adam", b)]
    [0.00195, 0.00391]
    >>> tune_seeds(b, master=0, draw=0), score_seeds(b, master=0, draw=0)
    ([0], [500])
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from toyllora import models, optim, pretrain
from toyllora.data import Data, sequences
from toyllora.models import transformer as tf
from toyllora.protocol import methods as methods_lib
from toyllora.protocol import stats
from toyllora.train import Trainer

# The base model of record: 4 blocks (depth for the ripple), width 64, 206,400 parameters; pre-trained with
# the default schedule (1,500 AdamW steps). The smoke test uses the fast preset (2 blocks, 300 steps).
ARCH = tf.TransformerConfig(width=64, heads=4, layers=4, mlp=256)
PRETRAINING = pretrain.TransformerPretraining(arch=ARCH)
PRETRAINING_FAST = pretrain.FAST_PRETRAINING
TASKS = ("shifted", "agree")
TASK_TEXT = {"shifted": "next-token prediction on the shifted mixture (mul, map, grammar_shifted)",
             "agree": "GLUE-like classification: are two spans equal (agree)"}
OPTIMIZERS = ("sgd", "adam")
LR_START = {"adam": -9, "sgd": -4}    # log2 of the lowest learning rate of each optimizer's grid
RESULTS_ENV = "TOYLLORA_RESULTS"       # the results folder the base model is cached in (set by the harness)
DRAW_OFFSET, SCORE_OFFSET, MASTER_OFFSET = 1000, 500, 100_000


@dataclasses.dataclass(frozen=True)
class Budget:
    """The fine-tuning budget and the protocol's sample sizes (one frozen block of a claim's setup)."""

    fast: bool = False        # the fast pre-trained model (2 blocks) instead of the model of record
    steps: int = 100
    stride: int = 25          # a record (validation and test loss) every ``stride`` steps
    batch: int = 16
    n_train: int = 256
    n_val: int = 128
    n_test: int = 128
    draws: int = 2
    tune_seeds: int = 2
    score_seeds: int = 6       # = lr_points × tune_seeds: the scoring call is a tuning call's shape
    lr_points: int = 3
    max_extend: int = 2
    rank: int = 8
    targets: tuple = ("q", "v")

    def __post_init__(self):
        for name in ("steps", "stride", "batch", "n_train", "n_val", "n_test", "draws", "tune_seeds",
                     "score_seeds", "lr_points", "rank"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {v!r}")
        if self.steps % self.stride:
            raise ValueError(f"stride: must divide steps = {self.steps}, got {self.stride}")
        if self.batch > self.n_train:
            raise ValueError(f"batch: must be <= n_train = {self.n_train}, got {self.batch}")
        bad = [t for t in self.targets if t not in tf.TARGETS]
        if bad or not self.targets:
            raise ValueError(f"targets: unknown module {bad[0] if bad else None!r}; allowed: {tf.TARGETS}")

    @property
    def records(self) -> list[int]:
        return list(range(0, self.steps + 1, self.stride))


def budget_text(b: Budget) -> str:
    model = ("the fast base model (2 blocks, width 64, 300 pre-training steps)" if b.fast else
             "the base model of record (4 blocks, width 64, 206,400 parameters, 1,500 pre-training steps)")
    return (f"{model}; LoRA rank {b.rank} on {'/'.join(b.targets)} of every block; {b.steps} steps, batch "
            f"{b.batch}, {b.n_train} training sequences; {b.draws} task draws per master seed; lr tuned per "
            f"budget on the validation loss of {b.tune_seeds} tuning seeds over a {b.lr_points}-point log2 grid "
            f"(a window of {b.lr_points} more points added beyond an edge, at most {b.max_extend}×, while the pick of any "
            f"budget sits there; a pick still at an edge is a tie), scored on the "
            f"test split of {b.score_seeds} fresh seeds per draw, in points 100 (1 − test loss / base model's)")


# -- the base model ---------------------------------------------------------------------------------------


def results_dir() -> str:
    """Where the pre-trained base model is cached: ``$TOYLLORA_RESULTS`` (the harness sets it to the run's
    output folder), else ``results``."""
    return os.environ.get(RESULTS_ENV, "results")


@functools.lru_cache(maxsize=2)
def base_model(fast: bool) -> pretrain.PretrainedTransformer:
    """The pre-trained base transformer (loaded from the results folder, pre-trained once when missing)."""
    return pretrain.transformer(PRETRAINING_FAST if fast else PRETRAINING, out=results_dir(), progress=False)


def base_summary(fast: bool) -> dict:
    """The base model's parameters and pre-training / shifted-task accuracy, for the record."""
    pt = base_model(fast)
    rec = pt.record
    return {"n_params": rec["n_params"], "layers": pt.arch.layers, "width": pt.arch.width,
            "pretrain_acc": rec["pretrain"]["pretrain"]["acc"], "shifted_acc": rec["shifted"]["shifted"]["acc"],
            "pretrain_seconds": rec.get("seconds")}


# -- tasks --------------------------------------------------------------------------------------------------


def arch_for(task: str, fast: bool) -> tf.TransformerConfig:
    if task not in TASKS:
        raise ValueError(f"task: unknown value {task!r}; allowed: {TASKS}")
    arch = base_model(fast).arch
    return arch.replace(head="classify", n_classes=2) if task == "agree" else arch


def draw_seed(master: int, draw: int) -> int:
    return MASTER_OFFSET * int(master) + int(draw)


@functools.lru_cache(maxsize=32)
def task_data(task: str, seed: int, n_train: int, n_val: int, n_test: int) -> Data:
    """One task draw as a :class:`Data` whose evaluation set is the validation split followed by the test
    split (``n_val`` then ``n_test`` rows); :func:`eval_split` cuts it to the one split a run records."""
    name = "agree" if task == "agree" else None
    if task == "shifted":
        t = sequences.shifted_mixture(seed, n_train=n_train, n_val=n_val, n_test=n_test)
    elif name:
        t = sequences.task(name, seed, n_train=n_train, n_val=n_val, n_test=n_test)
    else:
        raise ValueError(f"task: unknown value {task!r}; allowed: {TASKS}")
    return Data(t.data.X, t.data.Y, jnp.concatenate([t.data_val.X_test, t.data.X_test]),
                jnp.concatenate([t.data_val.Y_test, t.data.Y_test]))


SPLITS = ("val", "test")


def eval_split(data: Data, n_val: int, split: str) -> Data:
    """A task draw (:func:`task_data`) with its evaluation set cut to one split: ``val`` (the first ``n_val``
    rows, what tuning runs record) or ``test`` (the rest, what scoring runs record). A tuning run never
    evaluates on the test split, nor a scoring run on the validation split."""
    if split not in SPLITS:
        raise ValueError(f"split: unknown value {split!r}; allowed: {SPLITS}")
    rows = slice(None, n_val) if split == "val" else slice(n_val, None)
    return Data(data.X, data.Y, data.X_test[rows], data.Y_test[rows])


def eval_metrics(model, base, frozen, params, data) -> dict:
    """``metrics(model, base, frozen, params, data)`` of the rung's trainers: loss and accuracy on the
    evaluation set (one split, :func:`eval_split`) from one forward pass."""
    logits = model.apply(frozen, params, data.X_test)
    if model.task == "classification":
        return {"loss": models.xent(logits, data.Y_test),
                "acc": jnp.mean(jnp.argmax(logits, axis=-1) == data.Y_test)}
    return {"loss": models.masked_xent(logits, data.Y_test), "acc": models.token_accuracy(logits, data.Y_test)}


# -- methods and optimizers --------------------------------------------------------------------------------


def method_config(method: str, rank: int):
    """A protocol method's :class:`~toyllora.config.LoraConfig` (:func:`toyllora.protocol.methods.method_config`)."""
    return methods_lib.method_config(method, rank)


def lr_grid(optimizer: str, b: Budget, shift: int = 0) -> list[float]:
    """The optimizer's log2 learning-rate grid, shifted by ``shift`` points."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer: unknown value {optimizer!r}; allowed: {OPTIMIZERS}")
    return [2.0 ** (LR_START[optimizer] + shift + k) for k in range(b.lr_points)]


def _optimizer(name: str, lora_plus_ratio: float | None):
    if lora_plus_ratio is None:
        return name
    return lambda hp: optim.lora_plus(hp["lr"], ratio=lora_plus_ratio, optimizer=name)


@functools.lru_cache(maxsize=64)
def make_trainer(method: str, optimizer: str, task: str, b: Budget, cfg=None) -> Trainer:
    """The compiled-once trainer of a method (or of ``cfg`` when given) on a task's model."""
    cfg = method_config(method, b.rank) if cfg is None else cfg
    model = tf.TransformerLoRA(cfg, arch_for(task, b.fast), targets=b.targets)
    ratio = 16.0 if method == "lora+16" else None
    return Trainer(model, optimizer=_optimizer(optimizer, ratio), steps=b.steps, stride=b.stride,
                   batch_size=b.batch, metrics=eval_metrics)


def tune_seeds(b: Budget, master: int, draw: int) -> list[int]:
    return [DRAW_OFFSET * draw + MASTER_OFFSET * master + s for s in range(b.tune_seeds)]


def score_seeds(b: Budget, master: int, draw: int) -> list[int]:
    return [DRAW_OFFSET * draw + MASTER_OFFSET * master + SCORE_OFFSET + s for s in range(b.score_seeds)]


# -- the protocol -----------------------------------------------------------------------------------------


def _points(test_loss, base_loss, diverged):
    pts = 100.0 * (1.0 - np.asarray(test_loss, np.float64) / base_loss)
    return np.where(np.asarray(diverged)[..., None] >= 0, 0.0, np.nan_to_num(pts, nan=0.0))


def chunk_size(b: Budget) -> int:
    """Runs per compiled call, the same for a tuning window (``lr_points × tune_seeds``) and a picked lr's
    scoring seeds (padded up to it, or in several calls): one program per trainer."""
    return max(b.lr_points * b.tune_seeds, b.score_seeds)


def _sweep(tr: Trainer, b: Budget, task: str, master: int, lrs, seeds_of, split: str) -> list[dict]:
    """Every lr × seed run on every draw (``seeds_of(b, master, draw)`` names the seeds), recording one
    split: per draw, arrays ``(lr, seed, record)`` of validation loss (``split="val"``; a diverged run
    counts as the base model) or of test points and test accuracy (``split="test"``), and each run's
    divergence step."""
    base = base_model(b.fast).base
    out = []
    for d in range(b.draws):
        data = eval_split(task_data(task, draw_seed(master, d), b.n_train, b.n_val, b.n_test), b.n_val, split)
        h = tr.sweep(base, data, {"lr": np.asarray(lrs)}, seeds_of(b, master, d), chunk_size=chunk_size(b))
        m = jax.tree.map(np.asarray, h.metrics)
        base_loss = float(m["loss"][0, 0, 0])       # record 0: the base model (B = 0, or an equal function)
        div = np.asarray(h.diverged_step)
        if split == "val":
            out.append({"val": np.where(div[..., None] >= 0, base_loss, np.nan_to_num(m["loss"], nan=base_loss)),
                        "diverged": div})
        else:
            out.append({"points": _points(m["loss"], base_loss, div), "acc": np.asarray(m["acc"], np.float64),
                        "diverged": div})
    return out


def _tune(tr: Trainer, b: Budget, task: str, master: int, optimizer: str):
    """Phase 1: the tuning seeds over the grid, grown by whole windows beyond an edge while the pick of any
    budget sits there (at most ``max_extend`` windows; the top edge first). Returns ``(lrs, val, picks,
    diverged)``: ``val[k, i]`` the tuning seeds' mean validation loss over all draws at record ``k`` and
    ``lrs[i]``, ``picks[k]`` the index of the lr picked for record ``k`` (0 for record 0, the base model)."""
    runs, shift, low, high = {}, 0, 0, 0        # the shifts of the window to run, and of the lowest/highest
    for extension in range(b.max_extend + 1):
        window = lr_grid(optimizer, b, shift)    # a whole window per sweep: one compiled shape
        res = _sweep(tr, b, task, master, window, tune_seeds, "val")
        for i, lr in enumerate(window):
            runs[lr] = [{"val": r["val"][i], "diverged": r["diverged"][i]} for r in res]
        lrs = sorted(runs)
        val = np.array([[np.mean([r["val"][:, k] for r in runs[lr]]) for lr in lrs]
                        for k in range(len(b.records))])
        picks = np.argmin(val[1:], axis=1)      # every budget (record 0 is the base model)
        up, down = bool(np.any(picks == len(lrs) - 1)), bool(np.any(picks == 0))
        if extension == b.max_extend or not (up or down):
            break
        if up:
            high += b.lr_points
            shift = high
        else:
            low -= b.lr_points
            shift = low
    diverged = sum(int(np.sum(r["diverged"] >= 0)) for lr in lrs for r in runs[lr])
    return lrs, val, np.concatenate([[0], picks]), diverged


def cell(method: str, optimizer: str, task: str, master: int, b: Budget, cfg=None, trainer=None) -> dict:
    """The protocol for one method, optimizer and task (see the module docstring); cached (however the
    arguments are passed), so the claims of one process share their runs. ``cfg`` or a whole ``trainer`` replace the method's (``method`` then only
    names the cell).

    Two phases: the tuning seeds pick an lr per record (:func:`_tune`); only then are the scoring seeds run,
    at the picked lrs alone (one compiled call per picked lr and draw), so no scoring run can take part in
    a choice and none is spent on an lr that was not picked.

    Returns ``{"lrs", "pick" (per record), "at_edge" (per record), "points" (record, draw·score seed),
    "acc" (same), "val" (record, lr), "diverged" (count of runs that diverged; a scoring run up to the
    last budget it scores)}``; ``points[k]`` are the scoring seeds'
    points at the lr picked for record ``k``, ordered draw-major (pairs across methods).
    """
    return _cell(method, optimizer, task, int(master), b, cfg, trainer)


def stopped_at(tr: Trainer, steps: int) -> Trainer:
    """The trainer's runs stopped after ``steps`` (a multiple of its stride): their records are the first
    records of the full runs (a step's batch and dropout keys depend on the seed and the step alone), at a
    fraction of the cost. A scoring run needs no step after the last budget that picked its lr. A trainer
    whose runs depend on the whole budget (AdaLoRA's rank schedule) is returned unchanged."""
    if steps >= tr.steps or getattr(tr._cfg(), "adapter", None) == "adalora":
        return tr
    return dataclasses.replace(tr, steps=steps)


@functools.lru_cache(maxsize=None)
def _cell(method, optimizer, task, master, b, cfg, trainer) -> dict:
    tr = trainer if trainer is not None else make_trainer(method, optimizer, task, b, cfg)
    lrs, val, picks, diverged = _tune(tr, b, task, master, optimizer)
    scored = {}
    for p in sorted(set(int(p) for p in picks[1:])):      # record 0 (step 0) is the base model at any lr
        last = max(k for k, q in enumerate(picks) if k > 0 and q == p)     # the last record that picked it
        scored[p] = _sweep(stopped_at(tr, last * b.stride), b, task, master, [lrs[p]], score_seeds, "test")
        diverged += sum(int(np.sum(r["diverged"] >= 0)) for r in scored[p])
    scored[0] = scored.get(0, scored[int(picks[1])])
    points = np.array([np.concatenate([r["points"][0, :, k] for r in scored[int(p)]]) for k, p in enumerate(picks)])
    acc = np.array([np.concatenate([r["acc"][0, :, k] for r in scored[int(p)]]) for k, p in enumerate(picks)])
    return {"lrs": lrs, "pick": [lrs[p] for p in picks],
            "at_edge": [bool(p == 0 or p == len(lrs) - 1) for p in picks],
            "points": points, "acc": acc, "val": val, "diverged": diverged}


cell.cache_clear = _cell.cache_clear     # clears the runs behind cell (as lru_cache's)


def groups(b: Budget) -> np.ndarray:
    """The draw label of each scoring pair (draw-major, as :func:`cell` orders them)."""
    return np.repeat(np.arange(b.draws), b.score_seeds)


def compare(a: dict, b_: dict, b: Budget, record: int = -1, name: str = "") -> dict:
    """``a − b`` in points at one record: the exact sign-flip test with draws as groups; a cell where either
    pick sits at a grid edge is flagged (it counts for neither side after :func:`holm`)."""
    d = stats.paired_difference(a["points"][record], b_["points"][record], groups=groups(b))
    d.update(name=name, edge=bool(a["at_edge"][record] or b_["at_edge"][record]),
             lr_a=a["pick"][record], lr_b=b_["pick"][record])
    return d


def holm(diffs: list[dict]) -> list[dict]:
    """Holm over a claim's comparisons; an edge comparison is then a win for neither side."""
    out = stats.compare_all(diffs, "holm") if diffs else []
    for d in out:
        if d["edge"]:
            d["win"] = 0
    return out


def summary(c: dict, record: int = -1) -> dict:
    """A cell's JSON-ready summary at one record: pick, edge, mean points and accuracy."""
    return {"lr": c["pick"][record], "at_edge": c["at_edge"][record], "points": float(np.mean(c["points"][record])),
            "acc": float(np.mean(c["acc"][record])), "diverged_runs": c["diverged"], "grid": c["lrs"]}


def diff_rows(diffs: list[dict]) -> list[list[str]]:
    return [[d["name"], f"{d['mean']:+.2f} [{d['lo']:+.2f}, {d['hi']:+.2f}]", f"{d['p_adjusted']:.3g}",
             {1: "win", -1: "loss", 0: "tie"}[d["win"]] + (" (edge)" if d["edge"] else "")] for d in diffs]
