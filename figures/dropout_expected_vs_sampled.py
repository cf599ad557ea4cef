"""dropout.expected-vs-sampled: The paired test-loss gap (sampled − expected) over training, per drop rate, ±2 SE, with the two windows.

Command: ``python figures/dropout_expected_vs_sampled.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only dropout.expected-vs-sampled``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``dropout.expected-vs-sampled``, in ``toyllora/claims/dropout/expected_vs_sampled.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("dropout.expected-vs-sampled")
