"""Shared pieces of :mod:`tutorialreg.viz`: palette, input checks, small drawing helpers, the display rule.

Nothing here keeps state. :func:`in_kernel` and :func:`widgets_available` are looked up through this module
(``_common.in_kernel()``) by every view, so a test can replace them in one place.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from tutorialreg import runtime

#: Okabe-Ito colour-blind-safe palette in the order used for label channels: orange, sky blue, bluish
#: green, yellow, blue, vermillion, reddish purple (the palette's black is left out: it vanishes on CT/MR).
OKABE_ITO: tuple[str, ...] = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")

#: Colours of :func:`tutorialreg.viz.label_comparison` (no red/green pair).
COMPARISON_COLORS: dict[str, str] = {
    "true negative": "#000000",
    "true positive": "#DDDDDD",
    "false positive": "#E69F00",
    "false negative": "#0072B2",
}

#: Neutral grey that goes with :data:`OKABE_ITO` (machinery boxes, reference grids).
GREY = "#999999"

#: Width of a label outline (points): 2.8 px at 100 dpi, 2 px at 72 dpi.
CONTOUR_WIDTH = 2.0
#: Width of the dark halo drawn under each outline (points), so it stands out on any grey level.
HALO_WIDTH = 3.4
MODES = ("auto", "static", "widget")


# ----------------------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------------------
def as_volume(x: Any, name: str) -> np.ndarray:
    """A volume as float32 ``[d1, d2, d3]``.

    :param x: ``[d1, d2, d3]``, ``[1, d1, d2, d3]``, ``[d1, d2, d3, 1]`` or ``[1, d1, d2, d3, 1]``.
    :param name: how the error message names ``x``.
    :return: float32 array ``[d1, d2, d3]``.
    :raises ValueError: for any other shape.
    """
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


def as_label(x: Any, vol_shape: tuple[int, ...], name: str) -> np.ndarray:
    """A label as float32 ``[d1, d2, d3, c]`` matching its volume.

    :param x: ``[d1, d2, d3]`` or ``[d1, d2, d3, c]`` (a leading batch of 1 is allowed).
    :param vol_shape: ``(d1, d2, d3)`` of the volume the label belongs to.
    :param name: how the error message names ``x``.
    :return: float32 array ``[d1, d2, d3, c]``.
    """
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


def volumes_along(volumes: Sequence[Any], axis: int, who: str) -> tuple[list[np.ndarray], int]:
    """Volumes that can be shown slice by slice side by side.

    :param volumes: at least one volume (shapes as :func:`as_volume`), all the same size along ``axis``.
    :param axis: 0, 1 or 2.
    :param who: the calling function, for error messages.
    :return: the float32 ``[d1, d2, d3]`` volumes and the checked axis.
    """
    vols = [as_volume(v, f"{who}: volume {i}") for i, v in enumerate(volumes)]
    if not vols:
        raise ValueError(f"{who}: give at least one [d1, d2, d3] volume")
    axis = check_axis(axis)
    if len({v.shape[axis] for v in vols}) != 1:
        raise ValueError(f"{who}: volumes must have the same size along axis {axis}; "
                         f"got shapes {[v.shape for v in vols]}")
    return vols, axis


def check_axis(axis: int) -> int:
    """``axis`` if it is 0, 1 or 2 (volumes are ``[d1, d2, d3]``); ValueError otherwise."""
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2 (volumes are [d1, d2, d3]); got {axis!r}")
    return int(axis)


def check_mode(mode: str, who: str) -> str:
    """``mode`` if it is one of :data:`MODES`; ValueError naming ``who`` otherwise."""
    if mode not in MODES:
        raise ValueError(f"{who}: mode must be 'auto', 'static' or 'widget'; got {mode!r}")
    return mode


def titles_for(titles: Sequence[str] | None, n: int, who: str) -> list[str]:
    """One title per volume (default ``volume i``); ValueError naming ``who`` if the count differs."""
    out = [f"volume {i}" for i in range(n)] if titles is None else [str(t) for t in titles]
    if len(out) != n:
        raise ValueError(f"{who}: titles must have one entry per volume ({n}); got {len(out)}")
    return out


def labels_per_volume(labels: Any, volumes: list[np.ndarray], who: str) -> list[np.ndarray | None]:
    """One label ``[d1, d2, d3, c]`` (or None) per volume.

    :param labels: None, one array shared by all volumes, or a list with one entry (array or None) per volume.
    :param volumes: the ``[d1, d2, d3]`` volumes.
    :param who: the calling function, for error messages.
    """
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
    return [None if lab is None else as_label(lab, v.shape, f"{who}: label {i}")
            for i, (lab, v) in enumerate(zip(labels, volumes, strict=True))]


def as_2d(x: Any, name: str) -> np.ndarray:
    """``x`` as a 2-D slice ``[H, W]``; ValueError naming ``name`` for any other rank."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D slice [H, W]; got shape {tuple(arr.shape)}")
    return arr


