"""Left, Monte Carlo over masks against the closed form (z-scores); right, a full-rank LoRA trained on
the closed-form expected loss against the diag(XᵀX)-weighted ridge solution, and how much the weighting
matters (weighted vs unweighted ridge).

Command: ``python figures/dropout_input_ridge.py [--fast]`` (or ``toyllora figures --only dropout_input_ridge``).
Runtime: about 40 s (fast: 20 s) on 2 CPU cores. Claim: ``dropout.input-ridge``.
"""

from toyllora.claims import dropout
from toyllora.figures import save_with_data, script_main


def main(out_dir, seed=0, fast=False):
    data, config = dropout.input_ridge_data(seed, fast)
    return save_with_data(dropout.plot_input_ridge(data), out_dir, "dropout_input_ridge", data, dict(config))


if __name__ == "__main__":
    script_main(main)
