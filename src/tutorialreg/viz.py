"""Figures for registration results and a slice browser that works with or without a kernel.

Display convention (used by every function here)
-------------------------------------------------
A 2-D slice of a volume ``vol [d1, d2, d3]`` along ``axis`` is ``np.take(vol, k, axis)``. It is shown
with ``imshow`` in matrix order, ``origin="upper"``: the FIRST remaining axis runs VERTICALLY (top to
bottom, index increasing downwards) and the SECOND remaining axis runs HORIZONTALLY (left to right).
For the default ``axis=2`` the slice is ``vol[:, :, k]``: rows = axis 0, columns = axis 1. No transpose
and no flip is ever applied. Coordinates are voxel indices (ij indexing, voxel units), and in-plane
displacements from :func:`ddf_slice` follow the same order: component 0 along the rows (down), component 1
along the columns (right).

Colours are colour-blind safe: label overlays use the Okabe-Ito palette (:data:`OKABE_ITO`), signed maps
use the diverging ``RdBu_r`` map centred on the neutral value (0 for differences, 1 for Jacobians).

Kinds of functions
------------------
- Array functions return numpy arrays: :func:`checkerboard`, :func:`label_comparison`, :func:`ddf_slice`.
- Axes-level functions draw on ``ax`` and return it; with ``ax=None`` they make a new pyplot figure:
  :func:`overlay_label`, :func:`plot_label_comparison`, :func:`difference`, :func:`warped_grid`,
  :func:`ddf_quiver`, :func:`jacobian_map`, :func:`plot_losses`, :func:`plot_grid_3d` (on a 3-D Axes),
  :func:`plot_training_schematic`.
- Figure-level :func:`plot_slices` returns a :class:`matplotlib.figure.Figure` that is closed in pyplot
  (no global state): it shows once when it is the value of a notebook cell (not at all otherwise); in a
  script call ``fig.savefig``.
- :func:`slice_browser` returns a :class:`SliceBrowser` (static HTML slider or live ipywidgets view) and
  :class:`LiveLossPlot` draws loss curves during an optimisation loop.

The module needs numpy and matplotlib (Pillow comes with matplotlib); ipywidgets only for the live view.
TensorFlow tensors are accepted anywhere an array is (they are converted with ``np.asarray``).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm, to_rgb, to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Patch

__all__ = [
    "OKABE_ITO",
    "GREY",
    "COMPARISON_COLORS",
    "slice_browser",
    "SliceBrowser",
    "plot_slices",
    "overlay_label",
    "label_comparison",
    "plot_label_comparison",
    "checkerboard",
    "difference",
    "ddf_slice",
    "warped_grid",
    "ddf_quiver",
    "jacobian_map",
    "plot_losses",
    "plot_curves",
    "LINE_STYLES",
    "plot_grid_3d",
    "TRAINING_KINDS",
    "plot_training_schematic",
    "LiveLossPlot",
]

#: Okabe-Ito colour-blind-safe palette in the order used for label channels: orange, sky blue, bluish
#: green, yellow, blue, vermillion, reddish purple (the palette's black is left out: it vanishes on CT/MR).
OKABE_ITO: tuple[str, ...] = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")

#: Colours of :func:`label_comparison` (no red/green pair).
COMPARISON_COLORS: dict[str, str] = {
    "true negative": "#000000",
    "true positive": "#DDDDDD",
    "false positive": "#E69F00",
    "false negative": "#0072B2",
}

#: Neutral grey that goes with :data:`OKABE_ITO` (machinery boxes, reference grids).
GREY = "#999999"

_PANEL_IN = 2.2  # longest side of one panel of a static frame, inches (x 100 dpi = 220 px)
_FRAME_DPI = 100
_DEFAULT_MAX_FRAMES = 40
_PNG_COLOURS = 64  # static frames are 64-colour palette PNGs: about 40% smaller than RGB
_TRUE = {"1", "true", "yes", "on"}


# ----------------------------------------------------------------------------------------------------------
# input checks and small helpers
# ----------------------------------------------------------------------------------------------------------
def _as_volume(x: Any, name: str) -> np.ndarray:
    """``[d1,d2,d3]`` float32 from ``[d1,d2,d3]``, ``[1,d1,d2,d3]``, ``[d1,d2,d3,1]``, ``[1,d1,d2,d3,1]``."""
    arr = np.asarray(x)
    if arr.ndim == 5 and arr.shape[0] == 1 and arr.shape[-1] == 1:
        arr = arr[0, ..., 0]
    elif arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    elif arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3:
        raise ValueError(
            f"{name} must be a 3-D volume [d1, d2, d3] (a leading batch of 1 is allowed); "
            f"got shape {tuple(np.shape(x))}"
        )
    return arr.astype(np.float32, copy=False)


def _as_label(x: Any, vol_shape: tuple[int, ...], name: str) -> np.ndarray:
    """``[d1,d2,d3,c]`` float32 label matching ``vol_shape`` (a leading batch of 1 is allowed)."""
    arr = np.asarray(x)
    if arr.ndim >= 4 and arr.shape[0] == 1 and arr.shape[1:4] == vol_shape:
        arr = arr[0]
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[:3] != vol_shape:
        raise ValueError(
            f"{name} must be [d1, d2, d3] or [d1, d2, d3, c] with [d1, d2, d3] = {vol_shape} "
            f"(the shape of its volume); got shape {tuple(np.shape(x))}"
        )
    return arr.astype(np.float32, copy=False)


def _check_axis(axis: int) -> int:
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2 (volumes are [d1, d2, d3]); got {axis!r}")
    return int(axis)


def _titles(titles: Sequence[str] | None, n: int, who: str) -> list[str]:
    """One title per volume (default ``volume i``); ValueError naming ``who`` if the count differs."""
    out = [f"volume {i}" for i in range(n)] if titles is None else [str(t) for t in titles]
    if len(out) != n:
        raise ValueError(f"{who}: titles must have one entry per volume ({n}); got {len(out)}")
    return out


def _labels_per_volume(labels: Any, volumes: list[np.ndarray], who: str) -> list[np.ndarray | None]:
    """One ``[d1,d2,d3,c]`` label (or None) per volume from None, one shared array, or a list."""
    n = len(volumes)
    if labels is None:
        return [None] * n
    if not isinstance(labels, (list, tuple)):
        labels = [labels]
    if len(labels) == 1:
        labels = list(labels) * n
    if len(labels) != n:
        raise ValueError(f"{who}: labels must be one array shared by all volumes or one per volume ({n}); "
                         f"got {len(labels)}")
    return [None if lab is None else _as_label(lab, v.shape, f"{who}: label {i}")
            for i, (lab, v) in enumerate(zip(labels, volumes, strict=True))]


def _in_kernel() -> bool:
    """True inside a running IPython kernel (Jupyter, Colab, nbval, the book build)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _aspect(spacing: Sequence[float] | None, axis: int) -> float:
    """Pixel height/width of a slice along ``axis`` for voxel ``spacing`` (1 for isotropic voxels)."""
    if spacing is None:
        return 1.0
    if len(spacing) != 3:
        raise ValueError(f"spacing must be 3 voxel sizes (s1, s2, s3); got {spacing!r}")
    rows, cols = [a for a in range(3) if a != axis]
    return float(spacing[rows]) / float(spacing[cols])


