"""What the ripple claims share: the scales and network kinds of ``ripple.bound`` and ``ripple.normalization``,
and the protocol runs (tuned on validation, scored on fresh seeds and task draws) on the deep fine-tuning toy
that ``ripple.hurts``, ``ripple.performance`` and ``allora.input-gradient`` compare (cached per process)."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from toyllora import models, protocol
from toyllora.claims import fmt
from toyllora.config import LoraConfig
from toyllora.data import deep_teacher
from toyllora.plotting import figure, legend
from toyllora.protocol import stats
from toyllora.theory import ripple
from toyllora.train import Trainer

SCALES = (0.25, 1.0, 4.0, 16.0)   # s = alpha / r
KINDS = ripple.KINDS              # ("aligned", "random")
INPUT_SEED_OFFSET = 10_000        # the random inputs of network seed k come from default_rng(10_000 + k)


def random_inputs(seed: int, n: int, d: int):
    """``n`` Gaussian inputs for the networks of seed ``seed`` (NumPy float64)."""
    return np.random.default_rng(INPUT_SEED_OFFSET + seed).standard_normal((n, d))


def exponent_fraction(curve, s, ratio):
    """Measured per-layer log-growth of ``curve`` over depth, as a fraction of the bound's ``log(1 + s m)``."""
    return float(np.log(ripple.growth_rate(curve)) / np.log1p(s * ratio))


# -- the protocol on the deep fine-tuning toy: ripple.hurts, ripple.performance, allora.input-gradient ----
ALLORA = "ALLoRA"
SCALED = "ALLoRA, input grad scaled"
TASK_KINDS = ("plain", "plateau")
# protocol.FULL_BUDGET with a 200-step long budget (the toy is solved to < 1 % of the base loss by then)
RIPPLE_BUDGET = dataclasses.replace(protocol.FULL_BUDGET, long=200)


@dataclasses.dataclass(frozen=True)
class Toy:
    """The deep fine-tuning toy and its protocol budget (one definition: the three claims share the runs).

    ``plain``: data.deep_teacher (gaussian base ``W_l ~ N(0, 1/d)``, every layer shifted by a rank-``shift_rank``
    matrix of norm ``shift``), LoRA's PEFT init (A kaiming-uniform, B = 0). ``plateau``: the same teacher with
    A started at ``plateau_init`` times PEFT's init (B = 0), so that the product starts near the saddle at 0 and
    under SGD the loss stays near the base model's for a sizeable part of the short budget (measured by
    ``ripple.hurts``: the escape step). Both: width ``d``, ``n_train`` training, ``n_test`` validation and as
    many test inputs, LoRA rank ``rank`` on every layer.
    """

    budget: protocol.Budget = RIPPLE_BUDGET
    depths: tuple = (2, 4, 8)
    tasks: tuple = TASK_KINDS
    scales: tuple = SCALES              # LoRA's s = alpha / r
    d: int = 8
    n_train: int = 64
    n_test: int = 128
    shift_rank: int = 1
    shift: float = 1.0
    rank: int = 2
    plateau_init: float = 1e-3

    def methods(self, allora: bool = True, scaled: bool = False) -> tuple:
        return tuple(lora_name(s) for s in self.scales) + ((ALLORA,) if allora else ()) + ((SCALED,) if scaled else ())


FAST_TOY = Toy(budget=protocol.FAST_BUDGET, depths=(2,), tasks=("plain",), scales=(1.0, 16.0))
FAST_TOY_DEPTHS = dataclasses.replace(FAST_TOY, depths=(2, 3))   # ripple.hurts compares two depths


def toy_text(t: Toy) -> str:
    """The toy and protocol in words, for the rules."""
    b = t.budget
    return (f"Deep multilinear toy (data.deep_teacher: gaussian base, width {t.d}, n = {t.n_train}, every layer "
            f"shifted by a rank-{t.shift_rank} matrix of norm {fmt(t.shift)}), LoRA rank {t.rank} on every layer, "
            f"depths L in {fmt(t.depths)}; two tasks: 'plain' (PEFT init) and 'plateau' (A started at "
            f"{fmt(t.plateau_init)} × PEFT's init, B = 0: the product starts near the saddle). Protocol "
            f"(protocol.tune_and_test): {b.draws} task draws per master seed; lr tuned per (method, s, depth, "
            f"task, optimizer, budget) on the validation split over {b.lr_points} log2 points × {b.tune_seeds} "
            f"seeds × every draw, extended by log2 steps (at most {b.max_extension}) while the pick sits at an "
            f"edge; scored on the test split of {b.final_seeds} fresh seeds per draw (paired across methods), in "
            f"points = 100 (1 − test loss / base model's), SGD and Adam, batch {b.batch_size}, {b.short} and "
            f"{b.long} steps. LoRA at s is run exactly as LoRA at s = 1 with B's learning rate × s² (SGD) or × s "
            "(Adam) (A' = A, B' = sB), its grid placed so that B's rate spans the common grid (as the protocol "
            "places LoRA+'s)")


