"""dropout.bottleneck-expectation: z-scores of the Monte Carlo mean loss against Eq. (1), per (keep, adapter).

Command: ``python figures/dropout_bottleneck_expectation.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only dropout.bottleneck-expectation``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``dropout.bottleneck-expectation``, in ``toyllora/claims/dropout/bottleneck_expectation.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("dropout.bottleneck-expectation")
