"""allora.vs-lora: Forest plot of ALLoRA − LoRA per cell and eta² arm (intervals; wins green, losses red).

Command: ``python figures/allora_vs_lora.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only allora.vs-lora``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``allora.vs-lora``, in ``toyllora/claims/allora/vs_lora.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("allora.vs-lora")
