"""transfer.overhead: Step time relative to LoRA's (median, 95% interval) and the flops ratio.

Command: ``python figures/transfer_overhead.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only transfer.overhead``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``transfer.overhead``, in ``toyllora/claims/transfer/overhead.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("transfer.overhead")
