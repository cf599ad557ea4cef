"""allora.adam-cancellation: Relative distance of ALLoRA's ΔW trajectory from LoRA's (each at its own tuned lr), SGD and Adam.

Command: ``python figures/allora_adam_cancellation.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only allora.adam-cancellation``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``allora.adam-cancellation``, in ``toyllora/claims/allora/adam_cancellation.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("allora.adam-cancellation")
