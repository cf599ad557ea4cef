"""One shared, readable figure style for toyllora's figures."""

from __future__ import annotations

import sys

import matplotlib

if "ipykernel" not in sys.modules:  # draw off-screen, except in a notebook (keep its inline backend)
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {
    "figure.figsize": (6.4, 4.2),
    "figure.dpi": 100,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 10,
    "axes.titlesize": 11,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "svg.hashsalt": "toyllora",
}


def figure(nrows=1, ncols=1, **kw):
    """A new figure and axes in the shared style."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(nrows, ncols, **kw)
    for a in (ax.flat if hasattr(ax, "flat") else [ax]):
        a.grid(True, alpha=0.3)
        a.spines["top"].set_visible(False)
        a.spines["right"].set_visible(False)
    return fig, ax
