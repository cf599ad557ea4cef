"""The ripple with normalization: output gain against depth with no norm, RMSNorm and LayerNorm.

Command: ``python figures/ripple_normalization.py [--fast]`` (or ``toyllora figures --only ripple_normalization``).
Runtime: about 1 s (fast: 1 s) on 2 CPU cores, after imports.
Shows: Output gain over the base network against depth without normalization, with RMSNorm and with LayerNorm
between the layers, for aligned (worst-case input) and random adapters. Claim: ``ripple.normalization``.
"""

from toyllora.claims import ripple
from toyllora.figures import save_with_data, script_main


def main(out_dir, seed=0, fast=False):
    data, config = ripple.normalization_data(seed, fast)
    return save_with_data(ripple.plot_normalization(data), out_dir, "ripple_normalization", data, config)


if __name__ == "__main__":
    script_main(main)
