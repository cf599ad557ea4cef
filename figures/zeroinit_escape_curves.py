"""Escape from B = 0 by method, under SGD and Adam, with the exact gradient flow overlaid.

Command: ``python figures/zeroinit_escape_curves.py [--fast]`` (or ``toyllora figures --only zeroinit_escape_curves``).
Runtime: about 20 s (fast: 15 s) on 2 CPU cores, most of it compilation.
Shows: The learned fraction of the target shift against steps for LoRA at several learning rates, LoRA+, scaled
GD, init_b, PiSSA and ALLoRA under SGD and Adam; aligned starts overlaid with the exact gradient flow.
Claim: ``zeroinit.escape-time``.
"""

from toyllora.claims import zeroinit
from toyllora.figures import save_with_data, script_main


def main(out_dir, seed=0, fast=False):
    data, config = zeroinit.escape_data(seed, fast)
    return save_with_data(zeroinit.plot_escape(data), out_dir, "zeroinit_escape_curves", data, config)


if __name__ == "__main__":
    script_main(main)
