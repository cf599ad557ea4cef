"""ALLoRA (no dropout) against LoRA at each drop rate over training budgets, mean ± std over seeds.

Command: ``python figures/dropout_allora_fix.py [--fast]`` (or ``toyllora figures --only dropout_allora_fix``).
Runtime: about 90 s (fast: 50 s) on 2 CPU cores. Claim: ``dropout.allora-fix``.
"""

from toyllora.claims import dropout
from toyllora.figures import save_with_data, script_main


def main(out_dir, seed=0, fast=False):
    raw, config = dropout.short_vs_long_data(seed, fast)
    data = dropout.allora_fix_summary(raw)
    return save_with_data(dropout.plot_allora_fix(data), out_dir, "dropout_allora_fix", data, dict(config))


if __name__ == "__main__":
    script_main(main)
