"""Coupling between layers: normalized cross-layer Hessian blocks against the scaling factor and depth.

Command: ``python figures/ripple_coupling.py [--fast]`` (or ``toyllora figures --only ripple_coupling``).
Runtime: about 10 s (fast: 3 s) on 2 CPU cores, after imports.
Shows: Mean normalized cross-layer Hessian coupling (and absolute off-diagonal blocks) against s, one line per
depth. Claim: ``ripple.coupling``.
"""

from toyllora.claims import ripple
from toyllora.figures import save_with_data, script_main


def main(out_dir, seed=0, fast=False):
    data, config = ripple.coupling_data(seed, fast)
    return save_with_data(ripple.plot_coupling(data), out_dir, "ripple_coupling", data, config)


if __name__ == "__main__":
    script_main(main)
