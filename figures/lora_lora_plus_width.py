"""lora.lora-plus-width: Benefit of each ratio λ > 1 over λ = 1 (test points, 95% interval) against width, per budget.

Command: ``python figures/lora_lora_plus_width.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only lora.lora-plus-width``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``lora.lora-plus-width``, in ``toyllora/claims/lora/lora_plus_width.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("lora.lora-plus-width")
