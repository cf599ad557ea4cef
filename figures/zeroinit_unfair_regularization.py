"""zeroinit.unfair-regularization: D per cell (the law: 0), and the final norms across drop rates with the law's ||B||.

Command: ``python figures/zeroinit_unfair_regularization.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only zeroinit.unfair-regularization``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``zeroinit.unfair-regularization``, in ``toyllora/claims/zeroinit/unfair_regularization.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("zeroinit.unfair-regularization")
