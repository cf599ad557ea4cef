"""allora.family-ranking: Significant wins / ties / losses of ALLoRA against each family member, and the mean difference.

Command: ``python figures/allora_family_ranking.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only allora.family-ranking``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``allora.family-ranking``, in ``toyllora/claims/allora/family_ranking.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("allora.family-ranking")
