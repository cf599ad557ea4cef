"""transfer.ripple-performance: Left: test points at the full budget, ALLoRA and LoRA at every s, per optimizer. Right: the tested differences ALLoRA − LoRA (test points) with their 95 % intervals and Holm-adjusted p.

Command: ``python figures/transfer_ripple_performance.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only transfer.ripple-performance``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``transfer.ripple-performance``, in ``toyllora/claims/transfer/ripple_performance.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("transfer.ripple-performance")
