"""Per epoch, mean and 99th percentile over entries of the per-entry std of ∂L/∂W₂ across masks, on one
mini-batch and on the full pass, and the mini-batch-noise control without dropout (Fig. 2 analogue).

Command: ``python figures/dropout_gradient_tails.py [--fast]`` (or ``toyllora figures --only dropout_gradient_tails``).
Runtime: about 90 s (fast: 40 s) on 2 CPU cores. Claim: ``dropout.gradient-tails``.
"""

from toyllora.claims import dropout
from toyllora.figures import save_with_data, script_main


def main(out_dir, seed=0, fast=False):
    data, config = dropout.gradient_tails_data(seed, fast)
    return save_with_data(dropout.plot_gradient_tails(data), out_dir, "dropout_gradient_tails", data, dict(config))


if __name__ == "__main__":
    script_main(main)
