"""Test loss against the training budget per drop rate, and the best drop rate per budget (Table 5
analogue).

Command: ``python figures/dropout_short_vs_long.py [--fast]`` (or ``toyllora figures --only dropout_short_vs_long``).
Runtime: about 90 s (fast: 50 s) on 2 CPU cores. Claim: ``dropout.short-vs-long``.
"""

from toyllora.claims import dropout
from toyllora.figures import save_with_data, script_main


def main(out_dir, seed=0, fast=False):
    raw, config = dropout.short_vs_long_data(seed, fast)
    data = dropout.short_vs_long_summary(raw)
    return save_with_data(dropout.plot_short_vs_long(data), out_dir, "dropout_short_vs_long", data, dict(config))


if __name__ == "__main__":
    script_main(main)
