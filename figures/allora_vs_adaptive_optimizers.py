"""allora.vs-adaptive-optimizers: Forest plot of every comparison: composed (ALLoRA·O − LoRA·O) and substitute (ALLoRA·SGD − LoRA·O).

Command: ``python figures/allora_vs_adaptive_optimizers.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only allora.vs-adaptive-optimizers``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``allora.vs-adaptive-optimizers``, in ``toyllora/claims/allora/vs_adaptive_optimizers.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("allora.vs-adaptive-optimizers")
