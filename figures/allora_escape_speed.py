"""allora.escape-speed: Mean over seeds of the largest row norm of BA, per optimizer, with the escape threshold.

Command: ``python figures/allora_escape_speed.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only allora.escape-speed``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``allora.escape-speed``, in ``toyllora/claims/allora/escape_speed.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("allora.escape-speed")
