"""zeroinit.hessian: Zero fraction and conditioning of the Hessian at the start against n, per shape and start.

Command: ``python figures/zeroinit_hessian.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only zeroinit.hessian``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``zeroinit.hessian``, in ``toyllora/claims/zeroinit/hessian.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("zeroinit.hessian")
