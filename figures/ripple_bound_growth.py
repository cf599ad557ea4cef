"""The ripple bound: gain over the base network against depth, aligned vs random adapters, bound overlaid.

Command: ``python figures/ripple_bound_growth.py [--fast]`` (or ``toyllora figures --only ripple_bound_growth``).
Runtime: about 1 s (fast: 1 s) on 2 CPU cores, after imports.
Shows: Gain over the base network against depth L for aligned (bound attained) and random adapters, with the
bound (1 + s m)^L dashed, for s in {0.25, 1, 4, 16}. Claim: ``ripple.bound``.
"""

from toyllora.claims import ripple
from toyllora.figures import save_with_data, script_main


def main(out_dir, seed=0, fast=False):
    data, config = ripple.bound_data(seed, fast)
    return save_with_data(ripple.plot_bound(data), out_dir, "ripple_bound_growth", data, config)


if __name__ == "__main__":
    script_main(main)
