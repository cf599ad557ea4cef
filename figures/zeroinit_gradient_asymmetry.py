"""Gradient norms at the start: with B = 0 (init_a) ∂L/∂A is exactly zero; with init_b the roles swap.

Command: ``python figures/zeroinit_gradient_asymmetry.py [--fast]`` (or ``toyllora figures --only
zeroinit_gradient_asymmetry``). Runtime: about 5 s (fast: 3 s) on 2 CPU cores.
Shows: mean ||∂L/∂A|| and ||∂L/∂B|| over seeds on the OLS toy, without dropout and with dropout at each
site; bars that are exactly zero are labelled. Claim: ``zeroinit.gradient-asymmetry``.
"""

from toyllora.claims import zeroinit
from toyllora.figures import save_with_data, script_main


def main(out_dir, seed=0, fast=False):
    data, config = zeroinit.asymmetry_data(seed, fast)
    return save_with_data(zeroinit.plot_asymmetry(data), out_dir, "zeroinit_gradient_asymmetry", data, config)


if __name__ == "__main__":
    script_main(main)
