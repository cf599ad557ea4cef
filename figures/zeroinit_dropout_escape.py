"""zeroinit.dropout-escape: Escape ratios (own target and absolute level) per cell, and the learned fraction on the plateau toy.

Command: ``python figures/zeroinit_dropout_escape.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only zeroinit.dropout-escape``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``zeroinit.dropout-escape``, in ``toyllora/claims/zeroinit/dropout_escape.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("zeroinit.dropout-escape")
