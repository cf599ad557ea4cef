"""transfer.head-to-head: Forest plot of ALLoRA − each method, per cell, with the margin.

Command: ``python figures/transfer_head_to_head.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only transfer.head-to-head``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``transfer.head-to-head``, in ``toyllora/claims/transfer/head_to_head.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("transfer.head-to-head")
