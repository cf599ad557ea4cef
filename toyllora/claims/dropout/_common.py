"""What the dropout claims share: the run engine over task draws, Monte Carlo over masks against the closed
forms (:mod:`toyllora.theory.dropout`), intervals on log scale, the digits MLP set-up, and the cached sets of
runs that several claims score:

* :func:`budget_runs` — LoRA at each drop rate and ALLoRA on the digits MLP, every learning rate of a log2 grid
  (extended at an edge) × tuning and fresh seeds × task draws, with validation and test curves; scored by
  ``dropout.short-vs-long``, ``dropout.allora-fix``, ``dropout.zero-vs-small`` and ``dropout.crossover``;
* :func:`iterate_runs` — SGD on sampled dropout, on its expected loss, and with a decaying step size, on a
  linear teacher–student task; scored by ``dropout.iterates`` and ``dropout.steps-vs-stepsize``.

Every set of runs is one vmapped, compiled program per model (:func:`run_flat`): the task draw is an index into
stacked draws, the keep probability (and a sampled/expected switch) is a traced value carried in the frozen
part, so one compile serves every draw, rate, learning rate and seed. Task draws and seeds derive from the
master seed (:func:`draw_seeds`, :func:`seed_lists`).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from toyllora import lora, models, pretrain
from toyllora.claims import fmt
from toyllora.config import LoraConfig
from toyllora.conventions import DEFAULT_ETA
from toyllora.data import Data, teacher_student
from toyllora.lora import LoraParams
from toyllora.protocol import stats
from toyllora.theory import dropout as dt
from toyllora.train import Trainer

Z_MC = 4.0       # |MC mean − closed form| of a loss must stay below Z_MC standard errors
Z_MC_GRAD = 6.0  # ... and of every gradient entry below this many (Bonferroni over the entries)
HOLM = "holm"


def as_float64(x) -> float:
    return float(np.asarray(x, dtype=np.float64))


def finite_or_none(x):
    """A float for JSON: ``None`` when not finite."""
    x = float(x)
    return x if np.isfinite(x) else None


def random_adapter(key, d_in, d_out, r, scale=1.0):
    """A random LoRA adapter ``(A, B)`` with entries of unit-variance rows (``A/√d_in``, ``B/√r``)."""
    ka, kb = jax.random.split(key)
    return LoraParams(A=jax.random.normal(ka, (r, d_in)) / np.sqrt(d_in),
                      B=scale * jax.random.normal(kb, (d_out, r)) / np.sqrt(r))


# ------------------------------------------------------------------------------------ draws, seeds, intervals
def draw_seeds(seed: int, draws: int) -> list[int]:
    """The task draws (data seeds) of a master seed: ``1000·seed + d``."""
    return [1000 * seed + d for d in range(draws)]


def seed_lists(seed: int, tune: int, final: int) -> tuple[list[int], list[int]]:
    """Disjoint optimization seeds of a master seed: ``tune`` for selection, ``final`` (fresh) for scoring."""
    return [1000 * seed + 100 + i for i in range(tune)], [1000 * seed + 500 + i for i in range(final)]


def groups_of(draws: int, per_draw: int) -> np.ndarray:
    """Draw labels of draw-major units (``draws × per_draw``)."""
    return np.repeat(np.arange(draws), per_draw)


def one_sample(x, groups, name: str = "", alpha: float = stats.ALPHA) -> dict:
    """A one-sample question on per-unit values (e.g. log ratios): ``paired_difference(x, 0, groups)``, JSON-ready;
    ``alpha`` sets the test level and the interval (``1 − alpha``; e.g. Bonferroni ``0.05/k`` for k decisions)."""
    x = np.asarray(x, np.float64).reshape(-1)
    d = stats.paired_difference(x, np.zeros_like(x), groups=np.asarray(groups), alpha=alpha)
    d.pop("group_means", None)
    return {"name": name, **{k: (finite_or_none(v) if isinstance(v, float) else v) for k, v in d.items()}}


def paired(a, b, groups, name: str = "") -> dict:
    """``paired_difference(a, b, groups)`` (draw-major units), JSON-ready, with a name."""
    d = stats.paired_difference(np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1),
                                groups=np.asarray(groups))
    d.pop("group_means", None)
    return {"name": name, **{k: (finite_or_none(v) if isinstance(v, float) else v) for k, v in d.items()}}


def holm(family: list[dict]) -> list[dict]:
    """Holm over all comparisons of a claim (``stats.compare_all``); keeps names and intervals."""
    return stats.compare_all(family, method=HOLM) if family else []


def by_name(family: list[dict]) -> dict:
    return {d["name"]: d for d in family}


def exp_interval(d: dict) -> dict:
    """A one-sample result on log values, back on the original scale: geometric mean and its interval."""
    f = lambda v: None if v is None else float(np.exp(v))
    return {"geo_mean": f(d["mean"]), "lo": f(d["lo"]), "hi": f(d["hi"])}


def band_decision(lo, hi, low, high) -> int:
    """Interval against a band ``[low, high]``: +1 inside it, −1 wholly outside it, 0 straddling an edge."""
    if lo is None or hi is None:
        return 0
    if lo >= low and hi <= high:
        return 1
    if hi < low or lo > high:
        return -1
    return 0


# ------------------------------------------------------------------------------------------- the run engine
def stack_trees(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


@functools.lru_cache(maxsize=None)
def _flat_program(trainer: Trainer):
    """``vmap`` of one run over (variant index, carried extras, hyper-parameters, seed); the variants (task
    draws, data subsets) are stacked and indexed inside, so every run of a set shares one compiled program."""

    def one(bases, datas, idx, extra, hp, seed):
        pick = lambda a: a[idx]
        base = jax.tree.map(pick, bases)
        h = trainer._run((base[0], *extra, *base[1:]), jax.tree.map(pick, datas), hp, jax.random.key(seed))
        return h.metrics, h.diverged_step

    return jax.jit(jax.vmap(one, in_axes=(None, None, 0, 0, 0, 0)))


def run_flat(trainer: Trainer, bases, datas, idx, extra, hp: dict, seeds, chunk: int):
    """``N`` runs, run ``i`` on variant ``idx[i]`` (``bases[idx]``, ``datas[idx]``) with carried values
    ``extra[k][i]`` (e.g. the keep probability), hyper-parameters ``hp[name][i]`` and seed ``seeds[i]``.

    ``bases[v] = (model_base, *more)``: the run sees ``base = (model_base, *extra, *more)`` (with
    :func:`toyllora.theory.dropout.init_with_keep`: ``frozen = (model frozen, keep, ..., *more)``). Calls of
    ``chunk`` runs (the last padded by wrapping), so every call reuses one compiled program.
    Returns ``(metrics, diverged_step)`` with a leading runs axis.
    """
    N = len(seeds)
    if N == 0:
        raise ValueError("seeds: need at least one run")
    B, D = stack_trees(list(bases)), stack_trees(list(datas))
    dtype = jnp.zeros(()).dtype
    fn = _flat_program(trainer)
    outs = []
    for start in range(0, N, chunk):
        sel = np.arange(start, start + chunk) % N
        args = (jnp.asarray(np.asarray(idx)[sel], jnp.int32),
                tuple(jnp.asarray(np.asarray(e)[sel], dtype) for e in extra),
                {k: jnp.asarray(np.asarray(v, np.float64)[sel], dtype) for k, v in hp.items()},
                jnp.asarray(np.asarray(seeds)[sel], jnp.uint32))
        m, dv = fn(B, D, *args)
        valid = min(chunk, N - start)
        outs.append(jax.tree.map(lambda a: np.asarray(a)[:valid], (m, dv)))
    return jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *outs)


# ------------------------------------------------------------------ Monte Carlo at a site vs the closed form
@functools.partial(jax.jit, static_argnames=("site", "control", "s", "r", "n_masks"))
def _site_cell(W, X, Y, seed, q, *, site, control, s, r, n_masks):
    """Loss and gradient under each mask, the closed forms, and the control penalty (another site), at one keep."""
    kp, km = jax.random.split(jax.random.key(seed))
    p = random_adapter(kp, X.shape[1], Y.shape[1], r)
    keys = jax.random.split(km, n_masks)
    cfg = LoraConfig(rank=p.A.shape[0], alpha=s * p.A.shape[0], keep=0.5, dropout_site=site)
    f = lambda p, k: dt.sampled_loss_keep(W, p, X, Y, k, q, site, s)
    vals = jax.vmap(f, in_axes=(None, 0))(p, keys)
    grads = jax.vmap(jax.grad(f), in_axes=(None, 0))(p, keys)
    closed = dt.expected_loss(W, p, X, Y, cfg, keep=q)
    if control == "isotropic":   # the input site's penalty with every weight (XᵀX)_jj replaced by their mean
        c = 0.5 / X.shape[0] * (1.0 - q) / q * s * s
        wrong_pen = c * jnp.mean(jnp.sum(jnp.square(X), axis=0)) * jnp.sum(jnp.square(p.B @ p.A))
    else:
        wrong_pen = dt.penalty(p, X, q, control, s)
    wrong = closed - dt.penalty(p, X, q, site, s) + wrong_pen
    return vals, grads, closed, dt.expected_loss_grad(W, p, X, Y, cfg, keep=q), dt.penalty(p, X, q, site, s), wrong


def site_task(seed, *, d_in, d_out, n, cond, noise):
    t = teacher_student(seed=seed, d_in=d_in, d_out=d_out, n_train=n, n_test=8, shift_rank=2, cond=cond, noise=noise)
    return t.data.X, t.data.Y, t.W0


def mc_site(seed, site, *, keeps, n_masks, n_params, draws, d_in, d_out, rank, n, s, cond, noise,
            control="output"):
    """z-scores of Monte Carlo over masks against the closed form at ``site`` (loss, and each gradient entry),
    at ``n_params`` random adapters per keep on each of ``draws`` teacher–student draws; and the same Monte
    Carlo against a wrong closed form (the penalty of another site, or ``"isotropic"``: the input penalty with
    the mean weight), which a test with power must reject."""
    zs, zw, gz, rel_pen = [], [], [], []
    for di, ds in enumerate(draw_seeds(seed, draws)):
        X, Y, W = site_task(ds, d_in=d_in, d_out=d_out, n=n, cond=cond, noise=noise)
        for i, q in enumerate(keeps):
            for j in range(n_params):
                vals, g, closed, cg, pen, wrong = _site_cell(
                    W, X, Y, 10_000 * seed + 1000 * di + 100 * i + j, np.asarray(q, X.dtype), site=site,
                    control=control, s=s, r=rank, n_masks=n_masks)
                vals = np.asarray(vals, np.float64)
                se = vals.std(ddof=1) / np.sqrt(n_masks)
                zs.append((vals.mean() - as_float64(closed)) / se)
                zw.append((vals.mean() - as_float64(wrong)) / se)
                rel_pen.append(as_float64(pen) / as_float64(closed))
                for name in ("A", "B"):
                    sg = np.asarray(getattr(g, name), np.float64)
                    se_g = sg.std(axis=0, ddof=1) / np.sqrt(n_masks)
                    ok = se_g > 0
                    dev = np.abs(sg.mean(0) - np.asarray(getattr(cg, name)))
                    gz.append(float(np.max(dev[ok] / se_g[ok])) if ok.any() else 0.0)
    return {"cases": len(zs), "max_abs_z_loss": float(np.max(np.abs(zs))), "z_loss": [float(z) for z in zs],
            "max_abs_z_grad_entry": float(max(gz)), "control_site": control,
            "z_loss_vs_control": [float(z) for z in zw],
            "control_rejected_share": float(np.mean(np.abs(zw) > Z_MC)),
            "penalty_share_of_expected_loss": [float(v) for v in rel_pen]}


def mc_agrees(mc: dict) -> bool:
    """The Monte Carlo test of the rules: loss within :data:`Z_MC` SE, every gradient entry within :data:`Z_MC_GRAD`."""
    return mc["max_abs_z_loss"] <= Z_MC and mc["max_abs_z_grad_entry"] <= Z_MC_GRAD


def mc_has_power(mc: dict) -> bool:
    """The control: the same test rejects the wrong closed form in at least half of the cases."""
    return mc["control_rejected_share"] >= 0.5


# ------------------------------------------------------------------------- linear runs: metrics, objectives
def delta_metrics(model, base, frozen_keep, params, data):
    """ΔW, the test loss and the closed-form expected loss of a linear LoRA run (``frozen_keep = (W, keep, ...)``)."""
    frozen, keep = frozen_keep[:2]
    return {"delta": lora.delta(params, model.cfg),
            "test_loss": models.loss(model, frozen, params, data.X_test, data.Y_test),
            "expected_loss": dt.expected_loss(frozen, params, data.X, data.Y, model.cfg, keep=keep)}


def linear_switch_objective(model, frozen_keep, params, X, Y, key):
    """``frozen_keep = (W, keep, mode)``: the expected loss if mode = 1, one mask draw if mode = 0 (one compile)."""
    return jax.lax.cond(frozen_keep[2] > 0.5,
                        lambda: dt.linear_expected_objective(model, frozen_keep, params, X, Y, key),
                        lambda: dt.linear_sampled_objective(model, frozen_keep, params, X, Y, key))


def mlp_switch_objective(model, frozen_keep, params, X, Y, key):
    """``frozen_keep = (frozen, keep, mode)``: exact expected squared loss (mode 1) or one mask draw (mode 0)."""
    return jax.lax.cond(frozen_keep[2] > 0.5,
                        lambda: dt.mlp_last_expected_objective(model, frozen_keep, params, X, Y, key),
                        lambda: dt.mlp_last_sampled_objective(model, frozen_keep, params, X, Y, key))


def decaying_sgd(hp):
    """SGD with ``lr_t = lr · min(1, t0 / t)``: constant for ``t0`` steps, then ∝ 1/t (Robbins–Monro:
    Σ lr_t = ∞, Σ lr_t² < ∞); ``t0 >= steps`` is a constant step size."""
    return optax.sgd(lambda t: hp["lr"] * jnp.minimum(1.0, hp["t0"] / jnp.maximum(t, 1)))


# --------------------------------------------------------------------------------------------- digits MLP
def sizes_text(sizes) -> str:
    """``(64, 64, 64, 10)`` → ``"64-64-64-10"`` (rule text)."""
    return "-".join(str(k) for k in sizes)


@functools.lru_cache(maxsize=None)
def digits_draw(seed: int = 0, *, sizes=(64, 64, 64, 10), steps: int = 400, lr: float = 1e-2, loss: str = "xent"):
    """One task draw of the digits fine-tuning task: the MLP pre-trained on the draw's pre-training split and
    the draw's shifted fine-tuning split, re-standardized on its own training statistics (per-pixel mean/std,
    std floor 1e-8 → 1), with its validation split standardized the same way:
    ``(base, finetune data (test split as evaluation set), validation data, pre-training held-out accuracy)``.

    Why re-standardize: ``digits`` scales the shifted images with the pre-training statistics; border pixels
    that are ~0 in the pre-training images become 16 after the contrast inversion and blow up (input RMS ~ 67
    vs 1), which makes the first hundred steps of every fine-tuning run a rescaling exercise. Each split
    standardized with its own statistics keeps the shift (moved, inverted digits) without that artefact.
    """
    base, digits, acc = pretrain.digits_mlp(seed, sizes=tuple(sizes), steps=steps, lr=lr, loss=loss)
    ft, fv = digits.finetune, digits.finetune_val
    X = np.asarray(ft.X, np.float64)
    mu, sd = X.mean(0), X.std(0)
    sd = np.where(sd > 1e-8, sd, 1.0)
    f = lambda Z: jnp.asarray((np.asarray(Z, np.float64) - mu) / sd, dtype=ft.X.dtype)
    return base, Data(f(ft.X), ft.Y, f(ft.X_test), ft.Y_test), Data(f(fv.X), fv.Y, f(fv.X_test), fv.Y_test), acc


def finetune_digits(seed: int = 0, *, sizes=(64, 64, 64, 10), steps: int = 400, lr: float = 1e-2, loss: str = "xent"):
    """``(base, finetune data, pre-training held-out accuracy)`` of :func:`digits_draw`."""
    base, ft, _, acc = digits_draw(seed, sizes=tuple(sizes), steps=steps, lr=lr, loss=loss)
    return base, ft, acc


def subsample_duplicated(data: Data, n: int) -> Data:
    """The first ``n`` training rows, tiled back to the original row count: i.i.d. mini-batches with replacement
    from the tiled set are i.i.d. from the ``n`` rows, and its mean losses are theirs — same shapes, same compile."""
    N = data.X.shape[0]
    if N % n:
        raise ValueError(f"small_n: must divide the training set size {N}, got {n}")
    rep = lambda a: jnp.concatenate([a[:n]] * (N // n), axis=0)
    return Data(rep(data.X), rep(data.Y), data.X_test, data.Y_test)


def lora_mlp(rank: int, method: str = "lora", eta: float = DEFAULT_ETA, task: str = "classification"):
    """The fine-tuned MLP: LoRA (alpha = r, input dropout on every branch, keep carried in the frozen part)
    or ALLoRA (scaling none, no dropout)."""
    if method == "lora":
        return models.MLPLoRA(LoraConfig(rank=rank, alpha=float(rank), keep=1.0, dropout_site="input"), task=task)
    return models.MLPLoRA(LoraConfig(rank=rank, method="allora", scaling="none", eta=eta), task=task)


def mlp_metrics(model, base, frozen_keep, params, data):
    """Test cross-entropy, squared loss on one-hot labels and accuracy, and the training loss."""
    frozen = frozen_keep[0]
    logits = model.apply(frozen, params, data.X_test)
    onehot = dt.one_hot_targets(data.Y_test, logits.shape[-1], logits.dtype)
    return {"test_loss": models.xent(logits, data.Y_test), "test_mse": models.mse(logits, onehot),
            "test_acc": jnp.mean(jnp.argmax(logits, -1) == data.Y_test),
            "train_loss": models.loss(model, frozen, params, data.X, data.Y)}


def mlp_sampled_loss(model, frozen_keep, params, X, Y, key):
    """The model's loss (cross-entropy, or squared for regression) with input dropout on every LoRA branch."""
    frozen, keep = frozen_keep[:2]
    out = dt.mlp_apply_dropout(model, frozen, params, X, key, keep, layers="all")
    return models.xent(out, Y) if model.task == "classification" else models.mse(out, Y)


