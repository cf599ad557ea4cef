"""allora.eta-sensitivity: Mean test score of each eta² per cell, at the fixed base rate (left) and re-tuned (right).

Command: ``python figures/allora_eta_sensitivity.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only allora.eta-sensitivity``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``allora.eta-sensitivity``, in ``toyllora/claims/allora/eta_sensitivity.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("allora.eta-sensitivity")
