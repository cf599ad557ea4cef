"""allora.ablation: Each effect's contrast per cell (interval; filled if significant after Holm).

Command: ``python figures/allora_ablation.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only allora.ablation``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``allora.ablation``, in ``toyllora/claims/allora/ablation.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("allora.ablation")
