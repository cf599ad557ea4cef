"""allora.rank-sweep: Mean test score against the rank, LoRA and ALLoRA, per budget and optimizer (hollow: lr at an edge).

Command: ``python figures/allora_rank_sweep.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only allora.rank-sweep``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``allora.rank-sweep``, in ``toyllora/claims/allora/rank_sweep.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("allora.rank-sweep")
