"""Figures for registration results, and interactive views that work with or without a kernel.

Display convention (used by every function here)
-------------------------------------------------
A 2-D slice of a volume ``vol [d1, d2, d3]`` along ``axis`` is ``np.take(vol, k, axis)``. It is shown
with ``imshow`` in matrix order, ``origin="upper"``: the FIRST remaining axis runs VERTICALLY (top to
bottom, index increasing downwards) and the SECOND remaining axis runs HORIZONTALLY (left to right).
For the default ``axis=2`` the slice is ``vol[:, :, k]``: rows = axis 0, columns = axis 1. No transpose
and no flip is ever applied. Coordinates are voxel indices (ij indexing, voxel units), and in-plane
displacements from :func:`ddf_slice` follow the same order: component 0 along the rows (down), component 1
along the columns (right).

Colours are colour-blind safe: label overlays use the Okabe-Ito palette (:data:`OKABE_ITO`), drawn as
outlines 2 points wide over a dark halo; signed maps use the diverging ``RdBu_r`` map centred on the
neutral value (0 for differences, 1 for Jacobians).

Modules and kinds of functions
------------------------------
- :mod:`~tutorialreg.viz.plots`: array functions returning numpy arrays (:func:`checkerboard`,
  :func:`label_comparison`, :func:`ddf_slice`); axes-level functions that draw on ``ax`` and return it
  (``ax=None`` makes a new pyplot figure): :func:`overlay_label`, :func:`plot_label_comparison`,
  :func:`difference`, :func:`plot_checkerboard`, :func:`warped_grid`, :func:`ddf_quiver`,
  :func:`jacobian_map`, :func:`plot_losses`, :func:`plot_curves`; and the figure-level :func:`plot_slices`,
  which returns a :class:`matplotlib.figure.Figure` closed in pyplot (no global state): it shows once when
  it is the value of a notebook cell; in a script call ``fig.savefig``.
- :mod:`~tutorialreg.viz.diagrams`: :func:`plot_grid_3d` (on a 3-D Axes), :func:`plot_training_schematic`.
- :mod:`~tutorialreg.viz.training`: :func:`plot_training_history`, :func:`plot_before_after` (axes-level)
  and :func:`prediction_figure` (a detached Figure).
- :mod:`~tutorialreg.viz.browser`: :func:`slice_browser` and :func:`frame_slider`, a static HTML slider or
  a live ipywidgets view (the rule is in :func:`slice_browser`).
- :mod:`~tutorialreg.viz.live`: :class:`LiveLossPlot`, a callback (:mod:`tutorialreg.callbacks`) that
  draws loss curves while an engine runs.

The package needs numpy and matplotlib (Pillow comes with matplotlib); ipywidgets only for the live views;
never TensorFlow. Tensors are accepted anywhere an array is (they are converted with ``np.asarray``).
"""

from tutorialreg.viz._common import COMPARISON_COLORS, GREY, OKABE_ITO
from tutorialreg.viz.browser import FrameSlider, SliceBrowser, frame_slider, slice_browser
from tutorialreg.viz.diagrams import TRAINING_KINDS, plot_grid_3d, plot_training_schematic
from tutorialreg.viz.glue import glue
from tutorialreg.viz.live import LiveLossPlot
from tutorialreg.viz.plots import (
    LINE_STYLES,
    checkerboard,
    ddf_quiver,
    ddf_slice,
    difference,
    jacobian_map,
    label_comparison,
    overlay_label,
    plot_checkerboard,
    plot_curves,
    plot_in_world,
    plot_label_comparison,
    plot_losses,
    plot_slices,
    warped_grid,
)
from tutorialreg.viz.training import plot_before_after, plot_training_history, prediction_figure

__all__ = [
    "glue",
    "OKABE_ITO",
    "GREY",
    "COMPARISON_COLORS",
    "slice_browser",
    "SliceBrowser",
    "frame_slider",
    "FrameSlider",
    "plot_slices",
    "overlay_label",
    "label_comparison",
    "plot_label_comparison",
    "checkerboard",
    "plot_checkerboard",
    "difference",
    "ddf_slice",
    "warped_grid",
    "ddf_quiver",
    "jacobian_map",
    "plot_in_world",
    "plot_losses",
    "plot_curves",
    "LINE_STYLES",
    "plot_grid_3d",
    "TRAINING_KINDS",
    "plot_training_schematic",
    "LiveLossPlot",
    "plot_training_history",
    "plot_before_after",
    "prediction_figure",
]
