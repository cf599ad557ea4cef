"""dropout.output-ols: Left: the exact identities for whitened X; right: how far the best ridge is from q·W_OLS otherwise.

Command: ``python figures/dropout_output_ols.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only dropout.output-ols``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``dropout.output-ols``, in ``toyllora/claims/dropout/output_ols.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("dropout.output-ols")
