"""dropout.input-ridge: Left: Monte Carlo z-scores of the loss; right: trained LoRA against the weighted ridge, per keep.

Command: ``python figures/dropout_input_ridge.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only dropout.input-ridge``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``dropout.input-ridge``, in ``toyllora/claims/dropout/input_ridge.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("dropout.input-ridge")
