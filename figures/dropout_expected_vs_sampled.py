"""The test-loss gap between sampled-dropout and expected-loss fine-tuning of the digits MLP over steps,
per drop rate, ±2 SE over seeds (Fig. 4 analogue).

Command: ``python figures/dropout_expected_vs_sampled.py [--fast]`` (or ``toyllora figures --only dropout_expected_vs_sampled``).
Runtime: about 60 s (fast: 30 s) on 2 CPU cores. Claim: ``dropout.expected-vs-sampled``.
"""

from toyllora.claims import dropout
from toyllora.figures import save_with_data, script_main


def main(out_dir, seed=0, fast=False):
    data, config = dropout.expected_vs_sampled_data(seed, fast)
    return save_with_data(dropout.plot_expected_vs_sampled(data), out_dir, "dropout_expected_vs_sampled", data, dict(config))


if __name__ == "__main__":
    script_main(main)
