"""dropout.zero-vs-small: The paired differences (positive: dropout 0.05 better) with their 95 % t-intervals: cross-entropy (judged) and accuracy (reported).

Command: ``python figures/dropout_zero_vs_small.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only dropout.zero-vs-small``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``dropout.zero-vs-small``, in ``toyllora/claims/dropout/zero_vs_small.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("dropout.zero-vs-small")