def as_pair_2d(a2d: Any, b2d: Any, who: str) -> tuple[np.ndarray, np.ndarray]:
    """Two ``[H, W]`` slices of the same shape; ValueError naming ``who`` and both shapes otherwise."""
    a, b = as_2d(a2d, "a2d"), as_2d(b2d, "b2d")
    if a.shape != b.shape:
        raise ValueError(f"{who}: a2d and b2d must have the same shape [H, W]; got {a.shape} and {b.shape}")
    return a, b


def as_ddf3d(x: Any, fn: str) -> np.ndarray:
    """DDF ``[d1, d2, d3, 3]`` float32 (voxels) from that or ``[1, d1, d2, d3, 3]``; ``fn``: the caller."""
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim == 5 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"{fn}: ddf must be [d1, d2, d3, 3] (or [1, d1, d2, d3, 3]) displacements in "
                         f"voxels; got shape {tuple(np.shape(x))}")
    return arr


def as_ddf2d(x: Any, name: str = "ddf2d") -> np.ndarray:
    """In-plane displacements ``[H, W, 2]`` float32 (voxels); ValueError naming ``name`` otherwise."""
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[-1] != 2:
        raise ValueError(f"{name} must be [H, W, 2] in-plane displacements (voxels, see ddf_slice); "
                         f"got shape {tuple(np.shape(x))}")
    return arr


def as_series(values: Any, name: str) -> np.ndarray:
    """A 1-D float64 series; ValueError naming ``name`` for anything else (a string, a 2-D array, ...)."""
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{name} must be a sequence of numbers, got {values!r}")
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of numbers, got {values!r}") from None
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of numbers, got shape {arr.shape}")
    return arr


# ----------------------------------------------------------------------------------------------------------
# intensity and geometry
# ----------------------------------------------------------------------------------------------------------
def aspect_for(spacing: Sequence[float] | None, axis: int) -> float:
    """Pixel height/width of a slice along ``axis`` for voxel ``spacing`` (1 for isotropic voxels)."""
    if spacing is None:
        return 1.0
    if len(spacing) != 3:
        raise ValueError(f"spacing must be 3 voxel sizes (s1, s2, s3); got {spacing!r}")
    rows, cols = [a for a in range(3) if a != axis]
    return float(spacing[rows]) / float(spacing[cols])


def intensity_range(volumes: Sequence[np.ndarray], window: float | None, level: float | None
                    ) -> tuple[float, float]:
    """(window, level) in intensity units; missing values come from the 1st-99th percentile of all volumes."""
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


# ----------------------------------------------------------------------------------------------------------
# drawing helpers
# ----------------------------------------------------------------------------------------------------------
def new_axes(ax: Axes | None, figsize: tuple[float, float] = (4.0, 4.0), layout: str | None = None) -> Axes:
    """``ax``, or the Axes of a new pyplot figure of ``figsize`` inches (``layout`` e.g. "constrained")."""
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize, layout=layout)
    return ax


