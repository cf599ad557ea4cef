"""lora.rank-stability: Learning speed against rank (log-log), per optimizer and lr, for s = α/r and s = α/√r.

Command: ``python figures/lora_rank_stability.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only lora.rank-stability``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``lora.rank-stability``, in ``toyllora/claims/lora/rank_stability.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("lora.rank-stability")