def lora_name(s) -> str:
    return f"LoRA s={float(s):g}"


def method_config(name: str, rank: int) -> LoraConfig:
    """The LoraConfig of a method name: ``LoRA s=<s>`` (alpha = s·r; s = 1 as scaling="none"), ``ALLoRA``
    (eta = the default, s = 1) or ``ALLoRA, input grad scaled`` (``scale_input_grad=True``)."""
    if name == ALLORA:
        return LoraConfig(rank=rank, method="allora", scaling="none")
    if name == SCALED:
        return LoraConfig(rank=rank, method="allora", scaling="none", scale_input_grad=True)
    if name == "LoRA s=1":
        return LoraConfig(rank=rank, scaling="none")
    if name.startswith("LoRA s="):
        return LoraConfig(rank=rank, alpha=float(name[len("LoRA s="):]) * rank)
    raise ValueError(f"method: unknown name {name!r}; use 'LoRA s=<s>', 'ALLoRA' or 'ALLoRA, input grad scaled'")


def _model(cfg: LoraConfig, init_scale=None):
    return models.MultilinearLoRA(cfg if init_scale is None else cfg.replace(init_scale=init_scale))


@functools.lru_cache(maxsize=None)
def toy_tasks(kind: str, L: int, seed: int, t: Toy) -> tuple:
    """The task draws (protocol.draw_seeds of the master seed) of one task kind at depth ``L``."""
    if kind not in TASK_KINDS:
        raise ValueError(f"kind: unknown value {kind!r}; allowed: {TASK_KINDS}")
    model_fn = functools.partial(_model, init_scale=t.plateau_init if kind == "plateau" else None)
    draws = []
    for ds in protocol.draw_seeds(seed, t.budget):
        base, data, val = deep_teacher(ds, layers=L, d=t.d, n_train=t.n_train, n_test=t.n_test,
                                       shift_rank=t.shift_rank, shift=t.shift, base="gaussian")
        draws.append(protocol.Task(f"deep-{kind}-L{L}", model_fn, base, data, val, t.rank, "regression"))
    return tuple(draws)


@dataclasses.dataclass(frozen=True)
class LoraAtScale:
    """LoRA with scaling factor ``s``, run exactly as LoRA at s = 1 (one compiled program for every s).

    With ``B' = s B`` (and ``A' = A``) the forward ``s B A = B' A'`` is unchanged and ``B'`` starts at 0 as ``B``
    does; SGD on (A, B) at rate η is SGD on (A', B') with A's rate η and B''s rate ``s² η``; Adam (scale
    invariant per coordinate, up to its ε) gives B' the rate ``s η``. So a grid value ``g`` of the protocol is
    run as A's rate ``g / ratio`` and B''s rate ``g``, ``ratio = s²`` (SGD) or ``s`` (Adam): LoRA(s) at
    ``lr = g / ratio`` (:func:`lora_lr`), its grid placed so that B's rate spans the common grid, as the protocol
    places LoRA+'s. ``tests/test_ripple_claims.py`` checks the runs against LoRA(s) itself.
    """

    trainer: Trainer   # the protocol Trainer of LoRA at s = 1
    s: float

    def sweep(self, base, data, hp_grid: dict, seeds, **kw):
        hp = {k: np.asarray(v, np.float64) for k, v in hp_grid.items()}
        ratio = np.where(hp["adam"] > 0.5, self.s, self.s ** 2)
        hp["lr"] = hp["lr"] / ratio
        hp["b_ratio"] = hp.get("b_ratio", np.ones_like(ratio)) * ratio
        return self.trainer.sweep(base, data, hp, seeds, **kw)


def lora_lr(grid_lr: float, s: float, optimizer: str) -> float:
    """LoRA(s)'s own learning rate for a protocol grid value (:class:`LoraAtScale`)."""
    return float(grid_lr) / (s if optimizer == "adam" else s ** 2)


@functools.lru_cache(maxsize=None)
def _trainer(kind: str, L: int, name: str, t: Toy):
    task = toy_tasks(kind, L, 0, t)[0]   # the Trainer depends on shapes only
    return protocol.make_trainer(task, "lora", t.budget, cfg=method_config(name, t.rank))


