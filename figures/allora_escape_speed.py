"""Escape from B = 0: largest row norm of BA over the first steps, ALLoRA vs LoRA at l_b and at eta·l_b.

Command: ``python figures/allora_escape_speed.py [--fast]`` (or ``toyllora figures --only
allora_escape_speed``). Runtime: about 15 s (fast: 8 s) on 2 CPU cores.
Shows: under SGD (left) and Adam (right), the mean over seeds of max_i ||(BA)_i|| on the OLS toy for ALLoRA
(eta = 2), LoRA (s = 1) at the same base lr and LoRA at eta·l_b, with the escape threshold (the paper's
Fig. 5 right). Claim: ``allora.escape-speed``.
"""

from toyllora.claims import headtohead
from toyllora.figures import save_with_data, script_main


def main(out_dir, seed=0, fast=False):
    data, config = headtohead.escape_data(seed, fast)
    return save_with_data(headtohead.plot_escape(data), out_dir, "allora_escape_speed", data, config)


if __name__ == "__main__":
    script_main(main)
