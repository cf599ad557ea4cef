"""Head-to-head comparisons across optimizers: a method under one optimizer against a method under another.

The protocol's runs of a method under any of :data:`toyllora.protocol.tuning.ALL_OPTIMIZERS` share the task
draws and the final seeds of the master seed (:func:`toyllora.protocol.seeds` does not depend on the
optimizer), so their test scores are paired by draw and seed whatever the two optimizers are.

Example:
    >>> label("allora", "sgd"), label("lora", "rownorm")
    ('allora·SGD', 'lora·row-normalized SGD')
"""

from __future__ import annotations

import numpy as np

from toyllora import protocol
from toyllora.protocol import stats, tuning


def label(method: str, optimizer: str) -> str:
    """``method·Optimizer``, the name of a (method, optimizer) arm in the tables."""
    if optimizer not in tuning.OPTIMIZER_NAMES:
        raise ValueError(f"optimizer: unknown value {optimizer!r}; allowed: {tuple(tuning.OPTIMIZER_NAMES)}")
    return f"{method}·{tuning.OPTIMIZER_NAMES[optimizer]}"


def arm_results(task_name: str, method: str, optimizer: str, seed: int, budget: protocol.Budget) -> dict:
    """The protocol (``tune_and_test``) of one method under one optimizer; cached (SGD and Adam shared with
    every claim that runs :func:`protocol.method_results`)."""
    return tuning.optimizer_results(task_name, method, optimizer, seed, budget)


def compare_arms(ea: dict, eb: dict, task: str, budget_name: str, a: str, b: str, **extra) -> dict:
    """The paired difference ``a − b`` of two tune_and_test budget entries (``res[budget]``) of one task, in
    the form of :func:`toyllora.claims.allora._common.compare` (unadjusted; ``cell`` = ``task/budget``)."""
    sa, sb = np.asarray(ea["scores"]), np.asarray(eb["scores"])
    if not np.array_equal(np.asarray(ea["groups"]), np.asarray(eb["groups"])):
        raise ValueError("groups: the two arms' scores are not paired by draw")
    d = stats.paired_difference(sa, sb, groups=np.asarray(ea["groups"]))
    d.update(cell=f"{task}/{budget_name}", task=task, budget=budget_name, a=a, b=b,
             mean_a=float(sa.mean()), std_a=float(sa.std(ddof=1)), mean_b=float(sb.mean()),
             std_b=float(sb.std(ddof=1)), failures_a=int(ea["n_failed"]), failures_b=int(eb["n_failed"]),
             edge_a=bool(ea["at_edge"]), edge_b=bool(eb["at_edge"]), lr_a=ea["lr"], lr_b=eb["lr"], **extra)
    d["edge"] = d["edge_a"] or d["edge_b"]
    return d
