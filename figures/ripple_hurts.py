"""ripple.hurts: Left: the sensitivity to s (test loss of the worst over the best s, both picked on validation) against depth, per task, optimizer and budget, with its 95 % interval. Right: LoRA s = 1's train-loss curves (the plateau, measured).

Command: ``python figures/ripple_hurts.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only ripple.hurts``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``ripple.hurts``, in ``toyllora/claims/ripple/hurts.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("ripple.hurts")
