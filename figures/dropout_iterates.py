"""dropout.iterates: Distance to ΔW* over training: sampled iterates (median, 10–90 % band) and the expected-loss control, per lr; the two windows of R shaded.

Command: ``python figures/dropout_iterates.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only dropout.iterates``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``dropout.iterates``, in ``toyllora/claims/dropout/iterates.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("dropout.iterates")
