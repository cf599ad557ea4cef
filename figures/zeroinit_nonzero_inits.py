"""zeroinit.nonzero-inits: Learned fraction against steps per toy and optimizer (median over units, each init at its picked lr).

Command: ``python figures/zeroinit_nonzero_inits.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only zeroinit.nonzero-inits``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``zeroinit.nonzero-inits``, in ``toyllora/claims/zeroinit/nonzero_inits.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("zeroinit.nonzero-inits")