def _intensity_range(volumes: Sequence[np.ndarray], window: float | None, level: float | None
                     ) -> tuple[float, float]:
    """(window, level); missing values come from the 1st-99th percentile of all volumes pooled."""
    if window is None or level is None:
        sample = np.concatenate([v.ravel()[:: max(1, v.size // 200_000)] for v in volumes])
        sample = sample[np.isfinite(sample)] if sample.size else sample
        lo, hi = (float(p) for p in np.percentile(sample, [1.0, 99.0])) if sample.size else (0.0, 1.0)
        if not hi > lo:
            lo, hi = (float(sample.min()), float(sample.max())) if sample.size else (0.0, 1.0)
        if not hi > lo:
            hi = lo + 1.0
        window = hi - lo if window is None else window
        level = (hi + lo) / 2 if level is None else level
    if window <= 0:
        raise ValueError(f"window must be > 0 (intensity units); got {window}")
    return float(window), float(level)


def _new_axes(ax: Axes | None, figsize: tuple[float, float] = (4.0, 4.0)) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


def _label_axes(ax: Axes, axis: int | None = None) -> None:
    """Voxel axis names on a slice (rows = first remaining axis, columns = second)."""
    rows, cols = (0, 1) if axis is None else [a for a in range(3) if a != axis]
    ax.set_ylabel(f"axis {rows} (voxels)")
    ax.set_xlabel(f"axis {cols} (voxels)")


def _as_2d(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D slice [H, W]; got shape {tuple(arr.shape)}")
    return arr


def _as_ddf3d(x: Any, fn: str) -> np.ndarray:
    """DDF ``[d1, d2, d3, 3]`` float32 (voxels) from that or ``[1, d1, d2, d3, 3]``; ``fn``: the caller."""
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 5 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"{fn}: ddf must be [d1, d2, d3, 3] (or [1, d1, d2, d3, 3]) displacements in "
                         f"voxels; got shape {tuple(np.shape(x))}")
    return arr


def _as_ddf2d(x: Any, name: str = "ddf2d") -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[-1] != 2:
        raise ValueError(f"{name} must be [H, W, 2] in-plane displacements (voxels, see ddf_slice); "
                         f"got shape {tuple(np.shape(x))}")
    return arr


# ----------------------------------------------------------------------------------------------------------
# array functions
# ----------------------------------------------------------------------------------------------------------
def checkerboard(a2d: Any, b2d: Any, tiles: int = 8) -> np.ndarray:
    """Checkerboard of two ``[H, W]`` slices: ``tiles x tiles`` tiles, the top-left one from ``a2d``.

    Tile ``(i, j)`` covers rows ``r`` with ``r * tiles // H == i`` and columns ``c * tiles // W == j``.
    """
    a, b = _as_2d(a2d, "a2d"), _as_2d(b2d, "b2d")
    if a.shape != b.shape:
        raise ValueError(f"checkerboard: a2d and b2d must have the same shape [H, W]; "
                         f"got {a.shape} and {b.shape}")
    if int(tiles) < 1:
        raise ValueError(f"checkerboard: tiles must be >= 1; got {tiles}")
    h, w = a.shape
    ti = np.arange(h)[:, None] * int(tiles) // h
    tj = np.arange(w)[None, :] * int(tiles) // w
    return np.where((ti + tj) % 2 == 0, a, b)


def label_comparison(pred2d: Any, true2d: Any, threshold: float = 0.5) -> np.ndarray:
    """RGB image ``[H, W, 3]`` (float32 in [0, 1]) comparing a predicted with a true ``[H, W]`` label.

    A pixel is foreground when its value is > ``threshold``. Colours (:data:`COMPARISON_COLORS`):
    true positive light grey, false positive Okabe-Ito orange, false negative Okabe-Ito blue, true
    negative black.
    """
    p, t = _as_2d(pred2d, "pred2d") > threshold, _as_2d(true2d, "true2d") > threshold
    if p.shape != t.shape:
        raise ValueError(f"label_comparison: pred2d and true2d must have the same shape [H, W]; "
                         f"got {p.shape} and {t.shape}")
    out = np.zeros(p.shape + (3,), dtype=np.float32)
    for key, mask in (("true positive", p & t), ("false positive", p & ~t), ("false negative", ~p & t)):
        out[mask] = to_rgb(COMPARISON_COLORS[key])
    return out


def ddf_slice(ddf: Any, k: int, axis: int = 2) -> np.ndarray:
    """In-plane components ``[H, W, 2]`` of slice ``k`` along ``axis`` of a DDF ``[d1, d2, d3, 3]``.

    ``[1, d1, d2, d3, 3]`` is accepted. For ``axis=2``: ``ddf[:, :, k, :2]`` (component along axis 0 =
    rows, then along axis 1 = columns); for ``axis=0``: ``ddf[k, :, :, 1:]``; for ``axis=1``:
    ``ddf[:, k, :, ::2]``. Displacements are in voxels.
    """
    arr = _as_ddf3d(ddf, "ddf_slice")
    axis = _check_axis(axis)
    if not 0 <= k < arr.shape[axis]:
        raise ValueError(f"ddf_slice: slice {k} is outside axis {axis} of size {arr.shape[axis]}")
    in_plane = [a for a in range(3) if a != axis]
    return np.take(arr, k, axis=axis)[..., in_plane]


# ----------------------------------------------------------------------------------------------------------
# axes-level functions
# ----------------------------------------------------------------------------------------------------------
def _draw_labels(ax: Axes, lab: np.ndarray, colors: Sequence[str], alpha: float, contour: bool,
                 aspect: float | str = 1.0) -> None:
    """Overlay label channels ``[H, W, c]`` as contours at 0.5 or translucent fills."""
    for c in range(lab.shape[-1]):
        m = lab[..., c]
        colour = colors[c % len(colors)]
        if contour:
            if m.max() > 0.5 > m.min():
                ax.contour(m, levels=[0.5], colors=[colour], linewidths=1.2)
        elif (m > 0.5).any():
            rgba = np.zeros(m.shape + (4,), dtype=np.float32)
            rgba[m > 0.5] = to_rgba(colour, alpha)
            ax.imshow(rgba, interpolation="nearest", aspect=aspect)


def overlay_label(ax: Axes | None, image2d: Any, label2d: Any, colors: Sequence[str] = OKABE_ITO,
                  alpha: float = 0.4, contour: bool = True, names: Sequence[str] | None = None,
                  cmap: str = "gray", vmin: float | None = None, vmax: float | None = None,
                  title: str = "image with label overlay") -> Axes:
    """Grey-scale ``image2d [H, W]`` with labels drawn on top; returns the Axes.

    ``label2d``: ``[H, W]``, ``[H, W, c]`` or a list of ``[H, W]``; channel ``i`` gets ``colors[i]``.
    ``contour=True`` draws the 0.5 iso-line of each channel; ``contour=False`` fills it with opacity
    ``alpha``. ``names`` adds a legend.
    """
    img = _as_2d(image2d, "image2d")
    lab = np.asarray(label2d if not isinstance(label2d, (list, tuple)) else np.stack(label2d, -1), np.float32)
    if lab.ndim == 2:
        lab = lab[..., None]
    if lab.ndim != 3 or lab.shape[:2] != img.shape:
        raise ValueError(f"overlay_label: label2d must be [H, W] or [H, W, c] with [H, W] = {img.shape}; "
                         f"got shape {tuple(np.shape(label2d))}")
    ax = _new_axes(ax)
    ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    _draw_labels(ax, lab, colors, alpha, contour)
    if names is not None:
        ax.legend(handles=[Patch(color=colors[i % len(colors)], label=str(n)) for i, n in enumerate(names)],
                  loc="upper right", fontsize="small", framealpha=0.8)
    ax.set_title(title)
    _label_axes(ax)
    return ax


def plot_label_comparison(ax: Axes | None, pred: Any, true: Any, threshold: float = 0.5,
                          title: str | None = None) -> Axes:
    """Draw :func:`label_comparison` of two ``[H, W]`` labels with a legend; the title reports the Dice."""
    rgb = label_comparison(pred, true, threshold)
    p, t = np.asarray(pred) > threshold, np.asarray(true) > threshold
    denom = p.sum() + t.sum()
    dice = 2.0 * (p & t).sum() / denom if denom else 1.0
    ax = _new_axes(ax)
    ax.imshow(rgb, interpolation="nearest")
    handles = [Patch(facecolor=COMPARISON_COLORS[k], edgecolor="0.5", label=k)
               for k in ("true positive", "false positive", "false negative")]
    ax.legend(handles=handles, loc="upper right", fontsize="small", framealpha=0.8)
    ax.set_title(title if title is not None else f"predicted vs true label (Dice {dice:.3f})")
    _label_axes(ax)
    return ax


def difference(a2d: Any, b2d: Any, ax: Axes | None = None, vmax: float | None = None,
               title: str = "difference a - b") -> Axes:
    """Draw ``a2d - b2d`` (both ``[H, W]``) with ``RdBu_r`` centred at 0 and a colour bar; returns the Axes.

    ``vmax`` sets the symmetric colour range ``[-vmax, vmax]`` (default: the largest absolute difference).
    """
    a, b = _as_2d(a2d, "a2d").astype(np.float32), _as_2d(b2d, "b2d").astype(np.float32)
    if a.shape != b.shape:
        raise ValueError(f"difference: a2d and b2d must have the same shape [H, W]; "
                         f"got {a.shape} and {b.shape}")
    d = a - b
    vmax = float(np.abs(d).max()) if vmax is None else float(vmax)
    vmax = vmax if vmax > 0 else 1e-6
    ax = _new_axes(ax)
    im = ax.imshow(d, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label="intensity difference")
    ax.set_title(title)
    _label_axes(ax)
    return ax


def _background(ax: Axes, image: Any, shape: tuple[int, int]) -> None:
    if image is None:
        ax.set_xlim(-0.5, shape[1] - 0.5)
        ax.set_ylim(shape[0] - 0.5, -0.5)  # rows increase downwards, as imshow shows them
        ax.set_aspect("equal")
        return
    img = _as_2d(image, "image")
    if img.shape != shape:
        raise ValueError(f"image must be [H, W] = {shape} (the DDF slice's grid); got shape {img.shape}")
    ax.imshow(img, cmap="gray", interpolation="nearest")


def warped_grid(ax: Axes | None, ddf2d: Any, step: int = 4, image: Any = None, color: str = OKABE_ITO[0],
                linewidth: float = 0.8, title: str = "deformed grid", clip: bool = True) -> Axes:
    """Draw every ``step``-th grid line of the slice moved by its in-plane displacement; returns the Axes.

    ``ddf2d [H, W, 2]`` (from :func:`ddf_slice`) is on the fixed grid: the point at (row r, column c) is
    drawn at ``(r + ddf2d[r, c, 0], c + ddf2d[r, c, 1])``, i.e. where the fixed grid samples the moving
    image. An optional ``image [H, W]`` is shown underneath.

    ``clip=True`` (default) keeps the view to the slice extent, ``x in [-0.5, W - 0.5]`` and
    ``y in [-0.5, H - 0.5]`` (the pixels of ``image``), so lines that leave the slice are cut at its edge;
    ``clip=False`` widens the view to show every line. Rows increase downwards either way.
    """
    u = _as_ddf2d(ddf2d)
    h, w = u.shape[:2]
    step = max(1, int(step))
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    y, x = rows + u[..., 0], cols + u[..., 1]
    ax = _new_axes(ax)
    _background(ax, image, (h, w))
    for r in range(0, h, step):
        ax.plot(x[r, :], y[r, :], color=color, linewidth=linewidth)
    for c in range(0, w, step):
        ax.plot(x[:, c], y[:, c], color=color, linewidth=linewidth)
    (x0, x1), (y0, y1) = (-0.5, w - 0.5), (-0.5, h - 0.5)  # the slice's pixels
    if not clip:
        drawn = np.zeros((h, w), bool)
        drawn[::step], drawn[:, ::step] = True, True
        x0, x1 = min(x0, float(x[drawn].min())), max(x1, float(x[drawn].max()))
        y0, y1 = min(y0, float(y[drawn].min())), max(y1, float(y[drawn].max()))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y1, y0)  # rows increase downwards, as imshow shows them
    ax.set_title(title)
    _label_axes(ax)
    return ax


def ddf_quiver(ax: Axes | None, ddf2d: Any, step: int = 4, image: Any = None, color: str = OKABE_ITO[0],
               title: str = "in-plane displacement") -> Axes:
    """Arrows of the in-plane displacement ``ddf2d [H, W, 2]`` every ``step`` voxels; returns the Axes.

    Arrows are drawn to scale (an arrow's length is the displacement in voxels), starting at the fixed
    grid points; an optional ``image [H, W]`` is shown underneath.
    """
    u = _as_ddf2d(ddf2d)
    h, w = u.shape[:2]
    step = max(1, int(step))
    rows, cols = np.mgrid[0:h:step, 0:w:step]
    sub = u[::step, ::step]
    ax = _new_axes(ax)
    _background(ax, image, (h, w))
    ax.quiver(cols, rows, sub[..., 1], sub[..., 0], color=color, angles="xy", scale_units="xy", scale=1.0,
              width=0.004)
    ax.set_title(title)
    _label_axes(ax)
    return ax


def jacobian_map(ax: Axes | None, jac2d: Any, vrange: float | None = None, fold_color: str = OKABE_ITO[3],
                 title: str = "Jacobian determinant") -> Axes:
    """Draw a Jacobian determinant slice ``[H, W]`` (``RdBu_r`` centred at 1: blue shrinks, red grows).

    Voxels with determinant <= 0 (folding) are painted ``fold_color`` (Okabe-Ito yellow) and counted in
    the title. ``vrange``: colours span ``[1 - vrange, 1 + vrange]`` (default: largest ``|J - 1|``).
    """
    jac = _as_2d(jac2d, "jac2d").astype(np.float32)
    r = float(np.abs(jac - 1.0).max()) if vrange is None else float(vrange)
    r = r if r > 0 else 1e-3
    ax = _new_axes(ax)
    im = ax.imshow(jac, cmap="RdBu_r", norm=TwoSlopeNorm(vcenter=1.0, vmin=1.0 - r, vmax=1.0 + r),
                   interpolation="nearest")
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label="det J")
    folds = jac <= 0
    if folds.any():
        rgba = np.zeros(jac.shape + (4,), dtype=np.float32)
        rgba[folds] = to_rgba(fold_color, 1.0)
        ax.imshow(rgba, interpolation="nearest")
        ax.legend(handles=[Patch(facecolor=fold_color, edgecolor="k", label="folding (det J <= 0)")],
                  loc="upper right", fontsize="small", framealpha=0.8)
    ax.set_title(f"{title}: {int(folds.sum())} folding voxels ({100.0 * folds.mean():.2f}%)")
    _label_axes(ax)
    return ax


def _draw_losses(ax: Axes, series: Mapping[str, tuple[Sequence[float], Sequence[float]]], log: bool,
                 title: str) -> Axes:
    positive = True
    for i, (name, (xs, ys)) in enumerate(series.items()):
        ys = np.asarray(ys, dtype=np.float64)
        positive = positive and bool(np.all(ys[np.isfinite(ys)] > 0))
        ax.plot(np.asarray(xs), ys, label=name, color=OKABE_ITO[(i + 4) % len(OKABE_ITO)], linewidth=1.5)
    use_log = log and positive and len(series) > 0
    ax.set_yscale("log" if use_log else "linear")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (log scale)" if use_log else "loss")
    ax.set_title(title)
    if series:
        ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    return ax


def plot_losses(history: Mapping[str, Sequence[float]], ax: Axes | None = None, log: bool = True,
                steps: Sequence[float] | None = None, title: str = "loss curves") -> Axes:
    """Loss curves from ``{name: values}``; x = ``steps`` (default 0, 1, 2, ...); returns the Axes.

    ``log=True`` uses a log y-axis when every value is > 0 (otherwise linear, and the y label says so).
    """
    series = {}
    for name, values in history.items():
        xs = np.arange(len(values)) if steps is None else np.asarray(steps)[: len(values)]
        series[str(name)] = (xs, values)
    return _draw_losses(_new_axes(ax, (5.0, 3.2)), series, log, title)


#: Colour + line style + marker cycles for curves that must stay distinguishable without colour.
LINE_STYLES: tuple[dict[str, str], ...] = (
    {"color": OKABE_ITO[4], "ls": "-", "marker": "o"},
    {"color": OKABE_ITO[5], "ls": "--", "marker": "s"},
    {"color": OKABE_ITO[2], "ls": "-.", "marker": "^"},
    {"color": OKABE_ITO[6], "ls": ":", "marker": "D"},
    {"color": OKABE_ITO[0], "ls": (0, (5, 1)), "marker": "v"},
    {"color": OKABE_ITO[1], "ls": (0, (1, 1)), "marker": "P"},
)


def plot_curves(ax: Axes | None, x: Sequence[float], curves: Mapping[str, Sequence[float]],
                normalise: bool = False, xlabel: str = "", ylabel: str = "loss", title: str = "") -> Axes:
    """Several curves ``{name: y}`` over a shared ``x`` with distinct colours, line styles and markers.

    ``normalise=True`` rescales each curve to ``[0, 1]`` (min to max) so curves of different units share
    one axis. Returns the Axes.
    """
    ax = _new_axes(ax, (5.0, 3.2))
    if len(curves) > len(LINE_STYLES):
        raise ValueError(f"at most {len(LINE_STYLES)} curves per axes, got {len(curves)}")
    for (name, y), style in zip(curves.items(), LINE_STYLES[: len(curves)], strict=True):
        y = np.asarray(y, dtype=np.float64)
        if normalise:
            span = y.max() - y.min()
            y = (y - y.min()) / span if span > 0 else np.zeros_like(y)
        ax.plot(np.asarray(x), y, label=str(name), ms=4, **style)
    ax.set(xlabel=xlabel, ylabel=ylabel + (" (rescaled to [0, 1])" if normalise else ""), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return ax


# ----------------------------------------------------------------------------------------------------------
# diagrams: a 3-D lattice and training schematics
# ----------------------------------------------------------------------------------------------------------
def _lattice_lines(points: np.ndarray, step: int) -> list[np.ndarray]:
    """Polylines ``[n, 3]`` through a lattice of points ``[d1, d2, d3, 3]``: every ``step``-th line along
    each axis (axes of size 1 give no lines along them)."""
    lines: list[np.ndarray] = []
    for axis in range(3):
        n = points.shape[axis]
        if n < 2:
            continue
        sub = points[tuple(slice(None) if a == axis else slice(None, None, step) for a in range(3))]
        lines.extend(np.moveaxis(sub, axis, 2).reshape(-1, n, 3))
    return lines


def plot_grid_3d(ddf: Any, ax: Axes | None = None, step: int = 1, color: str = OKABE_ITO[4],
                 reference_color: str = GREY, linewidth: float = 1.8,
                 title: str = "voxel grid displaced by a DDF") -> Axes:
    """Draw the voxel lattice of a small DDF ``[d1, d2, d3, 3]`` in 3-D, before and after displacement.

    Every ``step``-th grid line along each axis is drawn twice: through the voxel indices ``x``
    (``reference_color``, thin, dashed) and through ``x + ddf(x)`` (``color``, solid), the points of the
    moving image that the fixed voxels read. ``[1, d1, d2, d3, 3]`` is accepted; coordinates are voxel
    indices (ij), the box aspect follows the lattice's extent. ``ax`` must be a 3-D Axes
    (``fig.add_subplot(projection="3d")``); ``None`` makes a new pyplot figure with one. Returns the Axes,
    which holds two labelled ``Line3DCollection`` (the grid, then the displaced grid) and a legend.
    """
    from mpl_toolkits.mplot3d.art3d import Line3DCollection

    u = _as_ddf3d(ddf, "plot_grid_3d")
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
    ax.set_box_aspect(tuple(np.maximum(np.ptp(both, axis=0), 1.0)))
    ax.set(xlabel="axis 0 (voxels)", ylabel="axis 1 (voxels)", zlabel="axis 2 (voxels)")
    ax.legend(loc="upper left", fontsize="small", framealpha=0.8)
    ax.set_title(title)
    return ax


#: The training strategies drawn by :func:`plot_training_schematic`.
TRAINING_KINDS: tuple[str, ...] = ("unsupervised", "weakly-supervised", "combined")

# box key: (text, centre x, centre y, colour, kinds that use it by first letter: u(nsupervised),
# w(eakly-supervised), c(ombined))
_SCHEMATIC_BOXES: dict[str, tuple[str, float, float, str, str]] = {
    "mov": ("moving image", 0.0, 5.0, OKABE_ITO[1], "uwc"),
    "fix": ("fixed image", 0.0, 3.5, OKABE_ITO[1], "uwc"),
    "net": ("network", 2.3, 4.25, GREY, "uwc"),
    "ddf": ("DDF", 4.5, 4.25, OKABE_ITO[2], "uwc"),
    "warp_img": ("warping", 6.8, 5.0, GREY, "uwc"),
    "warped_img": ("warped\nmoving image", 9.0, 5.0, OKABE_ITO[1], "uwc"),
    "img_loss": ("image loss\n(vs fixed image)", 11.3, 5.0, OKABE_ITO[5], "uc"),
    "reg": ("regulariser\n(on the DDF)", 11.3, 3.3, OKABE_ITO[6], "uwc"),
    "lab": ("moving label", 0.0, 1.6, OKABE_ITO[0], "wc"),
    "warp_lab": ("warping", 6.8, 1.6, GREY, "wc"),
    "warped_lab": ("warped\nmoving label", 9.0, 1.6, OKABE_ITO[0], "wc"),
    "lab_loss": ("label loss\n(vs fixed label)", 11.3, 1.6, OKABE_ITO[5], "wc"),
    "total": ("training loss\n(weighted sum)", 13.6, 3.3, OKABE_ITO[3], "uwc"),
}
_SCHEMATIC_ARROWS: tuple[tuple[str, str], ...] = (
    ("mov", "net"), ("fix", "net"), ("net", "ddf"), ("mov", "warp_img"), ("ddf", "warp_img"),
    ("warp_img", "warped_img"), ("warped_img", "img_loss"), ("ddf", "reg"), ("lab", "warp_lab"),
    ("ddf", "warp_lab"), ("warp_lab", "warped_lab"), ("warped_lab", "lab_loss"),
    ("img_loss", "total"), ("reg", "total"), ("lab_loss", "total"),
)
_BOX_HALF = (0.85, 0.42)  # half width, half height of a box (diagram units)


def plot_training_schematic(kind: str, ax: Axes | None = None, title: str | None = None,
                            faded_alpha: float = 0.12) -> Axes:
    """Boxes and arrows of a registration network trained the ``kind`` way; returns the Axes.

    ``kind`` is one of :data:`TRAINING_KINDS`: ``"unsupervised"`` (image loss + regulariser),
    ``"weakly-supervised"`` (label loss + regulariser; labels are needed for training only) or
    ``"combined"`` (both losses). All kinds share one layout of 13 boxes (``ax.patches``, text in
    ``ax.texts``) and 15 arrows; what ``kind`` does not use is faded to opacity ``faded_alpha``. Default
    title: ``"<kind> training of a registration network"``.
    """
    if kind not in TRAINING_KINDS:
        raise ValueError(f"plot_training_schematic: kind must be one of "
                         f"{', '.join(repr(k) for k in TRAINING_KINDS)}; got {kind!r}")
    key = kind[0]
    ax = _new_axes(ax, (12.0, 4.0))
    half_w, half_h = _BOX_HALF
    for text, x, y, colour, used in _SCHEMATIC_BOXES.values():
        alpha = 1.0 if key in used else faded_alpha
        ax.add_patch(FancyBboxPatch((x - half_w, y - half_h), 2 * half_w, 2 * half_h,
                                    boxstyle="round,pad=0.05", linewidth=1.5,
                                    facecolor=to_rgba(colour, 0.35 * alpha),
                                    edgecolor=to_rgba(colour, alpha)))
        ax.text(x, y, text, ha="center", va="center", fontsize=8.5, alpha=alpha)
    for start, end in _SCHEMATIC_ARROWS:
        (_, x0, y0, _, used0), (_, x1, y1, _, used1) = _SCHEMATIC_BOXES[start], _SCHEMATIC_BOXES[end]
        p0, p1 = np.array([x0, y0]), np.array([x1, y1])
        dx, dy = np.maximum(np.abs(p1 - p0), 1e-9)
        edge = (p1 - p0) * min((half_w + 0.1) / dx, (half_h + 0.1) / dy)  # from box edge to box edge
        alpha = 1.0 if key in used0 and key in used1 else faded_alpha
        ax.annotate("", xy=tuple(p1 - edge), xytext=tuple(p0 + edge),
                    arrowprops=dict(arrowstyle="-|>", color="black", lw=1.0, alpha=alpha,
                                    shrinkA=0, shrinkB=0))
    ax.set(xlim=(-1.0, 14.6), ylim=(0.9, 5.7), aspect="equal")
    ax.axis("off")
    default = f"{kind.replace('-', ' ')} training of a registration network"
    ax.set_title(default if title is None else title)
    return ax


# ----------------------------------------------------------------------------------------------------------
# figure-level
# ----------------------------------------------------------------------------------------------------------
def plot_slices(volumes: Sequence[Any], titles: Sequence[str] | None = None,
                slices: int | Sequence[int] | None = None, axis: int = 2, labels: Any = None,
                ncols: int | None = None, cmap: str = "gray",
                suptitle: str | None = None, window: float | None = None, level: float | None = None,
                spacing: Sequence[float] | None = None, contour: bool = True) -> Figure:
    """Grid of slices: one row per slice, one column per volume (all ``[d1, d2, d3]``); returns a Figure.

    ``volumes``: a list of volumes (one array is taken as a list of one). ``slices``: indices along
    ``axis``, or a count of evenly spaced slices (default 3, at 1/4, 1/2, 3/4). ``labels``: None, one
    label array shared by all volumes, or one per volume (entries may be None), each ``[d1, d2, d3]`` or
    ``[d1, d2, d3, c]``. ``ncols`` wraps the panels (ordered slice by slice) into that many columns
    (default: the number of volumes). ``window``/``level``: one intensity window for all panels (default
    1st-99th percentile of all volumes). ``spacing``: voxel sizes, for the pixel aspect ratio.
    """
    if not isinstance(volumes, (list, tuple)):
        volumes = [volumes]
    vols = [_as_volume(v, f"plot_slices: volume {i}") for i, v in enumerate(volumes)]
    if not vols:
        raise ValueError("plot_slices: volumes must hold at least one [d1, d2, d3] volume")
    axis = _check_axis(axis)
    sizes = {v.shape[axis] for v in vols}
    if len(sizes) != 1:
        raise ValueError(f"plot_slices: volumes must have the same size along axis {axis}; "
                         f"got shapes {[v.shape for v in vols]}")
    n = sizes.pop()
    if slices is None or isinstance(slices, (int, np.integer)):
        count = 3 if slices is None else int(slices)
        ks = sorted({int(round(n * (i + 1) / (count + 1))) for i in range(count)}) if count > 0 else []
        ks = [min(k, n - 1) for k in ks]
    else:
        ks = [int(k) for k in slices]
    if not ks or any(not 0 <= k < n for k in ks):
        raise ValueError(f"plot_slices: slices must be indices in [0, {n - 1}] along axis {axis}; "
                         f"got {slices!r}")
    titles = _titles(titles, len(vols), "plot_slices")
    labs = _labels_per_volume(labels, vols, "plot_slices")
    window, level = _intensity_range(vols, window, level)
    lo, hi = level - window / 2, level + window / 2
    aspect = _aspect(spacing, axis)

    panels = [(k, i) for k in ks for i in range(len(vols))]
    ncols = len(vols) if ncols is None else max(1, int(ncols))
    nrows = -(-len(panels) // ncols)
    import matplotlib.pyplot as plt  # in a kernel, importing pyplot registers the Figure display hook

    fig = plt.figure(figsize=(2.6 * ncols, 2.7 * nrows + 0.5), layout="constrained")
    plt.close(fig)  # detached from pyplot: no global state, shown once when it is a cell's value
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for idx, ax in enumerate(axes.ravel()):
        if idx >= len(panels):
            ax.set_axis_off()
            continue
        k, i = panels[idx]
        ax.imshow(np.take(vols[i], k, axis=axis), cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest",
                  aspect=aspect)
        if labs[i] is not None:
            _draw_labels(ax, np.take(labs[i], k, axis=axis), OKABE_ITO, 0.4, contour, aspect)
        ax.set_title(f"{titles[i]}, slice {k}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        row, col = divmod(idx, ncols)
        rows_ax, cols_ax = [a for a in range(3) if a != axis]
        if col == 0:
            ax.set_ylabel(f"axis {rows_ax} (voxels)", fontsize=8)
        if row == nrows - 1 or idx + ncols >= len(panels):
            ax.set_xlabel(f"axis {cols_ax} (voxels)", fontsize=8)
    fig.suptitle(suptitle if suptitle is not None else f"slices along axis {axis}")
    return fig


# ----------------------------------------------------------------------------------------------------------
# slice browser
# ----------------------------------------------------------------------------------------------------------
def _png_bytes(fig: Figure, colours: int | None) -> bytes:
    """Render a Figure with Agg to PNG bytes; ``colours`` > 0 makes a palette PNG of that many colours."""
    from PIL import Image

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    img = Image.fromarray(np.ascontiguousarray(rgb))
    buf = io.BytesIO()
    if colours:
        img.quantize(colours, method=Image.Quantize.MEDIANCUT).save(buf, format="PNG", optimize=True)
    else:
        img.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


_HTML_TEMPLATE = """<div id="{id}" class="tutorialreg-slice-browser" tabindex="0" \
style="display:inline-block;font-family:sans-serif;font-size:13px;outline:none">
<img id="{id}-img" src="data:image/png;base64,{first}" alt="{alt}" style="display:block;max-width:100%">
<div style="display:flex;align-items:center;gap:8px;margin-top:4px">
<input type="range" id="{id}-range" min="0" max="{last}" step="1" value="{start}" \
aria-label="slice index" style="flex:1;min-width:120px">
<span id="{id}-label" style="white-space:nowrap">{caption}</span></div>
<div style="color:#555;font-size:11px">{orientation}</div>
<script type="application/json" id="{id}-frames">{frames}</script>
<script>
(function () {{
  var id = "{id}", root = document.getElementById(id);
  if (!root || root.getAttribute("data-ready")) {{ return; }}
  root.setAttribute("data-ready", "1");
  var frames = JSON.parse(document.getElementById(id + "-frames").textContent);
  var slices = {slices}, n = {n}, axis = {axis};
  var img = document.getElementById(id + "-img");
  var range = document.getElementById(id + "-range");
  var label = document.getElementById(id + "-label");
  function show(i) {{
    i = Math.max(0, Math.min(frames.length - 1, i | 0));
    range.value = i;
    img.src = "data:image/png;base64," + frames[i];
    label.textContent = "slice " + slices[i] + " / " + n + " (axis " + axis + ")";
  }}
  function nearest(s) {{
    var best = 0;
    for (var j = 1; j < slices.length; j++) {{
      if (Math.abs(slices[j] - s) < Math.abs(slices[best] - s)) {{ best = j; }}
    }}
    return best;
  }}
  function fromHash() {{
    var parts = window.location.hash.replace(/^#/, "").split(/[&;]/);
    for (var p = 0; p < parts.length; p++) {{
      var kv = parts[p].split("=");
      if (kv.length === 2 && (kv[0] === id || kv[0] === "z")) {{
        var s = parseInt(kv[1], 10);
        if (!isNaN(s)) {{ show(nearest(s)); }}
      }}
    }}
  }}
  range.addEventListener("input", function () {{ show(+range.value); }});
  root.addEventListener("keydown", function (e) {{
    if (e.target === range) {{ return; }}
    var d = {{ArrowLeft: -1, ArrowDown: -1, ArrowRight: 1, ArrowUp: 1}}[e.key];
    if (d) {{ show(+range.value + d); e.preventDefault(); }}
  }});
  img.addEventListener("click", function () {{ root.focus(); }});
  window.addEventListener("hashchange", fromHash);
  fromHash();
}})();
</script></div>"""


class SliceBrowser:
    """Browse slices of several volumes side by side; made by :func:`slice_browser`.

    Attributes: ``volumes`` (list of ``[d1, d2, d3]``), ``labels`` (per volume ``[d1, d2, d3, c]`` or
    None), ``titles``, ``axis``, ``window``, ``level``, ``mode`` ("static" or "widget").

    - :meth:`to_html` / ``_repr_html_``: static HTML + JS slider over pre-rendered PNG frames (no kernel,
      no network), shown in static mode.
    - :meth:`widget`: a live ipywidgets view (slice slider, axis, window/level, label toggle), shown in
      widget mode.
    - :meth:`frame_png`: one rendered frame (PNG bytes); :meth:`save`: a standalone HTML page.
    """

    def __init__(self, volumes: Sequence[np.ndarray], labels: Sequence[np.ndarray | None],
                 titles: Sequence[str], axis: int, window: float, level: float, cmap: str, mode: str,
                 max_frames: int, contour: bool, spacing: Sequence[float] | None) -> None:
        self.volumes = list(volumes)
        self.labels = list(labels)
        self.titles = list(titles)
        self.axis = axis
        self.window = window
        self.level = level
        self.cmap = cmap
        self.mode = mode
        self.max_frames = max_frames
        self.contour = contour
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)
        self.element_id = "tr-sb-" + uuid.uuid4().hex[:12]
        self._html: str | None = None

    def __repr__(self) -> str:
        shapes = ", ".join(str(v.shape) for v in self.volumes)
        return f"SliceBrowser({shapes}, axis={self.axis}, mode={self.mode!r})"

    # -- rendering ------------------------------------------------------------------------------------------
    def frame_indices(self) -> list[int]:
        """Slice indices along ``axis`` in the static browser (at most ``max_frames``, evenly spaced)."""
        n = self.volumes[0].shape[self.axis]
        if n <= self.max_frames:
            return list(range(n))
        return sorted({int(round(x)) for x in np.linspace(0, n - 1, self.max_frames)})

    def frame_png(self, k: int, axis: int | None = None, window: float | None = None,
                  level: float | None = None, show_labels: bool = True, colours: int | None = None) -> bytes:
        """PNG bytes of slice ``k`` along ``axis``: all volumes side by side, titled, labels overlaid."""
        axis = self.axis if axis is None else _check_axis(axis)
        window = self.window if window is None else window
        level = self.level if level is None else level
        lo, hi = level - window / 2, level + window / 2
        aspect = _aspect(self.spacing, axis)
        boxes = []
        for v in self.volumes:
            h, w = (s for a, s in enumerate(v.shape) if a != axis)
            scale = _PANEL_IN / max(h * aspect, w)
            boxes.append((w * scale, h * aspect * scale))
        pad, top = 0.06, 0.3
        fig_w = sum(b[0] for b in boxes) + pad * (len(boxes) + 1)
        fig_h = max(b[1] for b in boxes) + top + pad
        fig = Figure(figsize=(fig_w, fig_h), dpi=_FRAME_DPI)
        x = pad
        for v, lab, title, (bw, bh) in zip(self.volumes, self.labels, self.titles, boxes, strict=True):
            ax = fig.add_axes((x / fig_w, (fig_h - top - bh) / fig_h, bw / fig_w, bh / fig_h))
            ax.imshow(np.take(v, k, axis=axis), cmap=self.cmap, vmin=lo, vmax=hi, interpolation="nearest",
                      aspect="auto")
            if show_labels and lab is not None:
                _draw_labels(ax, np.take(lab, k, axis=axis), OKABE_ITO, 0.4, self.contour, "auto")
            ax.set_axis_off()
            ax.set_title(title, fontsize=9, pad=3)
            x += bw + pad
        return _png_bytes(fig, colours)

    def _orientation(self, axis: int) -> str:
        rows, cols = [a for a in range(3) if a != axis]
        return f"vertical: axis {rows} (down), horizontal: axis {cols} (right); voxel indices"

    def to_html(self) -> str:
        """Self-contained HTML + JS slider (base64 PNG frames, no external scripts); built once."""
        if self._html is None:
            ks = self.frame_indices()
            frames = [base64.b64encode(self.frame_png(k, colours=_PNG_COLOURS)).decode("ascii") for k in ks]
            n = self.volumes[0].shape[self.axis]
            start = int(np.argmin([abs(k - n // 2) for k in ks]))
            self._html = _HTML_TEMPLATE.format(
                id=self.element_id,
                first=frames[start],
                alt=html.escape("slice browser: " + ", ".join(self.titles), quote=True),
                last=len(frames) - 1,
                start=start,
                caption=f"slice {ks[start]} / {n} (axis {self.axis})",
                orientation=self._orientation(self.axis),
                frames=json.dumps(frames),
                slices=json.dumps(ks),
                n=n,
                axis=self.axis,
            )
        return self._html

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a standalone HTML page holding the static browser."""
        page = ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>slice browser</title></head>\n"
                f"<body>\n{self.to_html()}\n</body></html>\n")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(page)

    # -- notebook display ----------------------------------------------------------------------------------
    def _repr_html_(self) -> str | None:
        return self.to_html() if self.mode == "static" else None

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any] | None:
        if self.mode != "widget":
            return None  # IPython then uses _repr_html_
        return self.widget()._repr_mimebundle_(include=include, exclude=exclude)

    # -- live view -----------------------------------------------------------------------------------------
    def widget(self) -> Any:
        """Live ipywidgets view: slice slider, axis choice, window/level sliders, label toggle.

        Frames are rendered with matplotlib (Agg) into an ``ipywidgets.Image`` on every change; needs a
        kernel to respond. Returns an ``ipywidgets.VBox``.
        """
        import ipywidgets as widgets

        axes = [a for a in range(3) if len({v.shape[a] for v in self.volumes}) == 1]
        lo_all = float(min(v.min() for v in self.volumes))
        hi_all = float(max(v.max() for v in self.volumes))
        span = max(hi_all - lo_all, self.window, 1e-6)
        n = self.volumes[0].shape[self.axis]
        has_labels = any(lab is not None for lab in self.labels)
        slider = widgets.IntSlider(value=n // 2, min=0, max=n - 1, description="slice",
                                   continuous_update=True)
        axis_dd = widgets.Dropdown(options=[(f"axis {a}", a) for a in axes], value=self.axis,
                                   description="axis")
        window = widgets.FloatSlider(value=self.window, min=span / 200, max=2 * span, step=span / 200,
                                     description="window", continuous_update=False)
        level = widgets.FloatSlider(value=self.level, min=min(lo_all, self.level),
                                    max=max(hi_all, self.level), step=span / 200, description="level",
                                    continuous_update=False)
        show = widgets.Checkbox(value=has_labels, description="labels", disabled=not has_labels)
        caption = widgets.HTML()
        image = widgets.Image(format="png")

        def redraw(_: Any = None) -> None:
            ax_now = axis_dd.value
            k = min(slider.value, self.volumes[0].shape[ax_now] - 1)
            image.value = self.frame_png(k, axis=ax_now, window=window.value, level=level.value,
                                         show_labels=show.value)
            caption.value = (f"slice {k} / {self.volumes[0].shape[ax_now]} (axis {ax_now}); "
                             f"{html.escape(self._orientation(ax_now))}")

        def on_axis(_: Any) -> None:
            size = self.volumes[0].shape[axis_dd.value]
            with slider.hold_trait_notifications():
                slider.max = size - 1
                slider.value = size // 2
            redraw()

        slider.observe(redraw, names="value")
        axis_dd.observe(on_axis, names="value")
        for control in (window, level, show):
            control.observe(redraw, names="value")
        redraw()
        controls = widgets.VBox([widgets.HBox([slider, axis_dd]), widgets.HBox([window, level, show])])
        return widgets.VBox([controls, caption, image])


def _widgets_available() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def slice_browser(*volumes: Any, labels: Any = None, titles: Sequence[str] | None = None, axis: int = 2,
                  window: float | None = None, level: float | None = None, cmap: str = "gray",
                  mode: str = "auto", max_frames: int | None = None, contour: bool = True,
                  spacing: Sequence[float] | None = None) -> SliceBrowser:
    """Browse slices of one or more volumes side by side; returns a :class:`SliceBrowser`.

    ``volumes``: arrays ``[d1, d2, d3]`` (or ``[1, d1, d2, d3]``), all the same size along ``axis``.
    ``labels``: None, one label shared by all volumes, or a list with one per volume (entries may be
    None), each ``[d1, d2, d3]`` or ``[d1, d2, d3, c]``; channels are drawn in :data:`OKABE_ITO` colours as
    0.5 contours (``contour=False``: translucent fills). ``window``/``level``: one intensity window for all
    panels (default from the 1st-99th percentile of all volumes). ``max_frames``: the static browser keeps
    at most this many evenly spaced slices (default 40). ``spacing``: voxel sizes, for the aspect ratio.

    Display rule (``mode``):

    - ``"static"``: a self-contained HTML + JS slider over pre-rendered PNG frames. It needs no kernel and
      no network, so it works in the built book, in nbval and in any notebook front end.
    - ``"widget"``: the live ipywidgets view (:meth:`SliceBrowser.widget`); needs a running kernel.
    - ``"auto"`` (default): ``"widget"`` only when running in an IPython kernel AND ipywidgets imports AND
      either ``TUTORIALREG_WIDGETS=1`` is set or the kernel is Google Colab; otherwise ``"static"``. So the
      book build and nbval always get the static browser.

    Either way ``browser.widget()`` and ``browser.to_html()`` give the other view explicitly.
    """
    vols = [_as_volume(v, f"slice_browser: volume {i}") for i, v in enumerate(volumes)]
    if not vols:
        raise ValueError("slice_browser: give at least one [d1, d2, d3] volume")
    axis = _check_axis(axis)
    if len({v.shape[axis] for v in vols}) != 1:
        raise ValueError(f"slice_browser: volumes must have the same size along axis {axis}; "
                         f"got shapes {[v.shape for v in vols]}")
    titles = _titles(titles, len(vols), "slice_browser")
    labs = _labels_per_volume(labels, vols, "slice_browser")
    window, level = _intensity_range(vols, window, level)
    max_frames = _DEFAULT_MAX_FRAMES if max_frames is None else int(max_frames)
    if max_frames < 1:
        raise ValueError(f"slice_browser: max_frames must be >= 1; got {max_frames}")
    if mode not in ("auto", "static", "widget"):
        raise ValueError(f"slice_browser: mode must be 'auto', 'static' or 'widget'; got {mode!r}")
    if mode == "auto":
        flag = os.environ.get("TUTORIALREG_WIDGETS", "").strip().lower() in _TRUE
        wanted = flag or "google.colab" in sys.modules
        mode = "widget" if wanted and _in_kernel() and _widgets_available() else "static"
    elif mode == "widget" and not _widgets_available():
        raise ImportError("slice_browser(mode='widget') needs ipywidgets (pip install ipywidgets)")
    return SliceBrowser(vols, labs, titles, axis, window, level, cmap, mode, max_frames, contour, spacing)


# ----------------------------------------------------------------------------------------------------------
# live loss plot
# ----------------------------------------------------------------------------------------------------------
class LiveLossPlot:
    """Loss curves that redraw during an optimisation or training loop.

    ``update(step, name=value, ...)`` records values. Inside an IPython kernel (Jupyter, Colab, nbval,
    the book build) the plot is rendered to a PNG and shown through one display handle, updated at most
    every ``every`` calls and at least ``min_interval_s`` seconds apart; :meth:`close` shows the final
    curves. Outside a kernel nothing is drawn (updates only append to lists); use :meth:`figure` or
    :func:`plot_losses` afterwards. Also a context manager (``with LiveLossPlot() as live: ...``).
    """

    def __init__(self, every: int = 10, log: bool = True, title: str = "loss curves",
                 min_interval_s: float = 1.0, figsize: tuple[float, float] = (5.0, 3.2)) -> None:
        if every < 1:
            raise ValueError(f"LiveLossPlot: every must be >= 1; got {every}")
        self.every = int(every)
        self.log = log
        self.title = title
        self.min_interval_s = float(min_interval_s)
        self.figsize = figsize
        self.steps: dict[str, list[float]] = {}
        self.values: dict[str, list[float]] = {}
        self.live = _in_kernel()
        self._calls = 0
        self._last_draw = -np.inf
        self._handle: Any = None

    @property
    def history(self) -> dict[str, list[float]]:
        """``{name: values}`` recorded so far (steps in :attr:`steps`)."""
        return {k: list(v) for k, v in self.values.items()}

    def update(self, step: float, **losses: float) -> None:
        """Record ``losses`` (name=value, scalars or 0-d tensors) at ``step``; maybe redraw."""
        for name, value in losses.items():
            self.steps.setdefault(name, []).append(float(step))
            self.values.setdefault(name, []).append(float(np.asarray(value)))
        self._calls += 1
        due = self._calls % self.every == 0 and time.monotonic() - self._last_draw >= self.min_interval_s
        if self.live and due:
            self._show()

    def figure(self) -> Figure:
        """A new Figure (not managed by pyplot) of the curves recorded so far."""
        fig = Figure(figsize=self.figsize, layout="constrained")
        series = {k: (self.steps[k], self.values[k]) for k in self.values}
        _draw_losses(fig.add_subplot(), series, self.log, self.title)
        return fig

    def _show(self) -> None:
        from IPython.display import Image, display

        img = Image(data=_png_bytes(self.figure(), None), format="png")
        if self._handle is None:
            self._handle = display(img, display_id=True)
        else:
            self._handle.update(img)
        self._last_draw = time.monotonic()

    def close(self) -> None:
        """Show the final curves (in a kernel); outside a kernel this does nothing."""
        if self.live and self.values:
            self._show()

    def __enter__(self) -> LiveLossPlot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
