"""The one head-to-head protocol: every method on every task, tuned and scored the same way.

For each (task, method, optimizer):

1. **Tune**: one vmapped :meth:`Trainer.sweep` over a log2 learning-rate grid (:func:`lr_grid`: the same
   points for every method, LoRA+'s expressed in B's learning rate; × the LoRA+ ratio for ``lora+tuned``)
   and ``tune_seeds`` seeds on the *validation* split (``data_val``: its evaluation arrays are the
   validation split). Both budgets come from the same runs (a short run is a prefix of a long run),
   and each budget selects its own learning rate: the grid point with the best mean validation score.
   A grid point with a failed tuning run is never selected while one without failures exists
   (:func:`select`).
2. **Test**: the two selected settings re-run on ``final_seeds`` fresh seeds (the same seed integers for
   every method, so differences are paired by seed) and scored on the *test* split.

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
    ['allora', 'allora+D', 'allora-A']
    >>> protocol.method_config("allora", rank=4).eta
    2.0
    >>> float(protocol.score_points("regression", test_loss=0.25, base_loss=1.0))
    75.0

References:
  Huang & Balestriero, "ALLoRA", arXiv:2410.09692; LoRA+ arXiv:2402.12354; rsLoRA arXiv:2312.03732;
  DoRA arXiv:2402.09353; PiSSA arXiv:2404.02948; scaled GD arXiv:2402.02347.
"""

from toyllora.protocol.methods import ALLORA_ETA, ETA2, KEEP, LORA_PLUS_RATIOS, METHODS, method_config
from toyllora.protocol.tasks import (FAIL_LOSS_FACTOR, FAST_TASKS, TASKS, Task, make_task, score_points,
                                     score_runs)
from toyllora.protocol.tuning import (BUDGETS, draw_seeds, draw_tasks, FAST_BUDGET, FULL_BUDGET, LORA_PLUS_SHIFT, LR_TOP, OPTIMIZERS,
                                      Budget, ProtocolOptimizer, budget, cells, lr_grid, make_trainer,
                                      method_results, optimizer_hp, run, scores, seeds, select, tune_and_test)

__all__ = ["ALLORA_ETA", "BUDGETS", "Budget", "ETA2", "FAIL_LOSS_FACTOR", "FAST_BUDGET", "FAST_TASKS", "FULL_BUDGET",
           "KEEP", "LORA_PLUS_RATIOS", "LORA_PLUS_SHIFT", "LR_TOP", "METHODS", "OPTIMIZERS", "ProtocolOptimizer", "TASKS", "Task", "budget",
           "cells", "lr_grid", "make_task", "make_trainer", "method_config", "method_results", "optimizer_hp",
           "run", "score_points", "score_runs", "scores", "seeds", "select", "tune_and_test"]
