"""The one head-to-head protocol: every method on every task, tuned and scored the same way.

For each (task, method, optimizer) and master seed:

1. **Draw the task** ``budget.draws`` times (data seeds :func:`draw_seeds`): every interval covers task draws
   as well as optimization seeds.
2. **Tune** on the *validation* split: a log2 learning-rate grid (:func:`lr_grid`: the same number of points
   for every method, LoRA+'s expressed in B's learning rate; ``lora+tuned`` spreads fewer learning rates over
   the same range × its ratios, so it gets as many runs) × ``tune_seeds`` seeds × every draw, one vmapped
   :meth:`Trainer.sweep` per draw. Both budgets come from the same runs (a short run is a prefix of a long
   run), and each selects its own setting: the best mean validation score over draws × seeds; a point with a
   failed tuning run is never selected while one without failures exists (:func:`select`).
3. **Extend an edge**: while a budget's pick sits at the smallest or largest learning rate tried, the grid
   grows by one log2 step beyond that edge (up to ``budget.max_extension`` per side); a pick still at an edge
   is reported ``at_edge`` and comparisons count it as a win for neither side.
4. **Test**: the selected settings re-run on ``final_seeds`` fresh seeds in every draw (the same seeds for
   every method, so differences are paired by draw and seed) and scored on the *test* split.

Comparisons use :mod:`toyllora.protocol.stats`: an exact sign-flip test of the paired differences with the
draws as groups (a win needs every draw to agree), multiplicity-corrected within a claim.

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
    ['adalora', 'allora', 'allora+D']
    >>> protocol.method_config("allora", rank=4).eta
    2.0
    >>> float(protocol.score_points("regression", test_loss=0.25, base_loss=1.0))
    75.0
    >>> protocol.draw_seeds(2, protocol.FULL_BUDGET)
    [2000, 2001, 2002]

References:
  Huang & Balestriero, "ALLoRA", arXiv:2410.09692; LoRA+ arXiv:2402.12354; rsLoRA arXiv:2312.03732;
  DoRA arXiv:2402.09353; PiSSA arXiv:2404.02948; scaled GD arXiv:2402.02347.
"""

from toyllora.protocol.methods import ALLORA_ETA, ETA2, KEEP, LORA_PLUS_RATIOS, METHODS, method_config
from toyllora.protocol.tasks import (FAIL_LOSS_FACTOR, FAST_TASKS, TASKS, Task, make_task, score_points,
                                     score_runs)
from toyllora.protocol.tuning import (BUDGETS, FAST_BUDGET, FULL_BUDGET, LORA_PLUS_SHIFT, LR_TOP, OPTIMIZERS,
                                      Budget, ProtocolOptimizer, budget, cells, draw_seeds, draw_tasks, lr_grid,
                                      make_trainer, method_results, optimizer_hp, run, scores, seeds, select,
                                      tune_and_test)

__all__ = ["ALLORA_ETA", "BUDGETS", "Budget", "ETA2", "FAIL_LOSS_FACTOR", "FAST_BUDGET", "FAST_TASKS",
           "FULL_BUDGET", "KEEP", "LORA_PLUS_RATIOS", "LORA_PLUS_SHIFT", "LR_TOP", "METHODS", "OPTIMIZERS",
           "ProtocolOptimizer", "TASKS", "Task", "budget", "cells", "draw_seeds", "draw_tasks", "lr_grid",
           "make_task", "make_trainer", "method_config", "method_results", "optimizer_hp", "run", "score_points",
           "score_runs", "scores", "seeds", "select", "tune_and_test"]