def trainer(kind: str, L: int, method: str, t: Toy):
    """The Trainer of a method (LoRA at any s: :class:`LoraAtScale` over the s = 1 Trainer)."""
    if method.startswith("LoRA s="):
        return LoraAtScale(_trainer(kind, L, "LoRA s=1", t), float(method[len("LoRA s="):]))
    return _trainer(kind, L, method, t)


def toy_results(kind: str, L: int, method: str, seed: int, t: Toy) -> dict:
    """``{optimizer: protocol.tune_and_test(...)}`` of one method on one task kind and depth; cached per
    process (the three claims share it, whatever depths, tasks and scales their Toy lists)."""
    return _toy_results(kind, L, method, seed, dataclasses.replace(t, depths=(), tasks=(), scales=()))


@functools.lru_cache(maxsize=None)
def _toy_results(kind: str, L: int, method: str, seed: int, t: Toy) -> dict:
    draws = list(toy_tasks(kind, L, seed, t))
    tr = trainer(kind, L, method, t)
    name = "allora" if method in (ALLORA, SCALED) else "lora"   # the protocol's grid (the same for both)
    return {o: protocol.tune_and_test(draws, name, o, seed, t.budget, trainer=tr) for o in protocol.OPTIMIZERS}


def cells(t: Toy):
    """Every (task, depth, optimizer, budget) cell, in table order."""
    return [(k, L, o, b) for k in t.tasks for L in t.depths for o in protocol.OPTIMIZERS for b in protocol.BUDGETS]


def cell_name(cell) -> str:
    k, L, o, b = cell
    return f"{k}/L={L}/{o}/{b}"


def entry(method: str, cell, seed: int, t: Toy) -> dict:
    """The tune_and_test entry of a method in a cell (scores, groups, at_edge, val_scores, ...)."""
    k, L, o, b = cell
    return toy_results(k, L, method, seed, t)[o][b]


def selected_val_score(res_opt: dict, budget: str) -> float:
    """The mean validation score of the selected setting of one budget."""
    e = res_opt[budget]
    i = next(j for j, (lr, r) in enumerate(zip(res_opt["grid"]["lr"], res_opt["grid"]["b_ratio"]))
             if lr == e["lr"] and r == e["b_ratio"])
    return float(e["val_scores"][i])


def compare_methods(a: str, b: str, seed: int, t: Toy, cell_list=None) -> list[dict]:
    """Paired differences of test points ``a − b`` in every cell (paired by draw and final seed; draws as
    groups); ``at_edge`` when either pick is still at an edge of its grid. No multiplicity control yet."""
    out = []
    for i, cell in enumerate(cell_list or cells(t)):
        ea, eb = entry(a, cell, seed, t), entry(b, cell, seed, t)
        d = stats.paired_difference(ea["scores"], eb["scores"], groups=ea["groups"], seed=seed + i)
        k, L, o, bud = cell
        d.update(cell=cell_name(cell), task=k, depth=L, optimizer=o, budget=bud, a=a, b=b,
                 at_edge=bool(ea["at_edge"] or eb["at_edge"]), failures_a=ea["n_failed"], failures_b=eb["n_failed"],
                 mean_a=float(np.mean(ea["scores"])), mean_b=float(np.mean(eb["scores"])))
        out.append(d)
    return out


def holm_counting_edges(diffs: list[dict]) -> list[dict]:
    """Holm over the comparisons whose picks are interior; a comparison at a grid edge keeps its raw p-value
    and interval, gets ``p_adjusted = None`` and counts for neither side (``win = 0``)."""
    inner = [d for d in diffs if not d["at_edge"]]
    adjusted = iter(stats.compare_all(inner, method="holm")) if inner else iter(())
    out = []
    for d in diffs:
        if d["at_edge"]:
            out.append({**d, "p_adjusted": None, "adjust_method": "holm", "win_unadjusted": d["win"], "win": 0})
        else:
            out.append(next(adjusted))
    return out


def count(diffs: list[dict], **where) -> dict:
    """Wins, losses, ties and edge cells among the (adjusted) comparisons matching ``where``."""
    sel = [d for d in diffs if all(d[k] == v for k, v in where.items())]
    return {"n": len(sel), "wins": sum(d["win"] == 1 for d in sel), "losses": sum(d["win"] == -1 for d in sel),
            "at_edge": sum(bool(d["at_edge"]) for d in sel),
            "ties": sum(d["win"] == 0 and not d["at_edge"] for d in sel)}


