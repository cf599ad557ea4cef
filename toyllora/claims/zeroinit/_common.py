"""What the zero-init claims share: the two toys, the units (task draws × optimization seeds) of a master
seed, one-compile runs of many update rules on every unit, the learned-fraction and escape metrics, the
paired tests, and the runs that several claims read (computed once per process and master seed).

The two toys (``Toy``): whitened inputs (XᵀX = nI), a noiseless rank-2 shift, a rank-2 adapter with s = 1.

* ``BASE`` — the toy of the old records: shift singular values (1, 0.5), PEFT's kaiming A. Its A rows have
  norm ≈ 1/√3 in d_in = 8, so A's projection on the target's input directions is large and LoRA escapes
  B = 0 in a few per cent of the budget: it has no plateau.
* ``PLATEAU`` — a weak shift (0.2, 0.1) and A scaled by 0.05 (``init_scale``): the projection of a kaiming
  row on a fixed direction in d_in = 4096 is ≈ 0.58/√4096 ≈ 0.009 of the target scale, so a small start is
  what a real layer sees. LoRA under SGD spends a sizeable part of the budget (≈ 25 % at lr 0.1) on the
  plateau before the sigmoidal escape (Saxe et al. 2014; proofs/zeroinit_learning_curve.md).

Units: a master seed ``m`` draws ``units.draws`` tasks (data seeds ``1000 m + d``) and runs
``units.seeds`` optimization seeds in each (``1000 m + 100 (d + 1) + k``: the init of A and the dropout
masks); every method runs on every unit, so differences are paired by unit and the draws are the groups of
:func:`toyllora.protocol.stats.paired_difference`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from toyllora import lora, models
from toyllora.config import LoraConfig
from toyllora.conventions import DEFAULT_ETA
from toyllora.data import teacher_student
from toyllora.protocol import stats
from toyllora.theory import dynamics

A0_ALIGNED = float(1.0 / np.sqrt(3))  # the expected row norm of PEFT's kaiming-uniform A (bound 1/sqrt(d_in))
CHUNK = 128                           # runs per simulate call (simulate pads to multiples of 64: 2 compiles)


@dataclasses.dataclass(frozen=True)
class Toy:
    """The two-factor toy: whitened inputs (XᵀX = nI), a noiseless rank-2 shift, and the adapter rank (s = 1)."""

    name: str = "base"
    d_in: int = 8
    d_out: int = 4
    n_train: int = 64
    n_test: int = 16
    shift_rank: int = 2
    spectrum: tuple = (1.0, 0.5)  # singular values of the target shift ΔW
    whiten: bool = True
    rank: int = 2
    init_scale: float | None = None  # multiplies the random factor(s) of init_a / init_b / both (not PiSSA)


BASE = Toy()
PLATEAU = Toy(name="plateau", spectrum=(0.2, 0.1), init_scale=0.05)
TOYS = (BASE, PLATEAU)


@dataclasses.dataclass(frozen=True)
class Units:
    """Task draws × optimization seeds per draw of one master seed (every method runs on every unit)."""

    draws: int = 3
    seeds: int = 4

    @property
    def n(self) -> int:
        return self.draws * self.seeds


def draw_seeds(master: int, units: Units) -> list[int]:
    """The data seeds of the task draws of a master seed."""
    return [1000 * master + d for d in range(units.draws)]


def opt_seeds(master: int, units: Units, draw: int) -> list[int]:
    """The optimization seeds (init of A, dropout masks) used in draw ``draw`` (0-based) of a master seed."""
    if units.seeds > 100:
        raise ValueError(f"units.seeds: at most 100 per draw, got {units.seeds}")
    return [1000 * master + 100 * (draw + 1) + k for k in range(units.seeds)]


def groups(units: Units) -> np.ndarray:
    """The draw of each unit, draw-major (the ``groups`` of the paired tests)."""
    return np.repeat(np.arange(units.draws), units.seeds)


def toy_task(toy: Toy, seed: int):
    """The toy's teacher-student task for one data seed."""
    return teacher_student(seed=seed, d_in=toy.d_in, d_out=toy.d_out, n_train=toy.n_train, n_test=toy.n_test,
                           shift_rank=toy.shift_rank, spectrum=toy.spectrum, whiten=toy.whiten)


