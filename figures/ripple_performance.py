"""ripple.performance: Test loss left (100 − points) against depth, every LoRA s and ALLoRA, per task and budget.

Command: ``python figures/ripple_performance.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only ripple.performance``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``ripple.performance``, in ``toyllora/claims/ripple/performance.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("ripple.performance")