def diff_rows(diffs: list[dict]) -> str:
    """A Markdown table of comparisons: cell, both means, the interval, the adjusted p, the result."""
    rows = []
    for d in diffs:
        tag = "at edge" if d["at_edge"] else {1: "win", -1: "loss", 0: "tie"}[d["win"]]
        padj = "—" if d.get("p_adjusted") is None else f"{d['p_adjusted']:.3g}"
        rows.append([d["cell"], d["a"], f"{d['mean_a']:.3f}", d["b"], f"{d['mean_b']:.3f}",
                     f"{d['mean']:+.3g} [{d['lo']:.3g}, {d['hi']:.3g}]", padj, tag])
    return stats.markdown_table(["cell (task/depth/opt/budget)", "a", "a: points", "b", "b: points",
                                 "a − b [95% t-CI]", "p (Holm)", "result"], rows)


def plot_scores(data: dict, methods, title: str):
    """Mean test points (over draws × seeds) against depth, one panel per (task, budget); SGD solid, Adam
    dashed; a hollow marker where the pick sits at a grid edge."""
    tasks, budgets = data["tasks"], list(protocol.BUDGETS)
    fig, axes = figure(len(tasks), len(budgets), figsize=(11, 3.4 * len(tasks)), sharex=True, squeeze=False)
    depths = data["depths"]
    for r, k in enumerate(tasks):
        for c, b in enumerate(budgets):
            ax = axes[r, c]
            for i, m in enumerate(methods):
                for o, ls in (("sgd", "-"), ("adam", "--")):
                    ys = [data["points"][f"{k}/L={L}/{o}/{b}"][m] for L in depths]
                    edge = [data["edge"][f"{k}/L={L}/{o}/{b}"][m] for L in depths]
                    ax.plot(depths, [100 - y for y in ys], ls, color=f"C{i}")
                    for L, y, e in zip(depths, ys, edge):
                        ax.plot([L], [100 - y], "o", color=f"C{i}", mfc="none" if e else f"C{i}", ms=4)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xticks(depths, [str(L) for L in depths])
            ax.set_title(f"{k} task, {b} budget")
            if r == len(tasks) - 1:
                ax.set_xlabel("depth L (layers with LoRA)")
            if c == 0:
                ax.set_ylabel("100 − points (% of base loss left)")
    for i, m in enumerate(methods):
        axes[0, -1].plot([], [], color=f"C{i}", lw=4, label=m)
    axes[0, -1].plot([], [], "-", color="k", label="SGD")
    axes[0, -1].plot([], [], "--", color="k", label="Adam")
    axes[0, -1].plot([], [], "o", color="k", mfc="none", label="pick at grid edge")
    legend(axes[0, -1])
    fig.suptitle(title)
    return fig


def points_table(methods, seed: int, t: Toy) -> tuple[dict, dict]:
    """``points[cell][method]`` (mean test points) and ``edge[cell][method]`` for the figure."""
    points, edge = {}, {}
    for cell in cells(t):
        name = cell_name(cell)
        points[name] = {m: float(np.mean(entry(m, cell, seed, t)["scores"])) for m in methods}
        edge[name] = {m: bool(entry(m, cell, seed, t)["at_edge"]) for m in methods}
    return points, edge


def escape_curve(kind: str, L: int, seed: int, t: Toy, optimizer: str, method: str = "LoRA s=1",
                 budget: str = "long") -> dict:
    """The train-loss curve (median over the final seeds, relative to the base model's) of a method's
    selected setting on the first task draw, and the first recorded step at which it is at most half the
    base model's loss (None if never): the plateau, measured. Same compiled program as the protocol's."""
    e = toy_results(kind, L, method, seed, t)[optimizer][budget]
    task = toy_tasks(kind, L, seed, t)[0]
    b = t.budget
    _, final = protocol.seeds(seed, b)
    hp = {"lr": np.array([e["lr"]]), "b_ratio": np.array([e["b_ratio"]]),
          "adam": np.array([float(optimizer == "adam")])}
    h = trainer(kind, L, method, t).sweep(task.base, task.data, hp, final,
                                          chunk_size=max(b.tune_seeds * b.lr_points, 2 * b.final_seeds))
    loss = np.asarray(h.metrics["train_loss"], np.float64)[0]          # (seeds, records)
    with np.errstate(invalid="ignore"):
        rel = np.nanmedian(np.where(np.isfinite(loss), loss / loss[:, :1], np.inf), axis=0)
    steps = np.asarray(h.steps).reshape(-1)[: rel.size]
    below = np.nonzero(rel <= 0.5)[0]
    return {"steps": steps, "relative_train_loss": rel, "escape_step": int(steps[below[0]]) if below.size else None}