def start(task, init: str, seed: int, rank: int, a0_aligned: float = A0_ALIGNED, init_scale=None):
    """``(W_frozen, A0, B0)`` (NumPy) for a LoRA-family start on the toy (s = 1); ``aligned_a``/``aligned_b``
    put the nonzero factor (row norm ``a0_aligned``) on the target's top singular directions."""
    if init in ("aligned_a", "aligned_b"):
        a0, b0 = (a0_aligned, 0.0) if init == "aligned_a" else (0.0, a0_aligned)
        A, B = dynamics.aligned_start(np.asarray(task.delta), rank, a0, b0)
        return np.asarray(task.W0, np.float64), A, B
    random = init in ("init_a", "init_b", "both")
    cfg = LoraConfig(rank=rank, alpha=float(rank), init=init, init_scale=init_scale if random else None)
    grad = None
    if cfg.needs_gradient:   # LoRA-GA: the first full gradient dL/dW on the training data
        grad = models.first_gradients(models.LinearLoRA(cfg), task.W0, task.data.X, task.data.Y)
    frozen, p = lora.init(jax.random.key(seed), task.W0, cfg, grad=grad)
    return np.asarray(frozen), np.asarray(p.A), np.asarray(p.B)


def exact_data(task, shift_rank: int):
    """``(X, Y)`` in float64 with the noiseless target rebuilt exactly: ``Y = X (W0 + ΔW_k)ᵀ``, ``ΔW_k`` the
    rank-``shift_rank`` truncation of the stored shift. The stored float32 data turn the shift's exact rank
    into tiny (~1e-7 relative) singular values, which would make the structural zero eigenvalues of a
    Hessian at B = 0 into ±1e-7 noise; the runs themselves use the stored data."""
    X = np.asarray(task.data.X, np.float64)
    U, S, Vt = np.linalg.svd(np.asarray(task.delta, np.float64), full_matrices=False)
    dW = (U[:, :shift_rank] * S[:shift_rank]) @ Vt[:shift_rank]
    return X, X @ (np.asarray(task.W0, np.float64) + dW).T


def run_methods(task, methods, seeds, *, rank: int, steps: int, stride: int, a0_aligned: float = A0_ALIGNED,
                init_scale=None):
    """Simulate every ``(name, init, Rule)`` of ``methods`` for every seed on one task in one compiled call.

    Returns ``{name: {"A", "B": (S, records, ...), "W": (S, ...), "diverged": (S,)}}`` and the recorded steps.
    """
    rows, Ws, As, Bs, rules, run_seeds = [], [], [], [], [], []
    for name, init, rule in methods:
        for s in seeds:
            W, A, B = start(task, init, s, rank, a0_aligned, init_scale)
            rows.append(name), Ws.append(W), As.append(A), Bs.append(B), rules.append(rule)
            run_seeds.append(s)
    tr = dynamics.simulate(task.data.X, task.data.Y, np.stack(Ws), np.stack(As), np.stack(Bs), _stack(rules),
                           run_seeds, steps=steps, stride=stride)
    out = {}
    for name in dict.fromkeys(rows):
        idx = [i for i, r in enumerate(rows) if r == name]
        out[name] = {"A": tr.A[idx], "B": tr.B[idx], "W": np.stack(Ws)[idx], "diverged": tr.diverged[idx]}
    return out, tr.steps


def _stack(rules):
    return dynamics.Rule(*(np.asarray([getattr(r, f) for r in rules], np.float64) for f in dynamics.Rule._fields))


