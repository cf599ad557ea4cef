"""allora.vs-plain-lora: Forest plot of ALLoRA − LoRA (s = 1, no dropout) per cell.

Command: ``python figures/allora_vs_plain_lora.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only allora.vs-plain-lora``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``allora.vs-plain-lora``, in ``toyllora/claims/allora/vs_plain_lora.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("allora.vs-plain-lora")
