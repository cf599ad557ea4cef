"""Adam normalizes ALLoRA's per-row factor away: distance of ALLoRA's ΔW trajectory from LoRA's.

Command: ``python figures/allora_adam_cancellation.py [--fast]`` (or ``toyllora figures --only
allora_adam_cancellation``). Runtime: about 20 s (fast: 10 s) on 2 CPU cores.
Shows: ||ΔW_ALLoRA(t) − ΔW_LoRA(t)|| / ||ΔW_LoRA(T)|| for adapt = both, B, A, under SGD (left) and Adam
(right), same seeds and lr, on the OLS toy. Claim: ``allora.adam-cancellation``.
"""

from toyllora.claims import headtohead
from toyllora.figures import save_with_data, script_main


def main(out_dir, seed=0, fast=False):
    data, config = headtohead.cancellation_data(seed, fast)
    return save_with_data(headtohead.plot_cancellation(data), out_dir, "allora_adam_cancellation", data, config)


if __name__ == "__main__":
    script_main(main)
