"""ripple.coupling: κ̄ against s at a fixed function (the control), and against the size of the update at s = 1.

Command: ``python figures/ripple_coupling.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only ripple.coupling``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``ripple.coupling``, in ``toyllora/claims/ripple/coupling.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("ripple.coupling")
