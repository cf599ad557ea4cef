"""dropout.short-vs-long: Left: fresh-seed test cross-entropy per rate at both budgets (each at its selected lr); right: the paired differences against rate 0 with their intervals.

Command: ``python figures/dropout_short_vs_long.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only dropout.short-vs-long``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``dropout.short-vs-long``, in ``toyllora/claims/dropout/short_vs_long.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("dropout.short-vs-long")
