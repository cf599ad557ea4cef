"""ALLoRA's unscaled input gradient: tuned loss against depth, ALLoRA vs ALLoRA with the input gradient scaled.

Command: ``python figures/ripple_input_gradient.py [--fast]`` (or ``toyllora figures --only ripple_input_gradient``).
Runtime: about 40 s (fast: 4 s) on 2 CPU cores, after imports.
Shows: Tuned train loss against depth for ALLoRA (input gradient unscaled, the paper) and ALLoRA with the
input gradient scaled too. Claim: ``allora.input-gradient``.
"""

from toyllora.claims import ripple
from toyllora.figures import save_with_data, script_main


def main(out_dir, seed=0, fast=False):
    data, config = ripple.input_gradient_data(seed, fast)
    return save_with_data(ripple.plot_finetune(data), out_dir, "ripple_input_gradient", data, config)


if __name__ == "__main__":
    script_main(main)
