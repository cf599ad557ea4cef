"""transfer.allora-fix: Test points against the budget: ALLoRA and LoRA at every dropout rate (points: higher is better).

Command: ``python figures/transfer_allora_fix.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only transfer.allora-fix``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``transfer.allora-fix``, in ``toyllora/claims/transfer/allora_fix.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("transfer.allora-fix")
