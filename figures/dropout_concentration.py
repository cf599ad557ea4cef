"""The RMS gap between the loss averaged over N masks and its expectation, against Std/√N, per drop
rate, on synthetic data and on diabetes (Fig. 1 analogue).

Command: ``python figures/dropout_concentration.py [--fast]`` (or ``toyllora figures --only dropout_concentration``).
Runtime: about 20 s (fast: 10 s) on 2 CPU cores. Claim: ``dropout.concentration``.
"""

from toyllora.claims import dropout
from toyllora.figures import save_with_data, script_main


def main(out_dir, seed=0, fast=False):
    data, config = dropout.concentration_data(seed, fast)
    return save_with_data(dropout.plot_concentration(data), out_dir, "dropout_concentration", data, dict(config))


if __name__ == "__main__":
    script_main(main)
