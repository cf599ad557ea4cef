"""One shared, readable figure style for toyllora's figures, and a check that a figure is readable.

Figures use matplotlib's constrained layout, so titles, labels and legends get room of their own; put a
legend beside the data with :func:`legend` (outside the axes) whenever it would cover points.
:func:`layout_problems` lists overlapping text and legends drawn over data; ``tests/test_figures.py`` runs it
on every claim's figure.

Example:
    >>> fig, ax = figure()
    >>> _ = ax.plot([0, 1], [0, 1], label="a line")
    >>> _ = legend(ax)
    >>> layout_problems(fig)
    []
"""

from __future__ import annotations

import sys

import matplotlib

if "ipykernel" not in sys.modules:  # draw off-screen, except in a notebook (keep its inline backend)
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

STYLE = {
    "figure.figsize": (6.4, 4.2),
    "figure.dpi": 100,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 10,
    "axes.titlesize": 10,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "svg.hashsalt": "toyllora",
}


def figure(nrows=1, ncols=1, **kw):
    """A new figure and axes in the shared style, with constrained layout."""
    kw.setdefault("layout", "constrained")
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(nrows, ncols, **kw)
    for a in (ax.flat if hasattr(ax, "flat") else [ax]):
        a.grid(True, alpha=0.3)
        a.spines["top"].set_visible(False)
        a.spines["right"].set_visible(False)
    return fig, ax


def legend(ax, where: str = "right", **kw):
    """A legend outside ``ax``: beside it (``where="right"``) or under it (``"below"``), never over the data."""
    kw.setdefault("fontsize", STYLE["legend.fontsize"])
    kw.setdefault("frameon", False)
    if where == "right":
        return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **kw)
    if where == "below":
        return ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), borderaxespad=0.0, **kw)
    raise ValueError(f"where: unknown value {where!r}; allowed: ('right', 'below')")


# ---------------------------------------------------------------------------------- readability check
def _texts(fig):
    """The figure's titles, axis labels, suptitle and legends: ``[(name, artist)]`` (visible, non-empty)."""
    out = []
    if fig._suptitle is not None:
        out.append(("suptitle", fig._suptitle))
    for i, ax in enumerate(fig.axes):
        for name, t in (("title", ax.title), ("left title", ax._left_title), ("right title", ax._right_title),
                        ("xlabel", ax.xaxis.label), ("ylabel", ax.yaxis.label)):
            out.append((f"axes {i} {name}", t))
        if ax.get_legend() is not None:
            out.append((f"axes {i} legend", ax.get_legend()))
    out += [(f"figure legend {i}", lg) for i, lg in enumerate(fig.legends)]
    keep = []
    for name, a in out:
        if not a.get_visible():
            continue
        if hasattr(a, "get_text") and not a.get_text().strip():
            continue
        keep.append((name, a))
    return keep


def _overlap(a, b, pad: float = 1.0) -> bool:
    return a.x0 + pad < b.x1 and b.x0 + pad < a.x1 and a.y0 + pad < b.y1 and b.y0 + pad < a.y1


def _data_points(ax) -> np.ndarray:
    """Display coordinates of the data an axes shows: line vertices, scatter offsets, bar corners."""
    pts = []
    for line in ax.get_lines():
        if not line.get_visible():
            continue
        xy = np.column_stack([np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)])
        if len(xy):
            pts.append(line.get_transform().transform(xy))
    for coll in ax.collections:
        off = coll.get_offsets()
        if coll.get_visible() and len(off):
            pts.append(coll.get_offset_transform().transform(np.asarray(off, float)))
    for patch in ax.patches:
        if patch.get_visible() and hasattr(patch, "get_bbox"):
            bb = patch.get_bbox()
            corners = np.array([[bb.x0, bb.y1], [bb.x1, bb.y1]])
            pts.append(patch.get_data_transform().transform(corners))
    if not pts:
        return np.zeros((0, 2))
    xy = np.concatenate(pts)
    return xy[np.all(np.isfinite(xy), axis=1)]


def layout_problems(fig) -> list[str]:
    """Readability problems of a drawn figure: two text elements (titles, axis labels, suptitle, legends)
    that overlap, or a legend that covers a plotted data point of its axes. Empty when the figure is clean."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    items = [(name, a.get_window_extent(renderer)) for name, a in _texts(fig)]
    problems = [f"{n1} overlaps {n2}" for i, (n1, b1) in enumerate(items) for n2, b2 in items[i + 1:]
                if _overlap(b1, b2)]
    for i, ax in enumerate(fig.axes):
        lg = ax.get_legend()
        if lg is None or not lg.get_visible():
            continue
        bb = lg.get_window_extent(renderer)
        pts = _data_points(ax)
        box = ax.get_window_extent(renderer)  # only points that are drawn (inside the axes) can be hidden
        pts = pts[(pts[:, 0] >= box.x0) & (pts[:, 0] <= box.x1) & (pts[:, 1] >= box.y0) & (pts[:, 1] <= box.y1)]
        inside = (pts[:, 0] > bb.x0) & (pts[:, 0] < bb.x1) & (pts[:, 1] > bb.y0) & (pts[:, 1] < bb.y1)
        if inside.any():
            problems.append(f"axes {i} legend covers {int(inside.sum())} data point(s)")
    return problems
