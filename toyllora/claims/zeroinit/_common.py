"""What the zero-init claims share: the two-factor toy, the one-compile runs of many update rules on it, the
learned-fraction metrics, and the escape runs of ``zeroinit.escape-time`` and ``zeroinit.balance``."""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from toyllora import lora
from toyllora.config import LoraConfig
from toyllora.conventions import DEFAULT_ETA
from toyllora.data import teacher_student
from toyllora.theory import dynamics

A0_ALIGNED = float(1.0 / np.sqrt(3))  # the expected row norm of PEFT's kaiming-uniform A (bound 1/sqrt(d_in))


@dataclasses.dataclass(frozen=True)
class Toy:
    """The two-factor toy: whitened inputs (XᵀX = nI), a noiseless rank-2 shift, and the adapter rank (s = 1)."""

    d_in: int = 8
    d_out: int = 4
    n_train: int = 64
    n_test: int = 16
    shift_rank: int = 2
    spectrum: tuple = (1.0, 0.5)  # singular values of the target shift ΔW
    whiten: bool = True
    rank: int = 2


def toy_task(toy: Toy, seed: int):
    """The toy's teacher-student task for one seed."""
    return teacher_student(seed=seed, d_in=toy.d_in, d_out=toy.d_out, n_train=toy.n_train, n_test=toy.n_test,
                           shift_rank=toy.shift_rank, spectrum=toy.spectrum, whiten=toy.whiten)


def start(task, init: str, seed: int, rank: int, a0_aligned: float = A0_ALIGNED):
    """``(W_frozen, A0, B0)`` (NumPy) for a LoRA-family start on the toy (s = 1); ``aligned_a``/``aligned_b``
    put the nonzero factor (row norm ``a0_aligned``) on the target's top singular directions."""
    if init in ("aligned_a", "aligned_b"):
        a0, b0 = (a0_aligned, 0.0) if init == "aligned_a" else (0.0, a0_aligned)
        A, B = dynamics.aligned_start(np.asarray(task.delta), rank, a0, b0)
        return np.asarray(task.W0, np.float64), A, B
    cfg = LoraConfig(rank=rank, alpha=float(rank), init=init)
    frozen, p = lora.init(jax.random.key(seed), task.W0, cfg)
    return np.asarray(frozen), np.asarray(p.A), np.asarray(p.B)


def run_methods(task, methods, seeds, *, rank: int, steps: int, stride: int, a0_aligned: float = A0_ALIGNED):
    """Simulate every ``(name, init, Rule)`` of ``methods`` for every seed in one compiled call.

    Returns ``{name: {"A", "B": (S, records, ...), "W": (S, ...), "diverged": (S,)}}`` and the recorded steps.
    """
    rows, Ws, As, Bs, rules, run_seeds = [], [], [], [], [], []
    for name, init, rule in methods:
        for s in seeds:
            W, A, B = start(task, init, s, rank, a0_aligned)
            rows.append(name), Ws.append(W), As.append(A), Bs.append(B), rules.append(rule)
            run_seeds.append(s)
    stacked = dynamics.Rule(*(np.asarray([getattr(r, f) for r in rules], np.float64)
                              for f in dynamics.Rule._fields))
    tr = dynamics.simulate(task.data.X, task.data.Y, np.stack(Ws), np.stack(As), np.stack(Bs), stacked,
                           run_seeds, steps=steps, stride=stride)
    out = {}
    for name in dict.fromkeys(rows):
        idx = [i for i, r in enumerate(rows) if r == name]
        out[name] = {"A": tr.A[idx], "B": tr.B[idx], "W": np.stack(Ws)[idx], "diverged": tr.diverged[idx]}
    return out, tr.steps


def learned(run, task):
    """``ΔŴ(t) = W_frozen + BA − W0`` for every seed and record (s = 1)."""
    return run["W"][:, None] + np.einsum("strk,stkj->strj", run["B"], run["A"]) - np.asarray(task.W0)[None, None]


def progress(run, task):
    """The learned fraction of the target shift ``<ΔŴ, ΔW>/||ΔW||²`` (S, records)."""
    T = np.asarray(task.delta, np.float64)
    return np.einsum("stij,ij->st", learned(run, task), T) / np.sum(T * T)


