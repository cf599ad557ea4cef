"""The spectrum of the exact Hessian at the zero-init start, against n (mean and summed loss).

Command: ``python figures/zeroinit_hessian_spectrum.py [--fast]``
(or ``toyllora figures --only zeroinit_hessian_spectrum``).
Runtime: about 10 s (fast: 5 s) on 2 CPU cores, most of it compilation.
Shows: Eigenvalues of the exact Hessian w.r.t. (A, B) at the LoRA start B = 0 against the training set size n,
for the loss averaged and summed over n (symlog axis; negative/zero/positive counts annotated).
Claim: ``zeroinit.hessian``.
"""

from toyllora.claims import zeroinit
from toyllora.figures import save_with_data, script_main


def main(out_dir, seed=0, fast=False):
    data, config = zeroinit.hessian_data(seed, fast)
    return save_with_data(zeroinit.plot_hessian_spectrum(data), out_dir, "zeroinit_hessian_spectrum", data, config)


if __name__ == "__main__":
    script_main(main)