def run_units(plan, master: int, units: Units, *, steps: int, stride: int, offset: int = 0):
    """Every ``(name, init, Rule)`` of each ``(toy, methods)`` of ``plan`` on every unit, in chunks of
    :data:`CHUNK` runs (one compiled program for all of them).

    ``offset`` shifts every data seed and optimization seed (``offset = 50``: tuning units disjoint from the
    scoring units of the same master seed, for up to 50 seeds per draw).

    Returns ``(runs, steps)``: ``runs[(toy.name, name)]`` holds ``A (U, records, r, d_in)``,
    ``B (U, records, d_out, r)``, ``W`` (frozen, ``(U, d_out, d_in)``), ``W0`` and ``delta`` (the unit's task),
    ``diverged (U,)``, with the ``U = draws × seeds`` units draw-major (:func:`groups`).
    """
    rows, X, Y, W, A, B, W0, D, rules, seeds = [], [], [], [], [], [], [], [], [], []
    for toy, methods in plan:
        for d, ds in enumerate(draw_seeds(master, units)):
            task = toy_task(toy, ds + offset)
            for name, init, rule in methods:
                for s in (k + offset for k in opt_seeds(master, units, d)):
                    w, a, b = start(task, init, s, toy.rank, init_scale=toy.init_scale)
                    rows.append((toy.name, name)), X.append(np.asarray(task.data.X)), Y.append(np.asarray(task.data.Y))
                    W.append(w), A.append(a), B.append(b)
                    W0.append(np.asarray(task.W0)), D.append(np.asarray(task.delta))
                    rules.append(rule), seeds.append(s)
    As, Bs, div = [], [], []
    for i in range(0, len(rows), CHUNK):
        sl = slice(i, i + CHUNK)
        tr = dynamics.simulate(np.stack(X[sl]), np.stack(Y[sl]), np.stack(W[sl]), np.stack(A[sl]), np.stack(B[sl]),
                               _stack(rules[sl]), seeds[sl], steps=steps, stride=stride)
        As.append(tr.A), Bs.append(tr.B), div.append(tr.diverged)
    As, Bs, div = np.concatenate(As), np.concatenate(Bs), np.concatenate(div)
    out = {}
    for key in dict.fromkeys(rows):
        idx = [i for i, r in enumerate(rows) if r == key]
        out[key] = {"A": As[idx], "B": Bs[idx], "W": np.stack([W[i] for i in idx]),
                    "W0": np.stack([W0[i] for i in idx]), "delta": np.stack([D[i] for i in idx]),
                    "diverged": div[idx]}
    return out, tr.steps


def learned(run, task=None):
    """``ΔŴ(t) = W_frozen + BA − W0`` for every unit and record (s = 1); ``W0`` from the run or ``task``."""
    W0 = run["W0"] if task is None else np.asarray(task.W0)[None]
    return run["W"][:, None] + np.einsum("strk,stkj->strj", run["B"], run["A"]) - np.asarray(W0)[:, None]


def progress(run, task=None):
    """The learned fraction of the target shift ``<ΔŴ, ΔW>/||ΔW||²`` (units, records)."""
    T = np.asarray(run["delta"], np.float64) if task is None else np.asarray(task.delta, np.float64)[None]
    return np.einsum("stij,sij->st", learned(run, task), T) / np.sum(T * T, axis=(-2, -1))[:, None]


def percentile(x, q: float) -> float:
    """numpy's linear percentile, with "never" (inf) as the largest value: where the quantile falls between a
    finite entry and inf it is inf, never the NaN of numpy's inf − inf.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 25), percentile([1.0, 2.0, np.inf, np.inf], 75)
    (1.75, inf)
    """
    x = np.asarray(x, np.float64)
    lo, hi = (float(np.percentile(x, q, method=m)) for m in ("lower", "higher"))
    if lo == hi or not np.isfinite(hi):
        return hi
    return float(np.percentile(x, q))


def summary(x):
    """Median, quartiles, the number of non-finite entries (runs that never got there) and the values."""
    x = np.asarray(x, np.float64)
    return {"median": float(np.median(x)), "q25": percentile(x, 25), "q75": percentile(x, 75),
            "never": int(np.sum(~np.isfinite(x))), "values": x}


def lr_name(lr) -> str:
    """A learning rate as it appears in method names (``0.1``, ``0.0025``)."""
    return f"{lr:g}"


# -- paired tests on units -------------------------------------------------------------------------------
def censor(x, budget):
    """Escape steps with "never" (inf) replaced by the budget (understates a delay; counted in ``never``)."""
    x = np.asarray(x, np.float64)
    return np.where(np.isfinite(x), np.maximum(x, 1.0), float(budget))