def budget_metrics(model, base, frozen_keep, params, data):
    """Test cross-entropy and accuracy, validation cross-entropy (split carried in the frozen part) and training
    cross-entropy, per record."""
    frozen, Xv, Yv = frozen_keep[0], frozen_keep[-2], frozen_keep[-1]
    lt = model.apply(frozen, params, data.X_test)
    return {"test_loss": models.xent(lt, data.Y_test), "test_acc": jnp.mean(jnp.argmax(lt, -1) == data.Y_test),
            "val_loss": models.xent(model.apply(frozen, params, Xv), Yv),
            "train_loss": models.loss(model, frozen, params, data.X, data.Y)}


# -------------------------------------- the digits budget runs: short-vs-long, allora-fix, zero-vs-small, crossover
@dataclasses.dataclass(frozen=True)
class BudgetRuns:
    """LoRA at each drop rate and ALLoRA (no dropout) on the digits MLP: every learning rate of a log2 grid ×
    (tuning + fresh seeds) × task draws, validation and test curves recorded every ``stride`` steps."""

    rates: tuple = (0.0, 0.05, 0.2, 0.4)
    short: int = 100
    long: int = 400
    stride: int = 25
    lr_log2: tuple = (-8.0, -7.0, -6.0)   # Adam learning rates 2^k, the same base grid for every method
    max_extension: int = 2                # log2 steps the grid may grow beyond an edge, per side
    draws: int = 3
    tune_seeds: int = 2
    final_seeds: int = 8                  # fresh scoring seeds per draw (8, not 4: at 4, 'helps long' lost its
                                          # win at 2 of 8 master seeds on power alone, effect -0.08 to -0.24)
    batch_size: int = 32
    sizes: tuple = (64, 64, 64, 10)
    pretrain_steps: int = 400
    pretrain_lr: float = 1e-2
    rank: int = 8
    eta: float = DEFAULT_ETA
    crossover_rate: float = 0.2
    crossover_lr_log2: tuple = (-8.0, -7.0)   # the base lr and twice it
    small_n: int = 128                        # the crossover's smaller fine-tuning set
    chunk_jobs: int = 2                       # jobs (one lr of one method: draws × seeds runs) per compiled call


