"""allora.implicit-regularization: Train–test gap and test loss per method (mean ± std over draws × seeds), SGD and Adam side by side.

Command: ``python figures/allora_implicit_regularization.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only allora.implicit-regularization``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``allora.implicit-regularization``, in ``toyllora/claims/allora/implicit_regularization.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("allora.implicit-regularization")
