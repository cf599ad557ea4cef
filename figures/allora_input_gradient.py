"""allora.input-gradient: Test loss left (100 − points) against depth, ALLoRA and the scaled switch, per task and budget.

Command: ``python figures/allora_input_gradient.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only allora.input-gradient``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``allora.input-gradient``, in ``toyllora/claims/allora/input_gradient.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("allora.input-gradient")