FAST_BUDGET_RUNS = BudgetRuns(rates=(0.0, 0.05, 0.2), short=50, long=100, stride=25, pretrain_steps=100, lr_log2=(-7.0, -6.0),
                              max_extension=0, draws=2, tune_seeds=1, final_seeds=2, crossover_lr_log2=(-7.0, -6.0))


def budget_runs_text(p: BudgetRuns) -> str:
    """The set-up of the budget runs, as rule text."""
    lrs = "/".join(f"2^{int(k)}" for k in p.lr_log2)
    return (f"Digits MLP {sizes_text(p.sizes)} pre-trained (Adam, {p.pretrain_steps} steps) on each of {p.draws} task "
            f"draws; on the draw's 256 shifted fine-tuning digits (re-standardized on their own statistics) LoRA "
            f"(r {p.rank}, input dropout on every branch) at drop rates {'/'.join(fmt(r) for r in p.rates)}, and "
            f"ALLoRA (eta {fmt(p.eta)}, no dropout), fine-tuned by Adam (batch {p.batch_size}); every method gets the "
            f"same learning-rate grid {lrs}, extended by log2 steps (at most {p.max_extension} per side) while the "
            f"pick sits at an edge. Each method's lr is selected per budget (short {p.short}, long {p.long} steps) "
            f"on validation cross-entropy (mean over draws × {p.tune_seeds} tuning seeds) and scored on "
            f"{p.final_seeds} fresh seeds per draw on the test split (test cross-entropy; a pick still at an edge "
            "is a win for neither side)")


