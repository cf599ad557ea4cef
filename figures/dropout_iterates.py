"""The distance between sampled-dropout and expected-loss iterates over steps (median and 10–90 % band
over seeds) for SGD and Adam at three step sizes; dotted lines mark 'limited steps' T_lim.

Command: ``python figures/dropout_iterates.py [--fast]`` (or ``toyllora figures --only dropout_iterates``).
Runtime: about 60 s (fast: 25 s) on 2 CPU cores. Claim: ``dropout.iterates``.
"""

from toyllora.claims import dropout
from toyllora.figures import save_with_data, script_main


def main(out_dir, seed=0, fast=False):
    data, config = dropout.iterates_data(seed, fast)
    return save_with_data(dropout.plot_iterates(data), out_dir, "dropout_iterates", data, dict(config))


if __name__ == "__main__":
    script_main(main)
