"""Diagrams: a 3-D voxel lattice moved by a DDF, and the training schematics of registration networks."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.path import Path

from tutorialreg.viz._common import GREY, OKABE_ITO, as_ddf3d, new_axes


def _lattice_lines(points: np.ndarray, step: int) -> np.ndarray:
    """Segments ``[m, 2, 3]`` of the lines through a lattice of points ``[d1, d2, d3, 3]``: every ``step``-th
    line along each axis, cut into its two-point pieces (one array of equal-length segments, which every
    Matplotlib version draws; axes of size 1 give no lines along them)."""
    segments = [np.zeros((0, 2, 3), points.dtype)]
    for axis in range(3):
        n = points.shape[axis]
        if n < 2:
            continue
        sub = points[tuple(slice(None) if a == axis else slice(None, None, step) for a in range(3))]
        lines = np.moveaxis(sub, axis, 2).reshape(-1, n, 3)
        segments.append(np.stack([lines[:, :-1], lines[:, 1:]], axis=2).reshape(-1, 2, 3))
    return np.concatenate(segments)


def plot_grid_3d(ddf: Any, ax: Axes | None = None, step: int = 1, color: str = OKABE_ITO[4],
                 reference_color: str = GREY, linewidth: float = 1.8,
                 title: str = "voxel grid displaced by a DDF") -> Axes:
    """Draw the voxel lattice of a small DDF in 3-D, before and after displacement.

    Every ``step``-th grid line along each axis is drawn twice: through the voxel indices ``x``
    (``reference_color``, thin, dashed) and through ``x + ddf(x)`` (``color``, solid), the points of the
    moving image that the fixed voxels read. Coordinates are voxel indices (ij); the box aspect follows the
    lattice's extent.

    :param ddf: ``[d1, d2, d3, 3]`` or ``[1, d1, d2, d3, 3]`` displacements in voxels.
    :param ax: a 3-D Axes (``fig.add_subplot(projection="3d")``); None makes a new pyplot figure with one.
    :param step: draw every ``step``-th line.
    :return: the Axes, holding two labelled ``Line3DCollection`` (the grid, then the displaced grid) and a
        legend.
    """
    from mpl_toolkits.mplot3d.art3d import Line3DCollection

    u = as_ddf3d(ddf, "plot_grid_3d")
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.figure(figsize=(7.0, 6.5)).add_subplot(projection="3d")
    elif getattr(ax, "name", None) != "3d":
        raise ValueError(f"plot_grid_3d: ax must be a 3-D Axes (fig.add_subplot(projection='3d')); "
                         f"got a {getattr(ax, 'name', type(ax).__name__)!r} Axes")
    step = max(1, int(step))
    grid = np.moveaxis(np.indices(u.shape[:3], dtype=np.float32), 0, -1)  # voxel indices x, ij
    for points, colour, style, width, label in ((grid, reference_color, "--", 0.55 * linewidth, "grid x"),
                                                (grid + u, color, "-", linewidth, "displaced x + u(x)")):
        ax.add_collection3d(Line3DCollection(_lattice_lines(points, step), colors=colour, linestyles=style,
                                             linewidths=width, label=label))
    both = np.concatenate([grid.reshape(-1, 3), (grid + u).reshape(-1, 3)])
    low, high = both.min(axis=0), both.max(axis=0)
    pad = 0.05 * np.maximum(high - low, 1.0)
    ax.set(xlim=(low[0] - pad[0], high[0] + pad[0]), ylim=(low[1] - pad[1], high[1] + pad[1]),
           zlim=(low[2] - pad[2], high[2] + pad[2]))  # collections do not autoscale 3-D axes everywhere
    ax.set_box_aspect(tuple(np.maximum(np.ptp(both, axis=0), 1.0)))
    ax.set(xlabel="axis 0 (voxels)", ylabel="axis 1 (voxels)", zlabel="axis 2 (voxels)")
    ax.legend(loc="upper left", fontsize="small", framealpha=0.8)
    ax.set_title(title)
    return ax


#: The training strategies drawn by :func:`plot_training_schematic`.
TRAINING_KINDS: tuple[str, ...] = ("unsupervised", "weakly-supervised", "combined")

# box key: (text, centre x, centre y, colour, kinds that use it by first letter: u(nsupervised),
# w(eakly-supervised), c(ombined)). Rows: images y = 4.9, network y = 4.2, labels y = 2.25.
SCHEMATIC_BOXES: dict[str, tuple[str, float, float, str, str]] = {
    "mov": ("moving image", 0.0, 4.9, OKABE_ITO[1], "uwc"),
    "fix": ("fixed image", 0.0, 3.5, OKABE_ITO[1], "uwc"),
    "net": ("network", 2.3, 4.2, GREY, "uwc"),
    "ddf": ("DDF", 4.5, 4.2, OKABE_ITO[2], "uwc"),
    "warp_img": ("warping", 6.8, 4.9, GREY, "uwc"),
    "warped_img": ("warped\nmoving image", 9.0, 4.9, OKABE_ITO[1], "uwc"),
    "img_loss": ("image loss", 11.3, 4.9, OKABE_ITO[5], "uc"),
    "reg": ("regulariser\n(on the DDF)", 11.3, 3.4, OKABE_ITO[6], "uwc"),
    "lab": ("moving label", 0.0, 2.25, OKABE_ITO[0], "wc"),
    "warp_lab": ("warping", 6.8, 2.25, GREY, "wc"),
    "warped_lab": ("warped\nmoving label", 9.0, 2.25, OKABE_ITO[0], "wc"),
    "lab_loss": ("label loss", 11.3, 2.25, OKABE_ITO[5], "wc"),
    "fix_lab": ("fixed label", 0.0, 1.25, OKABE_ITO[0], "wc"),
    "total": ("training loss\n(weighted sum)", 13.6, 3.4, OKABE_ITO[3], "uwc"),
}
# (start, end, corner points between them): straight arrows have no corners. The fixed image reaches the
# image loss around the outside (left, over the top) and the fixed label along the bottom, so that no arrow
# crosses another arrow or a box.
SCHEMATIC_ARROWS: tuple[tuple[str, str, tuple[tuple[float, float], ...]], ...] = (
    ("mov", "net", ()), ("fix", "net", ()), ("net", "ddf", ()), ("mov", "warp_img", ()),
    ("ddf", "warp_img", ()), ("warp_img", "warped_img", ()), ("warped_img", "img_loss", ()),
    ("fix", "img_loss", ((-1.3, 3.5), (-1.3, 5.55), (11.3, 5.55))),
    ("ddf", "reg", ()), ("lab", "warp_lab", ()), ("ddf", "warp_lab", ()), ("warp_lab", "warped_lab", ()),
    ("warped_lab", "lab_loss", ()), ("fix_lab", "lab_loss", ((11.3, 1.25),)),
    ("img_loss", "total", ()), ("reg", "total", ()), ("lab_loss", "total", ()),
)
BOX_HALF = (0.85, 0.36)  # half width, half height of a box (diagram units)
_GAP = 0.1  # between a box's edge and an arrow's end (the rounded box pads its edge by 0.05)


def _edge_point(centre: np.ndarray, toward: np.ndarray) -> np.ndarray:
    """Where the line from a box's ``centre`` toward a point leaves the box (plus the gap)."""
    d = toward - centre
    dx, dy = np.maximum(np.abs(d), 1e-9)
    return centre + d * min((BOX_HALF[0] + _GAP) / dx, (BOX_HALF[1] + _GAP) / dy)


