"""Final ||A|| and ||B|| across drop rates: the 'unfair regularization' of Fig. 3, measured.

Command: ``python figures/zeroinit_norm_spread.py [--fast]`` (or ``toyllora figures --only zeroinit_norm_spread``).
Runtime: about 15 s (fast: 10 s) on 2 CPU cores, most of it compilation.
Shows: Final ||A|| and ||B|| against the drop rate for input and bottleneck dropout (Fig. 3 analogue), with the
relative spread of each against the paper's ~30 % (A) and > 500 % (B).
Claim: ``zeroinit.unfair-regularization``.
"""

from toyllora.claims import zeroinit
from toyllora.figures import save_with_data, script_main


def main(out_dir, seed=0, fast=False):
    data, config = zeroinit.unfair_data(seed, fast)
    return save_with_data(zeroinit.plot_unfair(data), out_dir, "zeroinit_norm_spread", data, config)


if __name__ == "__main__":
    script_main(main)
