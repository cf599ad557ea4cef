"""zeroinit.gradient-asymmetry: Bars of ||∂L/∂A|| and ||∂L/∂B|| at the start, per init and dropout site; exact zeros labelled.

Command: ``python figures/zeroinit_gradient_asymmetry.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only zeroinit.gradient-asymmetry``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``zeroinit.gradient-asymmetry``, in ``toyllora/claims/zeroinit/gradient_asymmetry.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("zeroinit.gradient-asymmetry")
