"""ripple.bound: Gain over the base net, ``||Π M_l|| / ||Π W_l||``, against depth, with the bound ``(1 + s m)^L`` dashed.

Command: ``python figures/ripple_bound.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only ripple.bound``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``ripple.bound``, in ``toyllora/claims/ripple/bound.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("ripple.bound")
