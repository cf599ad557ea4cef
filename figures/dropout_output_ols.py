"""Left, with whitened inputs, the relative error between ridge at λ = c(1−q)/q and q·W_OLS and the
relative gradient of the expected loss at q·W_OLS; right, for non-whitened inputs, how far the best ridge
solution over λ stays from q·W_OLS, per keep probability and input condition number.

Command: ``python figures/dropout_output_ols.py [--fast]`` (or ``toyllora figures --only dropout_output_ols``).
Runtime: about 10 s (fast: 8 s) on 2 CPU cores. Claim: ``dropout.output-ols``.
"""

from toyllora.claims import dropout
from toyllora.figures import save_with_data, script_main


def main(out_dir, seed=0, fast=False):
    data, config = dropout.output_ols_data(seed, fast)
    return save_with_data(dropout.plot_output_ols(data), out_dir, "dropout_output_ols", data, dict(config))


if __name__ == "__main__":
    script_main(main)
