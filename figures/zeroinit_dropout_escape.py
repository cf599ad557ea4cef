"""Does dropout slow the escape from B = 0? Escape steps by drop rate, site and sampled/expected.

Command: ``python figures/zeroinit_dropout_escape.py [--fast]``
(or ``toyllora figures --only zeroinit_dropout_escape``).
Runtime: about 15 s (fast: 10 s) on 2 CPU cores, most of it compilation.
Shows: Steps until ||BA||_F crosses an absolute level against the drop rate, for input and bottleneck dropout,
with sampled masks and with the closed-form expected loss.
Claim: ``zeroinit.dropout-escape``.
"""

from toyllora.claims import zeroinit
from toyllora.figures import save_with_data, script_main


def main(out_dir, seed=0, fast=False):
    data, config = zeroinit.dropout_escape_data(seed, fast)
    return save_with_data(zeroinit.plot_dropout_escape(data), out_dir, "zeroinit_dropout_escape", data, config)


if __name__ == "__main__":
    script_main(main)
