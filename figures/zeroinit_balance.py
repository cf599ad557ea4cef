"""The balance matrix AAᵀ − BᵀB: conserved by gradient flow; how GD, Adam and ALLoRA break it.

Command: ``python figures/zeroinit_balance.py [--fast]`` (or ``toyllora figures --only zeroinit_balance``).
Runtime: about 20 s (fast: 15 s) on 2 CPU cores, most of it compilation.
Shows: Drift of the balance matrix AAᵀ − BᵀB (conserved by gradient flow) under GD at several step sizes, Adam,
ALLoRA, LoRA+, scaled GD, init_b and PiSSA.
Claim: ``zeroinit.balance``.
"""

from toyllora.claims import zeroinit
from toyllora.figures import save_with_data, script_main


def main(out_dir, seed=0, fast=False):
    data, config = zeroinit.balance_data(seed, fast)
    return save_with_data(zeroinit.plot_balance(data), out_dir, "zeroinit_balance", data, config)


if __name__ == "__main__":
    script_main(main)
