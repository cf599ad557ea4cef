"""zeroinit.allora-landscape: ALLoRA's conditioning relative to LoRA's (start and escape), its factor's spread, and the imbalance.

Command: ``python figures/zeroinit_allora_landscape.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only zeroinit.allora-landscape``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``zeroinit.allora-landscape``, in ``toyllora/claims/zeroinit/allora_landscape.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("zeroinit.allora-landscape")
