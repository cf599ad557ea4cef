"""transfer.ripple: Left: the forward ripple (relative output change against adapted blocks, per s). Right: the tested difference of the sensitivity to s between depth L and depth 1, per optimizer, with its 95 % interval.

Command: ``python figures/transfer_ripple.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only transfer.ripple``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``transfer.ripple``, in ``toyllora/claims/transfer/ripple.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("transfer.ripple")