def summary(x):
    """Median, quartiles, the number of non-finite entries (runs that never got there) and the values."""
    x = np.asarray(x, np.float64)
    return {"median": float(np.median(x)), "q25": float(np.percentile(x, 25)), "q75": float(np.percentile(x, 75)),
            "never": int(np.sum(~np.isfinite(x))), "values": x}


def lr_name(lr) -> str:
    """A learning rate as it appears in method names (``0.1``, ``0.0025``)."""
    return f"{lr:g}"


# -- the escape runs: shared by zeroinit.escape-time and zeroinit.balance ---------------------------------
@dataclasses.dataclass(frozen=True)
class EscapeRuns:
    """The runs behind ``zeroinit.escape-time`` and ``zeroinit.balance`` (one definition, so both see the same)."""

    toy: Toy = Toy()
    seeds: int = 5                         # optimization seeds master_seed, master_seed + 1, ...
    steps: int = 1000
    stride: int = 2
    sgd_lrs: tuple = (0.01, 0.03, 0.1)
    adam_lrs: tuple = (0.001, 0.003, 0.01)
    eta: float = DEFAULT_ETA               # ALLoRA's eta; ALLoRA runs at l_b = top lr / eta
    loraplus_ratio: float = 16.0           # LoRA+: lr_B = ratio · lr_A, lr_A = top lr / sqrt(ratio)
    a0_aligned: float = A0_ALIGNED         # row norm of the nonzero factor of the aligned starts


def escape_methods(r: EscapeRuns):
    """``(methods, aligned)``: the ``(name, init, Rule)`` of the random starts and of the aligned starts."""
    R = dynamics.Rule
    sqrt_ratio = float(np.sqrt(r.loraplus_ratio))
    ms = []
    for opt, lrs, adam in (("SGD", r.sgd_lrs, 0.0), ("Adam", r.adam_lrs, 1.0)):
        top = lrs[-1]
        for lr in lrs:
            ms.append((f"LoRA {opt} lr={lr_name(lr)}", "init_a", R(lr=lr, adam=adam)))
        ms += [(f"LoRA+ {opt} (ratio {r.loraplus_ratio:g}, lr_A={lr_name(top / sqrt_ratio)})", "init_a",
                R(lr=top / sqrt_ratio, b_ratio=r.loraplus_ratio, adam=adam)),
               (f"scaled GD {opt} lr={lr_name(top)}", "init_a", R(lr=top, scaled=1.0, adam=adam)),
               (f"init_b {opt} lr={lr_name(top)}", "init_b", R(lr=top, adam=adam)),
               (f"PiSSA {opt} lr={lr_name(top)}", "pissa", R(lr=top, adam=adam)),
               (f"ALLoRA {opt} l_b={lr_name(top / r.eta)}", "init_a",
                R(lr=top / r.eta, allora=1.0, eta=r.eta, adam=adam))]
    top = r.sgd_lrs[-1]
    aligned = [(f"aligned LoRA SGD lr={lr_name(lr)}", "aligned_a", R(lr=lr)) for lr in r.sgd_lrs]
    aligned += [(f"aligned LoRA+ SGD (ratio {r.loraplus_ratio:g}, lr_A={lr_name(top / sqrt_ratio)})", "aligned_a",
                 R(lr=top / sqrt_ratio, b_ratio=r.loraplus_ratio)),
                (f"aligned init_b SGD lr={lr_name(top)}", "aligned_b", R(lr=top))]
    return ms, aligned


@functools.lru_cache(maxsize=4)
def escape_runs(r: EscapeRuns, seed: int):
    """All runs of ``zeroinit.escape-time`` and ``zeroinit.balance`` (cached: both claims share them).

    Returns ``(task, seeds, methods, aligned, runs, aligned_runs, steps)``; the aligned starts run once (seed).
    """
    task = toy_task(r.toy, seed)
    seeds = list(range(seed, seed + r.seeds))
    methods, aligned = escape_methods(r)
    kw = dict(rank=r.toy.rank, steps=r.steps, stride=r.stride, a0_aligned=r.a0_aligned)
    runs, steps = run_methods(task, methods, seeds, **kw)
    aruns, _ = run_methods(task, aligned, [seed], **kw)
    return task, seeds, methods, aligned, runs, aruns, steps