def log_ratio_test(num, den, units: Units, *, budget=None, alpha: float = stats.ALPHA):
    """The paired sign-flip test of ``log(num/den)`` per unit (draws as groups), as a JSON-ready dict.

    ``num``/``den``: one positive value per unit (escape steps: ``budget`` replaces inf). The test (``p``,
    ``win``) is at level 0.05, to be Holm-adjusted over the claim's family; the interval (``lo``, ``hi``) is the
    ``1 − alpha`` t-interval of the mean log ratio (pass ``alpha = 0.05/k`` for k intervals that decide
    together: Bonferroni). Adds the geometric-mean ratio and its interval (``ratio``, ``ratio_lo``,
    ``ratio_hi``) and ``never`` (units censored at the budget, either side).
    """
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    never = int(np.sum(~np.isfinite(num)) + np.sum(~np.isfinite(den)))
    if budget is not None:
        num, den = censor(num, budget), censor(den, budget)
    d = interval_test(np.log(num) - np.log(den), units, alpha=alpha)
    d.update(ratio=float(np.exp(d["mean"])), ratio_lo=float(np.exp(d["lo"])), ratio_hi=float(np.exp(d["hi"])),
             never=never)
    return d


def interval_test(x, units: Units, *, alpha: float = stats.ALPHA):
    """The sign-flip test of ``mean(x) = 0`` per unit (draws as groups; ``win``/``p`` at level 0.05) with the
    ``1 − alpha`` interval of the mean (``lo``, ``hi``, ``draw_lo``, ``draw_hi``, ``ci_level``)."""
    x = np.asarray(x, np.float64)
    g = groups(units)
    d = stats.paired_difference(x, np.zeros_like(x), groups=g)
    if alpha != stats.ALPHA:
        ci = stats.paired_difference(x, np.zeros_like(x), groups=g, alpha=alpha)
        d.update({k: ci[k] for k in ("lo", "hi", "draw_lo", "draw_hi", "ci_method")})
    d["ci_level"] = 1.0 - alpha
    return d


def holm(family: dict) -> dict:
    """Holm-adjust a family ``{key: paired_difference result}``; returns it with ``p_adjusted`` and ``win``."""
    keys = list(family)
    adjusted = stats.compare_all([family[k] for k in keys], method="holm") if keys else []
    return dict(zip(keys, adjusted))


def loglog_slope(x, y):
    """Least-squares slope of ``log y`` on ``log x`` for every row of ``y`` (``(..., len(x))``)."""
    lx = np.log(np.asarray(x, np.float64))
    ly = np.log(np.asarray(y, np.float64))
    lxc = lx - lx.mean()
    return np.sum((ly - ly.mean(-1, keepdims=True)) * lxc, -1) / np.sum(lxc * lxc)


# -- the escape runs: shared by zeroinit.escape-time, zeroinit.balance and zeroinit.allora-landscape -----
@dataclasses.dataclass(frozen=True)
class EscapeRuns:
    """The runs behind ``zeroinit.escape-time``, ``zeroinit.balance`` and ``zeroinit.allora-landscape``.

    Every method runs on the base toy; those of ``zeroinit.escape-time`` (LoRA at eta·l_b and at l_b, ALLoRA
    at l_b, under SGD and Adam) also on the plateau toy.
    """

    units: Units = Units()
    steps: int = 1000
    stride: int = 2
    sgd_lrs: tuple = (0.025, 0.05, 0.1)     # ascending; the top one is LoRA's eta·l_b
    adam_lrs: tuple = (0.0025, 0.005, 0.01)
    eta: float = DEFAULT_ETA                # ALLoRA's eta; ALLoRA runs at l_b = lr / eta for each lr
    loraplus_ratio: float = 16.0            # LoRA+: lr_B = ratio · lr_A, lr_A = lr / sqrt(ratio)
    delta: float = 1e-6                     # scaled GD's damping δ


def escape_methods(r: EscapeRuns):
    """``(balance, escape)``: the ``(name, init, Rule)`` of the base-toy runs and of the escape comparison."""
    R = dynamics.Rule
    sq = float(np.sqrt(r.loraplus_ratio))
    bal = []
    for opt, lrs, adam in (("SGD", r.sgd_lrs, 0.0), ("Adam", r.adam_lrs, 1.0)):
        for lr in lrs:
            bal.append((f"LoRA {opt} lr={lr_name(lr)}", "init_a", R(lr=lr, adam=adam)))
            bal.append((f"ALLoRA {opt} l_b={lr_name(lr / r.eta)}", "init_a",
                        R(lr=lr / r.eta, allora=1.0, eta=r.eta, adam=adam)))
            if opt == "SGD":
                bal.append((f"LoRA+ SGD lr_A={lr_name(lr / sq)}", "init_a", R(lr=lr / sq, b_ratio=r.loraplus_ratio)))
                bal.append((f"scaled GD SGD lr={lr_name(lr)}", "init_a", R(lr=lr, scaled=1.0, delta=r.delta)))
    esc = []
    for opt, lrs, adam in (("SGD", r.sgd_lrs, 0.0), ("Adam", r.adam_lrs, 1.0)):
        top = lrs[-1]
        esc += [(f"LoRA {opt} lr={lr_name(top)}", "init_a", R(lr=top, adam=adam)),
                (f"LoRA {opt} lr={lr_name(top / r.eta)}", "init_a", R(lr=top / r.eta, adam=adam)),
                (f"ALLoRA {opt} l_b={lr_name(top / r.eta)}", "init_a",
                 R(lr=top / r.eta, allora=1.0, eta=r.eta, adam=adam))]
    return bal, esc


