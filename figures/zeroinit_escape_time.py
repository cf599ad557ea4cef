"""zeroinit.escape-time: Learned fraction against steps per toy and optimizer (median over units), and the escape ratios.

Command: ``python figures/zeroinit_escape_time.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only zeroinit.escape-time``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``zeroinit.escape-time``, in ``toyllora/claims/zeroinit/escape_time.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("zeroinit.escape-time")