def arrow_path(start: str, end: str, corners: tuple[tuple[float, float], ...] = ()) -> np.ndarray:
    """Vertices ``[n, 2]`` (diagram units) of the arrow from box ``start`` to box ``end`` via ``corners``."""
    p0 = np.array(SCHEMATIC_BOXES[start][1:3], dtype=float)
    p1 = np.array(SCHEMATIC_BOXES[end][1:3], dtype=float)
    via = [np.array(c, dtype=float) for c in corners]
    first, last = (via[0], via[-1]) if via else (p1, p0)
    return np.array([_edge_point(p0, first), *via, _edge_point(p1, last)])


def plot_training_schematic(kind: str, ax: Axes | None = None, title: str | None = None,
                            faded_alpha: float = 0.12) -> Axes:
    """Boxes and arrows of a registration network trained the ``kind`` way.

    All kinds share one layout of 14 boxes (:class:`~matplotlib.patches.FancyBboxPatch` in ``ax.patches``,
    text in ``ax.texts``) and 17 arrows (:class:`~matplotlib.patches.FancyArrowPatch` in ``ax.patches``,
    gid ``"start->end"``, keys of :data:`SCHEMATIC_BOXES`); what ``kind`` does not use is faded. The image
    loss compares the warped moving image with the fixed image, the label loss the warped moving label with
    the fixed label: both inputs of each loss have an arrow.

    :param kind: one of :data:`TRAINING_KINDS`: ``"unsupervised"`` (image loss + regulariser),
        ``"weakly-supervised"`` (label loss + regulariser; labels are needed for training only) or
        ``"combined"`` (both losses).
    :param ax: Axes to draw on (None: a new 12 x 4 inch pyplot figure).
    :param title: default ``"<kind> training of a registration network"``.
    :param faded_alpha: opacity of the unused parts.
    :return: the Axes.
    """
    if kind not in TRAINING_KINDS:
        raise ValueError(f"plot_training_schematic: kind must be one of "
                         f"{', '.join(repr(k) for k in TRAINING_KINDS)}; got {kind!r}")
    key = kind[0]
    ax = new_axes(ax, (12.0, 4.0))
    half_w, half_h = BOX_HALF
    for text, x, y, colour, used in SCHEMATIC_BOXES.values():
        alpha = 1.0 if key in used else faded_alpha
        ax.add_patch(FancyBboxPatch((x - half_w, y - half_h), 2 * half_w, 2 * half_h,
                                    boxstyle="round,pad=0.05", linewidth=1.5,
                                    facecolor=to_rgba(colour, 0.35 * alpha),
                                    edgecolor=to_rgba(colour, alpha)))
        ax.text(x, y, text, ha="center", va="center", fontsize=8.5, alpha=alpha)
    for start, end, corners in SCHEMATIC_ARROWS:
        used = key in SCHEMATIC_BOXES[start][4] and key in SCHEMATIC_BOXES[end][4]
        ax.add_patch(FancyArrowPatch(path=Path(arrow_path(start, end, corners)), arrowstyle="-|>",
                                     mutation_scale=11, color="black", lw=1.0,
                                     alpha=1.0 if used else faded_alpha, gid=f"{start}->{end}"))
    ax.set(xlim=(-1.6, 14.55), ylim=(0.8, 5.65), aspect="equal")
    ax.axis("off")
    default = f"{kind.replace('-', ' ')} training of a registration network"
    ax.set_title(default if title is None else title)
    return ax
