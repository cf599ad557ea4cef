"""zeroinit.balance: Violation of each method's own conserved quantity against flow time, and at equal flow time against lr.

Command: ``python figures/zeroinit_balance.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only zeroinit.balance``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``zeroinit.balance``, in ``toyllora/claims/zeroinit/balance.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("zeroinit.balance")
