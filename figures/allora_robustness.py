"""allora.robustness: Per cell: the knob spread on test (best − worst setting chosen on validation), ALLoRA vs LoRA, and the failed tuning runs of each.

Command: ``python figures/allora_robustness.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only allora.robustness``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``allora.robustness``, in ``toyllora/claims/allora/robustness.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("allora.robustness")
