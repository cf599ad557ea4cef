"""allora.overhead: Step time relative to LoRA's per method and size (median, 95 % interval as error bars), XLA's flops ratio as a marker, and the 1.05× and 1.25× lines.

Command: ``python figures/allora_overhead.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only allora.overhead``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``allora.overhead``, in ``toyllora/claims/allora/overhead.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("allora.overhead")
