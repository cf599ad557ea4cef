"""dropout.concentration: Masks needed for the stated accuracy per drop rate (geometric mean, 95 % interval, and per adapter), with the 100 line, for both data sets.

Command: ``python figures/dropout_concentration.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only dropout.concentration``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``dropout.concentration``, in ``toyllora/claims/dropout/concentration.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("dropout.concentration")
