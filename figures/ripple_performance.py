"""Does the ripple matter for fine-tuning? Tuned loss against depth by method (LoRA at several s, ALLoRA).

Command: ``python figures/ripple_performance.py [--fast]`` (or ``toyllora figures --only ripple_performance``).
Runtime: about 90 s (fast: 5 s) on 2 CPU cores, after imports.
Shows: Tuned train loss (relative to the base model) against depth after a short and a long Adam budget, for
LoRA at s in {0.25, 1, 4, 16} and ALLoRA; mean ± std over seeds. Claim: ``ripple.performance``.
"""

from toyllora.claims import ripple
from toyllora.figures import save_with_data, script_main


def main(out_dir, seed=0, fast=False):
    data, config = ripple.performance_data(seed, fast)
    return save_with_data(ripple.plot_finetune(data), out_dir, "ripple_performance", data, config)


if __name__ == "__main__":
    script_main(main)
