"""transfer.dropout-crossover: d(T) per dropout arm with its 95% interval; T* marked.

Command: ``python figures/transfer_dropout_crossover.py [--fast] [--seeds 0,1,2,3,4] [--results results] [--out DIR]``
(or ``toyllora figures --only transfer.dropout-crossover``).
Runtime: a second or two when ``results/`` holds a current record of the claim (the figure is drawn from it);
otherwise the claim runs first (its time is in REPORT.md; ``--fast`` is a smoke test of a few seconds).
Claim: ``transfer.dropout-crossover``, in ``toyllora/claims/transfer/dropout_crossover.py``.
"""

from toyllora.harness.figures import script_main

if __name__ == "__main__":
    script_main("transfer.dropout-crossover")