def label_axes(ax: Axes, axis: int | None = None) -> None:
    """Voxel axis names on a slice (rows = first remaining axis, columns = second)."""
    rows, cols = (0, 1) if axis is None else [a for a in range(3) if a != axis]
    ax.set_ylabel(f"axis {rows} (voxels)")
    ax.set_xlabel(f"axis {cols} (voxels)")


def outline_effects() -> list[patheffects.AbstractPathEffect]:
    """Path effects of a label outline: a dark halo of :data:`HALO_WIDTH` points under the line itself."""
    return [patheffects.withStroke(linewidth=HALO_WIDTH, foreground=to_rgba("black", 0.75))]


def draw_labels(ax: Axes, lab: np.ndarray, colors: Sequence[str], alpha: float, contour: bool,
                aspect: float | str = 1.0) -> None:
    """Overlay label channels on an image already drawn on ``ax``.

    :param lab: ``[H, W, c]`` label slice; channel ``i`` gets ``colors[i % len(colors)]``.
    :param alpha: opacity of the fills (``contour=False``).
    :param contour: True: the 0.5 iso-line of each channel, :data:`CONTOUR_WIDTH` points wide over a dark
        halo; False: translucent fills of the voxels > 0.5.
    :param aspect: pixel aspect of the fills (as ``imshow``'s ``aspect``).
    """
    for c in range(lab.shape[-1]):
        m = lab[..., c]
        colour = colors[c % len(colors)]
        if contour:
            if m.max() > 0.5 > m.min():
                ax.contour(m, levels=[0.5], colors=[colour], linewidths=CONTOUR_WIDTH).set_path_effects(
                    outline_effects())
        elif (m > 0.5).any():
            rgba = np.zeros(m.shape + (4,), dtype=np.float32)
            rgba[m > 0.5] = to_rgba(colour, alpha)
            ax.imshow(rgba, interpolation="nearest", aspect=aspect)


def png_bytes(fig: Figure, colours: int | None) -> bytes:
    """Render a Figure with Agg to PNG bytes; ``colours`` > 0 makes a palette PNG of that many colours.

    The palette comes from a fast octree, which keeps the few saturated label colours exact (a median cut
    spends every entry on the grey levels and washes the outlines out).
    """
    from PIL import Image

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    img = Image.fromarray(np.ascontiguousarray(rgb))
    buf = io.BytesIO()
    if colours:
        img.quantize(colours, method=Image.Quantize.FASTOCTREE).save(buf, format="PNG", optimize=True)
    else:
        img.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------------------
# where the code runs, and the display rule of the interactive views
# ----------------------------------------------------------------------------------------------------------
def in_kernel() -> bool:
    """True inside a running IPython kernel (Jupyter, JupyterLab, VS Code, Colab, nbval, the book build)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def widgets_available() -> bool:
    """True when ipywidgets can be imported."""
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_mode(mode: str, who: str) -> str:
    """The view an interactive object shows: ``"static"`` or ``"widget"``.

    :param mode: ``"static"`` or ``"widget"`` (returned as given; ``"widget"`` needs ipywidgets), or
        ``"auto"``: :func:`tutorialreg.runtime.widget_mode` decides. Its ``"static"`` (the book build and
        CI set ``TUTORIALREG_WIDGETS=static``) gives ``"static"``; otherwise ``"widget"`` inside an IPython
        kernel with ipywidgets importable, ``"static"`` outside a kernel (nothing could show a widget) or
        without ipywidgets. Its ``"widget"`` (forced live) raises ImportError in a kernel without
        ipywidgets instead of falling back.
    :param who: the calling function, for error messages.
    """
    check_mode(mode, who)
    if mode == "auto":
        forced = runtime.widget_mode()
        if forced == "static" or not in_kernel():
            return "static"
        if widgets_available():
            return "widget"
        if forced == "auto":
            return "static"
        raise ImportError(f"{who}: {runtime.WIDGETS}=widget asks for the live view, which needs ipywidgets "
                          f"(pip install ipywidgets)")
    if mode == "widget" and not widgets_available():
        raise ImportError(f"{who}(mode='widget') needs ipywidgets (pip install ipywidgets)")
    return mode
