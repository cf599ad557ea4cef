"""ripple.normalization: Relative change of the output against depth, no norm vs RMSNorm vs LayerNorm: generic adapters (what the verdict judges) and the aligned control (pure scale).

Command: ``python figures/ripple_normalization.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only ripple.normalization``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``ripple.normalization``, in ``toyllora/claims/ripple/normalization.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("ripple.normalization")