@functools.lru_cache(maxsize=8)  # >= the master seeds of one reproduce (0-4), run claim by claim
def escape_runs(r: EscapeRuns, master: int):
    """All runs of the escape claims for one master seed (cached: the claims share them).

    Returns ``(runs, steps)`` keyed ``(toy name, method name)``; the escape methods on both toys, the rest on
    the base toy only.
    """
    bal, esc = escape_methods(r)
    names = {b[0] for b in bal}
    plan = [(BASE, bal + [m for m in esc if m[0] not in names]), (PLATEAU, esc)]
    return run_units(plan, master, r.units, steps=r.steps, stride=r.stride)


# -- the dropout runs: shared by zeroinit.dropout-escape and zeroinit.unfair-regularization ---------------
SITE_CODES = {"input": 0.0, "bottleneck": 1.0}  # dynamics.Rule.site
MODES = {"sampled": 0.0, "expected": 1.0}        # dynamics.Rule.expected: sampled masks or the expected loss


@dataclasses.dataclass(frozen=True)
class DropoutRuns:
    """The runs behind ``zeroinit.dropout-escape`` (SGD at ``lr``, both toys, sampled and expected dropout) and
    ``zeroinit.unfair-regularization`` (base toy, sampled masks, SGD at ``lr`` and ``lr_half``, Adam)."""

    units: Units = Units()
    steps: int = 1000
    stride: int = 2
    lr: float = 0.1
    lr_half: float = 0.05
    adam_lr: float = 0.01
    drop_rates: tuple = (0.2, 0.4)   # ascending; 0 (no dropout, the control) is always run


def dropout_name(opt: str, lr: float, site=None, rate=0.0, mode="sampled") -> str:
    """The run name of LoRA (init_a) under ``opt`` at ``lr`` with dropout ``rate`` at ``site`` (0: none)."""
    base = f"LoRA {opt} lr={lr_name(lr)}"
    return base if rate == 0 else f"{base} {site} dropout {rate:g} {mode}"


def dropout_methods(r: DropoutRuns):
    """``(base, plateau)``: the ``(name, init, Rule)`` run on each toy."""
    R = dynamics.Rule

    def method(opt, lr, site=None, rate=0.0, mode="sampled"):
        adam = 1.0 if opt == "Adam" else 0.0
        if rate == 0:
            return dropout_name(opt, lr), "init_a", R(lr=lr, adam=adam)
        return (dropout_name(opt, lr, site, rate, mode), "init_a",
                R(lr=lr, adam=adam, keep=1.0 - rate, site=SITE_CODES[site], expected=MODES[mode]))

    escape = [method("SGD", r.lr)] + [method("SGD", r.lr, site, d, mode) for site in SITE_CODES
                                      for mode in MODES for d in r.drop_rates]
    base = list(escape)
    for opt, lr in (("SGD", r.lr_half), ("Adam", r.adam_lr)):
        base += [method(opt, lr)] + [method(opt, lr, site, d) for site in SITE_CODES for d in r.drop_rates]
    return base, escape


@functools.lru_cache(maxsize=8)  # >= the master seeds of one reproduce (0-4), run claim by claim
def dropout_runs(r: DropoutRuns, master: int):
    """All runs of the dropout claims of this folder for one master seed (cached: the claims share them)."""
    base, plateau = dropout_methods(r)
    return run_units([(BASE, base), (PLATEAU, plateau)], master, r.units, steps=r.steps, stride=r.stride)
