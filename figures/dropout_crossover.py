"""dropout.crossover: Left: the mean difference loss(rate 0) − loss(dropout) over training per condition (10–90 % band over units), with the T* intervals; right: T* per unit and condition.

Command: ``python figures/dropout_crossover.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only dropout.crossover``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``dropout.crossover``, in ``toyllora/claims/dropout/crossover.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("dropout.crossover")
