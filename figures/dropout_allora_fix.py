"""dropout.allora-fix: The paired differences (test cross-entropy) with their 95 % t-intervals, per budget.

Command: ``python figures/dropout_allora_fix.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only dropout.allora-fix``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``dropout.allora-fix``, in ``toyllora/claims/dropout/allora_fix.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("dropout.allora-fix")
