"""Array functions, axes-level plots and the figure-level slice grid.

- Array functions return numpy arrays: :func:`checkerboard`, :func:`label_comparison`, :func:`ddf_slice`.
- Axes-level functions draw on ``ax`` and return it; with ``ax=None`` they make a new pyplot figure.
- :func:`plot_slices` returns a Figure detached from pyplot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm, to_rgb, to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.transforms import offset_copy

from tutorialreg.viz._common import (
    COMPARISON_COLORS,
    OKABE_ITO,
    as_2d,
    as_ddf2d,
    as_ddf3d,
    as_pair_2d,
    as_volume,
    aspect_for,
    check_axis,
    draw_labels,
    intensity_range,
    label_axes,
    labels_per_volume,
    new_axes,
    titles_for,
    volumes_along,
)

#: Colour + line style + marker cycles for curves that must stay distinguishable without colour.
LINE_STYLES: tuple[dict[str, Any], ...] = (
    {"color": OKABE_ITO[4], "ls": "-", "marker": "o"},
    {"color": OKABE_ITO[5], "ls": "--", "marker": "s"},
    {"color": OKABE_ITO[2], "ls": "-.", "marker": "^"},
    {"color": OKABE_ITO[6], "ls": ":", "marker": "D"},
    {"color": OKABE_ITO[0], "ls": (0, (5, 1)), "marker": "v"},
    {"color": OKABE_ITO[1], "ls": (0, (1, 1)), "marker": "P"},
)

#: Style of the curves on a secondary (right-hand) axis: black (Okabe-Ito), dashed, round markers.
SECONDARY_STYLE: dict[str, Any] = {"color": "black", "ls": "--", "marker": "o", "ms": 3.5, "linewidth": 1.5}


# ----------------------------------------------------------------------------------------------------------
# array functions
# ----------------------------------------------------------------------------------------------------------
def checkerboard(a2d: Any, b2d: Any, tiles: int = 8) -> np.ndarray:
    """Checkerboard of two slices, the top-left tile from ``a2d``.

    Tile ``(i, j)`` covers rows ``r`` with ``r * tiles // H == i`` and columns ``c * tiles // W == j``.

    :param a2d: ``[H, W]`` slice.
    :param b2d: ``[H, W]`` slice of the same shape.
    :param tiles: tiles per side (>= 1).
    :return: ``[H, W]`` array, tiles alternating between ``a2d`` and ``b2d``.
    """
    a, b = as_pair_2d(a2d, b2d, "checkerboard")
    if int(tiles) < 1:
        raise ValueError(f"checkerboard: tiles must be >= 1; got {tiles}")
    h, w = a.shape
    ti = np.arange(h)[:, None] * int(tiles) // h
    tj = np.arange(w)[None, :] * int(tiles) // w
    return np.where((ti + tj) % 2 == 0, a, b)


def label_comparison(pred2d: Any, true2d: Any, threshold: float = 0.5) -> np.ndarray:
    """RGB image comparing a predicted with a true label slice.

    A pixel is foreground when its value is > ``threshold``. Colours (:data:`COMPARISON_COLORS`): true
    positive light grey, false positive Okabe-Ito orange, false negative Okabe-Ito blue, true negative black.

    :param pred2d: predicted label ``[H, W]``.
    :param true2d: true label ``[H, W]``.
    :return: float32 ``[H, W, 3]`` in [0, 1].
    """
    p, t = as_2d(pred2d, "pred2d") > threshold, as_2d(true2d, "true2d") > threshold
    if p.shape != t.shape:
        raise ValueError(f"label_comparison: pred2d and true2d must have the same shape [H, W]; "
                         f"got {p.shape} and {t.shape}")
    out = np.zeros(p.shape + (3,), dtype=np.float32)
    for key, mask in (("true positive", p & t), ("false positive", p & ~t), ("false negative", ~p & t)):
        out[mask] = to_rgb(COMPARISON_COLORS[key])
    return out


def ddf_slice(ddf: Any, k: int, axis: int = 2) -> np.ndarray:
    """In-plane components of slice ``k`` along ``axis`` of a DDF.

    For ``axis=2``: ``ddf[:, :, k, :2]`` (component along axis 0 = rows, then along axis 1 = columns); for
    ``axis=0``: ``ddf[k, :, :, 1:]``; for ``axis=1``: ``ddf[:, k, :, ::2]``.

    :param ddf: ``[d1, d2, d3, 3]`` or ``[1, d1, d2, d3, 3]`` displacements in voxels.
    :param k: slice index along ``axis``.
    :return: ``[H, W, 2]`` in-plane displacements (voxels), rows component first.
    """
    arr = as_ddf3d(ddf, "ddf_slice")
    axis = check_axis(axis)
    if not 0 <= k < arr.shape[axis]:
        raise ValueError(f"ddf_slice: slice {k} is outside axis {axis} of size {arr.shape[axis]}")
    in_plane = [a for a in range(3) if a != axis]
    return np.take(arr, k, axis=axis)[..., in_plane]


# ----------------------------------------------------------------------------------------------------------
# images
# ----------------------------------------------------------------------------------------------------------
def overlay_label(ax: Axes | None, image2d: Any, label2d: Any, colors: Sequence[str] = OKABE_ITO,
                  alpha: float = 0.4, contour: bool = True, names: Sequence[str] | None = None,
                  cmap: str = "gray", vmin: float | None = None, vmax: float | None = None,
                  title: str = "image with label overlay") -> Axes:
    """Grey-scale image with labels drawn on top.

    :param ax: Axes to draw on (None: a new pyplot figure).
    :param image2d: ``[H, W]`` image.
    :param label2d: ``[H, W]``, ``[H, W, c]`` or a list of ``[H, W]``; channel ``i`` gets ``colors[i]``.
    :param alpha: opacity of the fills (``contour=False``).
    :param contour: True: the 0.5 iso-line of each channel, thick over a dark halo; False: fills.
    :param names: one name per channel; adds a legend.
    :return: the Axes.
    """
    img = as_2d(image2d, "image2d")
    lab = np.asarray(label2d if not isinstance(label2d, (list, tuple)) else np.stack(label2d, -1), np.float32)
    if lab.ndim == 2:
        lab = lab[..., None]
    if lab.ndim != 3 or lab.shape[:2] != img.shape:
        raise ValueError(f"overlay_label: label2d must be [H, W] or [H, W, c] with [H, W] = {img.shape}; "
                         f"got shape {tuple(np.shape(label2d))}")
    ax = new_axes(ax)
    ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    draw_labels(ax, lab, colors, alpha, contour)
    if names is not None:
        ax.legend(handles=[Patch(color=colors[i % len(colors)], label=str(n)) for i, n in enumerate(names)],
                  loc="upper right", fontsize="small", framealpha=0.8)
    ax.set_title(title)
    label_axes(ax)
    return ax


def plot_label_comparison(ax: Axes | None, pred: Any, true: Any, threshold: float = 0.5,
                          title: str | None = None) -> Axes:
    """Draw :func:`label_comparison` of two label slices with a legend; the default title reports the Dice.

    :param pred: predicted label ``[H, W]``.
    :param true: true label ``[H, W]``.
    :param threshold: foreground is > ``threshold``.
    :return: the Axes.
    """
    rgb = label_comparison(pred, true, threshold)
    p, t = np.asarray(pred) > threshold, np.asarray(true) > threshold
    denom = p.sum() + t.sum()
    dice = 2.0 * (p & t).sum() / denom if denom else 1.0
    ax = new_axes(ax)
    ax.imshow(rgb, interpolation="nearest")
    handles = [Patch(facecolor=COMPARISON_COLORS[k], edgecolor="0.5", label=k)
               for k in ("true positive", "false positive", "false negative")]
    ax.legend(handles=handles, loc="upper right", fontsize="small", framealpha=0.8)
    ax.set_title(title if title is not None else f"predicted vs true label (Dice {dice:.3f})")
    label_axes(ax)
    return ax


def difference(a2d: Any, b2d: Any, ax: Axes | None = None, vmax: float | None = None,
               title: str = "difference a - b", axis: int | None = None) -> Axes:
    """Draw ``a2d - b2d`` with ``RdBu_r`` centred at 0 and a colour bar.

    :param a2d: ``[H, W]`` slice.
    :param b2d: ``[H, W]`` slice of the same shape.
    :param vmax: symmetric colour range ``[-vmax, vmax]`` (intensity units; default the largest ``|a - b|``).
    :param axis: the volume axis the slice was taken along, for the axis labels (default 2: rows are axis 0).
    :return: the Axes.
    """
    a, b = as_pair_2d(a2d, b2d, "difference")
    d = a.astype(np.float32) - b.astype(np.float32)
    vmax = float(np.abs(d).max()) if vmax is None else float(vmax)
    vmax = vmax if vmax > 0 else 1e-6
    ax = new_axes(ax)
    im = ax.imshow(d, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
    ax.figure.colorbar(im, ax=ax, shrink=0.8, label="intensity difference")
    ax.set_title(title)
    label_axes(ax, axis)
    return ax


def plot_checkerboard(ax: Axes | None, a2d: Any, b2d: Any, tiles: int = 8,
                      title: str = "checkerboard of a and b", cmap: str = "gray",
                      axis: int | None = None) -> Axes:
    """Draw :func:`checkerboard` of two slices on one grey scale: misalignment shows as broken edges.

    :param ax: Axes to draw on (None: a new pyplot figure).
    :param a2d: ``[H, W]`` slice (the top-left tile), e.g. the fixed image.
    :param b2d: ``[H, W]`` slice of the same shape, e.g. the (warped) moving image.
    :param tiles: tiles per side.
    :param axis: the volume axis the slices were taken along, for the axis labels (default 2).
    :return: the Axes.
    """
    a, b = as_pair_2d(a2d, b2d, "plot_checkerboard")
    board = checkerboard(a, b, tiles)
    both = np.concatenate([a.ravel(), b.ravel()]).astype(np.float64)
    both = both[np.isfinite(both)]
    lo, hi = (np.percentile(both, [1.0, 99.0]) if both.size else (0.0, 1.0))
    ax = new_axes(ax)
    ax.imshow(board, cmap=cmap, vmin=lo, vmax=hi if hi > lo else lo + 1.0, interpolation="nearest")
    ax.set_title(title)
    label_axes(ax, axis)
    return ax


# ----------------------------------------------------------------------------------------------------------
# deformations
# ----------------------------------------------------------------------------------------------------------
def _background(ax: Axes, image: Any, shape: tuple[int, int]) -> None:
    if image is None:
        ax.set_xlim(-0.5, shape[1] - 0.5)
        ax.set_ylim(shape[0] - 0.5, -0.5)  # rows increase downwards, as imshow shows them
        ax.set_aspect("equal")
        return
    img = as_2d(image, "image")
    if img.shape != shape:
        raise ValueError(f"image must be [H, W] = {shape} (the DDF slice's grid); got shape {img.shape}")
    ax.imshow(img, cmap="gray", interpolation="nearest")


def warped_grid(ax: Axes | None, ddf2d: Any, step: int = 4, image: Any = None, color: str = OKABE_ITO[0],
                linewidth: float = 0.8, title: str = "deformed grid", clip: bool = True) -> Axes:
    """Draw every ``step``-th grid line of the slice moved by its in-plane displacement.

    The DDF is on the fixed grid: the point at (row r, column c) is drawn at
    ``(r + ddf2d[r, c, 0], c + ddf2d[r, c, 1])``, i.e. where the fixed grid samples the moving image.

    :param ddf2d: ``[H, W, 2]`` in-plane displacements in voxels (from :func:`ddf_slice`).
    :param step: grid spacing in voxels.
    :param image: optional ``[H, W]`` image shown underneath.
    :param clip: True keeps the view to the slice extent, ``x in [-0.5, W - 0.5]``, ``y in [-0.5, H - 0.5]``
        (lines leaving the slice are cut at its edge); False widens it to show every line. Rows increase
        downwards either way.
    :return: the Axes.
    """
    u = as_ddf2d(ddf2d)
    h, w = u.shape[:2]
    step = max(1, int(step))
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    y, x = rows + u[..., 0], cols + u[..., 1]
    ax = new_axes(ax)
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
    label_axes(ax)
    return ax


def ddf_quiver(ax: Axes | None, ddf2d: Any, step: int = 4, image: Any = None, color: str = OKABE_ITO[0],
               title: str = "in-plane displacement") -> Axes:
    """Arrows of the in-plane displacement every ``step`` voxels, to scale, from the fixed grid points.

    :param ddf2d: ``[H, W, 2]`` in-plane displacements in voxels (an arrow's length is the displacement).
    :param image: optional ``[H, W]`` image shown underneath.
    :return: the Axes.
    """
    u = as_ddf2d(ddf2d)
    h, w = u.shape[:2]
    step = max(1, int(step))
    rows, cols = np.mgrid[0:h:step, 0:w:step]
    sub = u[::step, ::step]
    ax = new_axes(ax)
    _background(ax, image, (h, w))
    ax.quiver(cols, rows, sub[..., 1], sub[..., 0], color=color, angles="xy", scale_units="xy", scale=1.0,
              width=0.004)
    ax.set_title(title)
    label_axes(ax)
    return ax


def jacobian_map(ax: Axes | None, jac2d: Any, vrange: float | None = None, fold_color: str = OKABE_ITO[3],
                 title: str = "Jacobian determinant") -> Axes:
    """Draw a Jacobian determinant slice (``RdBu_r`` centred at 1: blue shrinks, red grows).

    Voxels with determinant <= 0 (folding) are painted ``fold_color`` and counted in the title.

    :param jac2d: ``[H, W]`` determinants.
    :param vrange: colours span ``[1 - vrange, 1 + vrange]`` (default: the largest ``|J - 1|``).
    :return: the Axes.
    """
    jac = as_2d(jac2d, "jac2d").astype(np.float32)
    r = float(np.abs(jac - 1.0).max()) if vrange is None else float(vrange)
    r = r if r > 0 else 1e-3
    ax = new_axes(ax)
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
    label_axes(ax)
    return ax


# ----------------------------------------------------------------------------------------------------------
# curves
# ----------------------------------------------------------------------------------------------------------
Series = Mapping[str, tuple[Sequence[float], Sequence[float]]]


def draw_losses(ax: Axes, series: Series, log: bool, title: str, xlabel: str = "step",
                marker: str | None = None, legend: bool = True) -> Axes:
    """Loss curves ``{name: (xs, ys)}`` on ``ax``; log y when ``log`` and every finite value is > 0."""
    positive = True
    for i, (name, (xs, ys)) in enumerate(series.items()):
        ys = np.asarray(ys, dtype=np.float64)
        positive = positive and bool(np.all(ys[np.isfinite(ys)] > 0))
        ax.plot(np.asarray(xs), ys, label=name, color=OKABE_ITO[(i + 4) % len(OKABE_ITO)], linewidth=1.5,
                marker=marker, ms=3.5)
    use_log = log and positive and len(series) > 0
    ax.set_yscale("log" if use_log else "linear")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss (log scale)" if use_log else "loss")
    ax.set_title(title)
    if series and legend:
        ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    return ax


def draw_secondary(ax: Axes, series: Series, label: str) -> Axes:
    """Curves ``{name: (xs, ys)}`` on a new right-hand, linear y axis sharing ``ax``'s x axis.

    One legend, below the plot (outside the data), lists the curves of both axes. Returns the right Axes.
    """
    right = ax.twinx()
    right.set_yscale("linear")
    for name, (xs, ys) in series.items():
        right.plot(np.asarray(xs), np.asarray(ys, dtype=np.float64), label=name, **SECONDARY_STYLE)
    right.set_ylabel(label)
    legend = ax.get_legend()
    if legend is not None:
        legend.remove()
    handles, names = ax.get_legend_handles_labels()
    more, more_names = right.get_legend_handles_labels()
    below_xlabel = offset_copy(ax.transAxes, ax.figure, y=-30, units="points")  # under ticks and x label
    right.legend(handles + more, names + more_names, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                 bbox_transform=below_xlabel, ncols=min(4, len(names) + len(more_names)), fontsize="small",
                 frameon=False)
    return right


def plot_losses(history: Mapping[str, Sequence[float]], ax: Axes | None = None, log: bool = True,
                steps: Sequence[float] | None = None, title: str = "loss curves",
                xlabel: str = "step") -> Axes:
    """Loss curves, one per entry of ``history``.

    :param history: ``{name: values}``.
    :param log: log y axis when every value is > 0 (otherwise linear, and the y label says so).
    :param steps: x values (default 0, 1, 2, ...).
    :param xlabel: the x axis label, e.g. ``"epoch"``.
    :return: the Axes.
    """
    series = {}
    for name, values in history.items():
        xs = np.arange(len(values)) if steps is None else np.asarray(steps)[: len(values)]
        series[str(name)] = (xs, values)
    return draw_losses(new_axes(ax, (5.0, 3.2), layout="constrained"), series, log, title, xlabel)


def plot_curves(ax: Axes | None, x: Sequence[float], curves: Mapping[str, Sequence[float]],
                normalise: bool = False, xlabel: str = "", ylabel: str = "loss", title: str = "") -> Axes:
    """Several curves over a shared ``x`` with distinct colours, line styles and markers.

    :param x: ``[n]`` x values.
    :param curves: ``{name: [n] y values}``, at most ``len(LINE_STYLES)`` of them.
    :param normalise: rescale each curve to ``[0, 1]`` (min to max) so curves of different units share
        one axis.
    :return: the Axes.
    """
    ax = new_axes(ax, (5.0, 3.2), layout="constrained")
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
# figure-level
# ----------------------------------------------------------------------------------------------------------
def _slice_indices(slices: int | Sequence[int] | None, n: int, axis: int) -> list[int]:
    """Slice indices in ``[0, n - 1]``: the given ones, or a count of evenly spaced ones (default 3)."""
    if slices is None or isinstance(slices, (int, np.integer)):
        count = 3 if slices is None else int(slices)
        ks = sorted({int(round(n * (i + 1) / (count + 1))) for i in range(count)}) if count > 0 else []
        ks = [min(k, n - 1) for k in ks]
    else:
        ks = [int(k) for k in slices]
    if not ks or any(not 0 <= k < n for k in ks):
        raise ValueError(f"plot_slices: slices must be indices in [0, {n - 1}] along axis {axis}; "
                         f"got {slices!r}")
    return ks


def plot_slices(volumes: Sequence[Any], titles: Sequence[str] | None = None,
                slices: int | Sequence[int] | None = None, axis: int = 2, labels: Any = None,
                ncols: int | None = None, cmap: str = "gray",
                suptitle: str | None = None, window: float | None = None, level: float | None = None,
                spacing: Sequence[float] | None = None, contour: bool = True) -> Figure:
    """Grid of slices: one row per slice, one column per volume.

    The Figure is closed in pyplot (no global state): it shows once when it is a notebook cell's value.

    :param volumes: a list of ``[d1, d2, d3]`` volumes (one array is taken as a list of one), all the same
        size along ``axis``.
    :param slices: indices along ``axis``, or a count of evenly spaced slices (default 3, at 1/4, 1/2, 3/4).
    :param labels: None, one label shared by all volumes, or one per volume (entries may be None), each
        ``[d1, d2, d3]`` or ``[d1, d2, d3, c]``.
    :param ncols: wrap the panels (ordered slice by slice) into this many columns (default: one per volume).
    :param window: intensity window for all panels (default from the 1st-99th percentile of all volumes).
    :param level: centre of the window.
    :param spacing: voxel sizes ``(s1, s2, s3)``, for the pixel aspect ratio.
    :return: the Figure.
    """
    if not isinstance(volumes, (list, tuple)):
        volumes = [volumes]
    vols, axis = volumes_along(volumes, axis, "plot_slices")
    ks = _slice_indices(slices, vols[0].shape[axis], axis)
    titles = titles_for(titles, len(vols), "plot_slices")
    labs = labels_per_volume(labels, vols, "plot_slices")
    window, level = intensity_range(vols, window, level)
    aspect = aspect_for(spacing, axis)
    panels = [(k, i) for k in ks for i in range(len(vols))]
    ncols = len(vols) if ncols is None else max(1, int(ncols))
    nrows = -(-len(panels) // ncols)
    import matplotlib.pyplot as plt  # in a kernel, importing pyplot registers the Figure display hook

    fig = plt.figure(figsize=(2.6 * ncols, 2.7 * nrows + 0.5), layout="constrained")
    plt.close(fig)  # detached from pyplot: no global state, shown once when it is a cell's value
    rows_ax, cols_ax = [a for a in range(3) if a != axis]
    for idx, ax in enumerate(fig.subplots(nrows, ncols, squeeze=False).ravel()):
        if idx >= len(panels):
            ax.set_axis_off()
            continue
        k, i = panels[idx]
        ax.imshow(np.take(vols[i], k, axis=axis), cmap=cmap, vmin=level - window / 2, vmax=level + window / 2,
                  interpolation="nearest", aspect=aspect)
        if labs[i] is not None:
            draw_labels(ax, np.take(labs[i], k, axis=axis), OKABE_ITO, 0.4, contour, aspect)
        ax.set(title=f"{titles[i]}, slice {k}", xticks=[], yticks=[])
        ax.title.set_fontsize(9)
        if idx % ncols == 0:
            ax.set_ylabel(f"axis {rows_ax} (voxels)", fontsize=8)
        if idx // ncols == nrows - 1 or idx + ncols >= len(panels):
            ax.set_xlabel(f"axis {cols_ax} (voxels)", fontsize=8)
    fig.suptitle(suptitle if suptitle is not None else f"slices along axis {axis}")
    return fig


def plot_in_world(ax: Axes, image: Any, label: Any, affine: Any, k: int, colour: str,
                  name: str, shift_mm: Sequence[float] = (0.0, 0.0, 0.0), marker_size: float = 10.0) -> Axes:
    """Slice ``k`` (along axis 2) of a volume and its label outline, drawn where they lie in world
    coordinates (mm, axis 0 down, axis 1 across), moved by ``-shift_mm``; a rectangle marks the volume's
    extent, ``+`` its centre and ``o`` its voxel (0, 0, 0). Returns the Axes.

    :param image: ``[d1, d2, d3]``; ``label``: the same shape (outlined at 0.5), or None.
    :param affine: ``[4, 4]`` voxel-to-world matrix (NIfTI), without rotation in the slice plane.
    """
    from tutorialreg import geometry

    vol = as_volume(image, "plot_in_world: image")
    spacing, _, _ = geometry.split_affine(affine)
    shift = np.asarray(shift_mm, np.float64)
    rows = geometry.world_from_index(affine, [[i, 0, k] for i in range(vol.shape[0])])[:, 0] - shift[0]
    cols = geometry.world_from_index(affine, [[0, j, k] for j in range(vol.shape[1])])[:, 1] - shift[1]
    half = spacing[:2] / 2
    box = (cols[0] - half[1], cols[-1] + half[1], rows[-1] + half[0], rows[0] - half[0])  # l, r, b, t
    ax.imshow(vol[:, :, k], cmap="gray", extent=box)
    ax.add_patch(Rectangle((box[0], box[3]), box[1] - box[0], box[2] - box[3], fill=False, lw=2.5, ec=colour,
                           label=f"{name}: extent, outline, centre +, voxel (0,0,0) o"))
    if label is not None:
        ax.contour(cols, rows, as_volume(label, "plot_in_world: label")[:, :, k], levels=[0.5],
                   colors=[colour], linewidths=2.5)
    centre = geometry.volume_centre(affine, vol.shape) - shift
    ax.plot(centre[1], centre[0], "+", color=colour, ms=18, mew=3)
    ax.plot(cols[0], rows[0], "o", color=colour, ms=marker_size, mfc="none", mew=2.5)
    ax.set(xlabel="world (mm) along voxel axis 1", ylabel="world (mm) along voxel axis 0")
    return ax