def method_name(rate=None, allora=False, n=None) -> str:
    if allora:
        return "allora"
    return f"lora:{float(rate):g}" + ("" if n is None else f"@n{n}")


def _job_runs(p: BudgetRuns, seed: int):
    tune, final = seed_lists(seed, p.tune_seeds, p.final_seeds)
    return tune + final


def _pick(p: BudgetRuns, runs_m: dict, T: int):
    """The selected log2 lr of a method at budget ``T``: the lowest mean validation loss over draws × tuning
    seeds (a run that failed before ``T`` or is non-finite counts as +inf; ties: the smaller lr)."""
    rec = T // p.stride
    exps = sorted(runs_m)
    means = []
    for e in exps:
        v = runs_m[e]["val_loss"][:, :p.tune_seeds, rec]
        dv = runs_m[e]["diverged"][:, :p.tune_seeds]
        v = np.where(np.isfinite(v) & ~((dv >= 0) & (dv < T)), v, np.inf)
        means.append(float(np.mean(v)))
    i = int(np.argmin(means))
    return exps, i, means


@functools.lru_cache(maxsize=None)
def budget_runs(p: BudgetRuns, seed: int) -> dict:
    """Every run of the digits budget claims for one master seed (cached: shared by four claims).

    Returns ``{"runs": {method: {log2 lr: {metric: (draws, seeds, records)}}}, "picks": {method: {budget:
    {...}}}, "records": [...], "seeds": [...]}``; seeds are the tuning seeds then the fresh ones.
    """
    dseeds = draw_seeds(seed, p.draws)
    seeds = _job_runs(p, seed)
    S = len(seeds)
    bases, datas = [], []
    for ds in dseeds:
        base, ft, val, _ = digits_draw(ds, sizes=tuple(p.sizes), steps=p.pretrain_steps, lr=p.pretrain_lr)
        for data in (ft, subsample_duplicated(ft, p.small_n)):   # variant 0: all 256 rows, 1: the first small_n
            bases.append((base, val.X_test, val.Y_test))
            datas.append(data)
    trainers = {kind: Trainer(lora_mlp(p.rank, kind, p.eta), "adam", steps=p.long, stride=p.stride,
                              batch_size=p.batch_size, objective=mlp_sampled_loss, init=dt.init_with_keep,
                              metrics=budget_metrics) for kind in ("lora", "allora")}
    runs: dict = {}
    keep_of = {method_name(allora=True): 1.0}
    for r in p.rates:
        keep_of[method_name(r)] = 1.0 - r
        keep_of[method_name(r, n=p.small_n)] = 1.0 - r

    def execute(jobs):
        for kind in ("lora", "allora"):
            mine = [j for j in jobs if (j[0] == "allora") == (kind == "allora") and j[1] not in runs.get(j[0], {})]
            if not mine:
                continue
            idx, keep, lr, sd = [], [], [], []
            for name, e in mine:
                variant = 1 if "@n" in name else 0
                for d in range(p.draws):
                    for s in seeds:
                        idx.append(2 * d + variant), keep.append(keep_of[name]), lr.append(2.0 ** e), sd.append(s)
            m, dv = run_flat(trainers[kind], bases, datas, idx, (keep,), {"lr": lr}, sd,
                             chunk=p.chunk_jobs * p.draws * S)
            for j, (name, e) in enumerate(mine):
                sl = slice(j * p.draws * S, (j + 1) * p.draws * S)
                cell = {k: np.asarray(v[sl], np.float64).reshape(p.draws, S, -1) for k, v in m.items()}
                cell["diverged"] = np.asarray(dv[sl]).reshape(p.draws, S)
                runs.setdefault(name, {})[float(e)] = cell

    tuned = [method_name(r) for r in p.rates] + [method_name(allora=True)]
    jobs = [(m, float(e)) for m in tuned for e in p.lr_log2]
    jobs += [(method_name(p.crossover_rate if k else 0.0, n=p.small_n), float(p.crossover_lr_log2[0]))
             for k in (0, 1)]
    jobs += [(method_name(r), float(e)) for r in (0.0, p.crossover_rate) for e in p.crossover_lr_log2
             if (method_name(r), float(e)) not in jobs]
    execute(jobs)
    lo0, hi0 = min(p.lr_log2), max(p.lr_log2)
    while True:   # extend an edge while a budget's pick sits there
        grow = set()
        for m in tuned:
            for T in (p.short, p.long):
                exps, i, _ = _pick(p, runs[m], T)
                if i == 0 and lo0 - exps[0] < p.max_extension:
                    grow.add((m, exps[0] - 1.0))
                elif i == len(exps) - 1 and exps[-1] - hi0 < p.max_extension:
                    grow.add((m, exps[-1] + 1.0))
        if not grow:
            break
        execute(sorted(grow))
    picks = {}
    for m in tuned:
        picks[m] = {}
        for name, T in (("short", p.short), ("long", p.long)):
            exps, i, means = _pick(p, runs[m], T)
            picks[m][name] = {"log2_lr": exps[i], "lr": 2.0 ** exps[i], "at_edge": i in (0, len(exps) - 1),
                              "tried_log2": exps, "val_means": means}
    # the paper's protocols need a few more points: ALLoRA at LoRA(0.05)'s lr / eta, LoRA(0.05) at LoRA(0)'s lr
    ref = method_name(0.05) if method_name(0.05) in picks else tuned[1 if len(p.rates) > 1 else 0]
    extra = set()
    for name in ("short", "long"):
        extra.add((method_name(allora=True), picks[ref][name]["log2_lr"] - float(np.log2(p.eta))))
        extra.add((ref, picks[method_name(0.0)][name]["log2_lr"]))
    execute(sorted(extra))
    return {"runs": runs, "picks": picks, "records": (np.arange(p.long // p.stride + 1) * p.stride).tolist(),
            "seeds": seeds, "draw_seeds": dseeds, "reference_rate_method": ref}


def final_scores(p: BudgetRuns, raw: dict, method: str, log2_lr: float, T: int, metric: str = "test_loss"):
    """Fresh-seed scores of a method at an lr and budget, draw-major ``(draws·final_seeds,)``; a run that failed
    before ``T`` (or is non-finite) scores the base model's value (record 0). Also returns the failure count."""
    cell = raw["runs"][method][float(log2_lr)]
    rec = T // p.stride
    v = cell[metric][:, p.tune_seeds:, rec]
    base = cell[metric][:, p.tune_seeds:, 0]
    dv = cell["diverged"][:, p.tune_seeds:]
    failed = ~np.isfinite(v) | ((dv >= 0) & (dv < T))
    return np.where(failed, base, v).reshape(-1), int(failed.sum())


def final_groups(p: BudgetRuns) -> np.ndarray:
    return groups_of(p.draws, p.final_seeds)


def pick_of(raw, method, budget) -> dict:
    return raw["picks"][method][budget]


# ------------------------------------------------------- iterates: dropout.iterates, dropout.steps-vs-stepsize
@dataclasses.dataclass(frozen=True)
class IterateRuns:
    """Full-rank LoRA on a linear teacher–student task, input dropout; SGD on the sampled loss and on the
    expected loss at constant step sizes, and on the sampled loss with a harmonically decaying step size."""

    d_in: int = 12
    d_out: int = 4
    rank: int = 4
    alpha: float = 4.0
    n: int = 64
    n_test: int = 64
    shift_rank: int = 4          # ΔW of full rank, unit singular values: every direction is learned at one speed
    cond: float = 1.0
    noise: float = 0.5
    keep: float = 0.8
    steps: int = 3000
    stride: int = 25
    lrs: tuple = (0.1, 0.2, 0.4)
    t0: int = 300                # decaying: lr_t = lr · min(1, t0/t)
    draws: int = 3
    seeds: int = 4               # per draw

    @property
    def site(self) -> str:
        return "input"


FAST_ITERATE_RUNS = IterateRuns(steps=400, lrs=(0.2, 0.4), t0=50, draws=2, seeds=2)
KINDS = ("sampled", "expected", "decaying")


def iterate_runs_text(p: IterateRuns) -> str:
    return (f"Full-rank LoRA (r {p.rank}, alpha {fmt(p.alpha)}) on {p.draws} draws of a teacher–student task (d_in "
            f"{p.d_in}, d_out {p.d_out}, n {p.n}, input condition {fmt(p.cond)}, label noise {fmt(p.noise)}), input "
            f"dropout q = {fmt(p.keep)}, full-batch SGD for {p.steps} steps at constant lr "
            f"{'/'.join(fmt(x) for x in p.lrs)} on one mask draw per step (sampled) and on the closed-form expected "
            f"loss from the same init (expected), and sampled with lr_t = lr·min(1, {p.t0}/t) (decaying); "
            f"{p.seeds} seeds per draw; distances ||ΔW − ΔW*||/||ΔW*|| to the expected-loss minimizer ΔW* (the "
            "diag(XᵀX)-weighted ridge solution)")


@functools.lru_cache(maxsize=None)
def iterate_runs(p: IterateRuns, seed: int) -> dict:
    """Distances to ΔW* and between paired sampled/expected runs, per (lr, kind): arrays (draws, seeds, records)."""
    dseeds = draw_seeds(seed, p.draws)
    bases, datas, targets = [], [], []
    for ds in dseeds:
        t = teacher_student(seed=ds, d_in=p.d_in, d_out=p.d_out, n_train=p.n, n_test=p.n_test,
                            shift_rank=p.shift_rank, cond=p.cond, noise=p.noise)
        X, Y, W = t.data.X, t.data.Y, t.W0
        bases.append((W,))
        datas.append(t.data)
        targets.append(np.asarray(dt.input_dropout_ridge(X, Y - X @ W.T, p.keep), np.float64))
    model = models.LinearLoRA(LoraConfig(rank=p.rank, alpha=p.alpha, keep=0.5, dropout_site=p.site))
    tr = Trainer(model, decaying_sgd, steps=p.steps, stride=p.stride, objective=linear_switch_objective,
                 init=dt.init_with_keep, metrics=delta_metrics)
    modes = {"sampled": (0.0, 1e9), "expected": (1.0, 1e9), "decaying": (0.0, float(p.t0))}
    seeds = [1000 * seed + 500 + i for i in range(p.seeds)]
    idx, keep, mode, lr, decay, sd = [], [], [], [], [], []
    for lr_ in p.lrs:
        for kind in KINDS:
            for d in range(p.draws):
                for s in seeds:
                    idx.append(d), keep.append(p.keep), mode.append(modes[kind][0]), lr.append(lr_)
                    decay.append(modes[kind][1]), sd.append(s)
    m, dv = run_flat(tr, bases, datas, idx, (keep, mode), {"lr": lr, "t0": decay}, sd, chunk=len(sd))
    D = np.asarray(m["delta"], np.float64).reshape(len(p.lrs), len(KINDS), p.draws, p.seeds, -1, p.d_out, p.d_in)
    T = np.stack(targets)[None, None, :, None, None]                    # (1, 1, draws, 1, 1, d_out, d_in)
    tn = np.linalg.norm(np.stack(targets), axis=(-2, -1))[None, None, :, None, None]
    dist = np.linalg.norm(D - T, axis=(-2, -1)) / tn                      # (lrs, kinds, draws, seeds, records)
    gap = np.linalg.norm(D[:, 0] - D[:, 1], axis=(-2, -1)) / tn[:, 0]     # sampled vs expected, paired
    half = D.shape[4] // 2
    avg = D[:, 0, :, :, half:].mean(axis=3)                               # Polyak average over the second half
    dist_avg = np.linalg.norm(avg - T[:, 0, :, :, 0], axis=(-2, -1)) / tn[:, 0, :, :, 0]
    return {"records": (np.arange(p.steps // p.stride + 1) * p.stride).tolist(), "dist": dist, "gap": gap,
            "dist_avg": dist_avg, "diverged": np.asarray(dv).reshape(len(p.lrs), len(KINDS), p.draws, p.seeds),
            "target_norm": tn.reshape(-1).tolist()}


def window_mean(a, records, lo_frac, hi_frac):
    """Mean over the records with step in ``[lo_frac·T, hi_frac·T]`` of the last axis."""
    r = np.asarray(records, np.float64)
    sel = (r >= lo_frac * r[-1]) & (r <= hi_frac * r[-1])
    return np.asarray(a)[..., sel].mean(axis=-1)
