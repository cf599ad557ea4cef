"""allora.vs-baselines: Significant wins / ties / losses of ALLoRA against each baseline, and the mean paired difference.

Command: ``python figures/allora_vs_baselines.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only allora.vs-baselines``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``allora.vs-baselines``, in ``toyllora/claims/allora/vs_baselines.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("allora.vs-baselines")
