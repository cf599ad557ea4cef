"""dropout.steps-vs-stepsize: Left: distance to ΔW* over training per lr — constant lr, decaying lr, expected-loss control; right: the floor against lr (log–log) with the √lr reference, and the averaged iterates.

Command: ``python figures/dropout_steps_vs_stepsize.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only dropout.steps-vs-stepsize``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``dropout.steps-vs-stepsize``, in ``toyllora/claims/dropout/steps_vs_stepsize.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("dropout.steps-vs-stepsize")
