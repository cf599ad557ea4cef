"""dropout.gradient-tails: τ = q99/mean of the per-entry std over training, per rate and for the mini-batch control, both models; the (not scale-free) mean std in the lower row.

Command: ``python figures/dropout_gradient_tails.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only dropout.gradient-tails``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``dropout.gradient-tails``, in ``toyllora/claims/dropout/gradient_tails.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("dropout.gradient-tails")
