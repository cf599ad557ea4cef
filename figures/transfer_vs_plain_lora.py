"""transfer.vs-plain-lora: Forest plot of ALLoRA − LoRA (s = 1, no dropout) per cell and budget, with the margin.

Command: ``python figures/transfer_vs_plain_lora.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only transfer.vs-plain-lora``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``transfer.vs-plain-lora``, in ``toyllora/claims/transfer/vs_plain_lora.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("transfer.vs-plain-lora")
