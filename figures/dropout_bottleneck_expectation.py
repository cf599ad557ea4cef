"""Z-scores of Monte Carlo over bottleneck masks against the paper's Eq. (1), per keep and random adapter.

Command: ``python figures/dropout_bottleneck_expectation.py [--fast]`` (or ``toyllora figures --only dropout_bottleneck_expectation``).
Runtime: about 15 s (fast: 8 s) on 2 CPU cores. Claim: ``dropout.bottleneck-expectation``.
"""

from toyllora.claims import dropout
from toyllora.figures import save_with_data, script_main


def main(out_dir, seed=0, fast=False):
    data, config = dropout.bottleneck_data(seed, fast)
    return save_with_data(dropout.plot_mc_z(data, "Bottleneck dropout: Monte Carlo vs Eq. (1)"), out_dir, "dropout_bottleneck_expectation", data, dict(config))


if __name__ == "__main__":
    script_main(main)
