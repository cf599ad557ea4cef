"""allora.dropout-neutral: Forest plot of ALLoRA − ALLoRA+D per cell, with the ±margin band.

Command: ``python figures/allora_dropout_neutral.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only allora.dropout-neutral``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``allora.dropout-neutral``, in ``toyllora/claims/allora/dropout_neutral.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("allora.dropout-neutral")
