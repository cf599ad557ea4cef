"""transfer.zeroinit-escape: Early-budget points per method and optimizer.

Command: ``python figures/transfer_zeroinit_escape.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only transfer.zeroinit-escape``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``transfer.zeroinit-escape``, in ``toyllora/claims/transfer/zeroinit_escape.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("transfer.zeroinit-escape")
