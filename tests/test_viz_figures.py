"""Tests for the figure fixes and new plots of tutorialreg.viz: label outlines, checkerboard, loss x label,
training schematics with both inputs of each loss, and the package's imports (headless, Agg)."""

from __future__ import annotations

import io
import subprocess
import sys
from itertools import combinations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
from matplotlib.patheffects import withStroke
from PIL import Image
from test_viz_support import PNG_SIGNATURE, close_figures  # noqa: F401

from tutorialreg import viz
from tutorialreg.viz import diagrams


def _square_label(shape=(24, 20, 12)) -> np.ndarray:
    lab = np.zeros(shape, np.float32)
    lab[6:14, 5:12, 2:10] = 1
    return lab


# ------------------------------------------------------------------------------------------- outlines
def _check_outline(collection, dpi: float) -> None:
    width_px = float(np.max(collection.get_linewidths())) * dpi / 72.0
    assert width_px >= 2.0, f"outline {width_px:.2f} px wide"
    (halo,) = [e for e in collection.get_path_effects() if isinstance(e, withStroke)]
    assert halo._gc["linewidth"] > np.max(collection.get_linewidths())  # wider than the line: a rim
    assert sum(to_rgb(halo._gc["foreground"])) < 0.3  # dark


def test_overlay_and_slice_grid_outlines_are_thick_with_a_dark_halo():
    lab = _square_label()
    ax = viz.overlay_label(None, np.zeros((24, 20)), lab[:, :, 5])
    (contour,) = ax.collections
    _check_outline(contour, ax.figure.dpi)
    fig = viz.plot_slices([np.zeros((24, 20, 12))], labels=lab, slices=[5])
    _check_outline(fig.axes[0].collections[0], fig.dpi)


def test_browser_frames_keep_the_outline_colour_and_width():
    vol = np.random.default_rng(0).normal(size=(24, 20, 12)).astype(np.float32)
    b = viz.slice_browser(vol, labels=_square_label(), mode="static")
    rgb = np.asarray(Image.open(io.BytesIO(b.frame_png(5, colours=64))).convert("RGB"), np.float32)
    orange = np.array(to_rgb(viz.OKABE_ITO[0])) * 255
    near = np.linalg.norm(rgb - orange, axis=-1) < 40  # the 64-colour palette keeps the label colour
    perimeter_px = 2 * (8 + 7) * 220 / 24  # the 8 x 7 voxel square, 220 px for 24 rows
    assert near.sum() >= 1.6 * perimeter_px, near.sum()  # a 1.2-point line gives 1.4 x


# ------------------------------------------------------------------------------------------- images
def test_plot_checkerboard_draws_the_tiles_on_one_scale():
    a = np.zeros((8, 8))
    b = np.full((8, 8), 10.0)
    fig, ax = plt.subplots()
    out = viz.plot_checkerboard(ax, a, b, tiles=4, title="before")
    assert out is ax and ax.get_title() == "before" and ax.get_xlabel() == "axis 1 (voxels)"
    np.testing.assert_array_equal(ax.images[0].get_array(), viz.checkerboard(a, b, tiles=4))
    lo, hi = ax.images[0].get_clim()
    assert lo <= 0.0 + 1e-9 and hi >= 10.0 - 1e-9  # one grey scale for both images
    assert viz.plot_checkerboard(None, a, b).get_title() == "checkerboard of a and b"
    with pytest.raises(ValueError, match=r"plot_checkerboard: .*\(8, 8\) and \(8, 7\)"):
        viz.plot_checkerboard(None, a, np.zeros((8, 7)))


def test_plot_losses_x_label_is_a_parameter():
    ax = viz.plot_losses({"loss": [1.0, 0.5]}, xlabel="epoch")
    assert ax.get_xlabel() == "epoch"
    assert viz.plot_losses({"loss": [1.0, 0.5]}).get_xlabel() == "step"


# ------------------------------------------------------------------------------------------- schematic
def _arrows(ax) -> dict[str, FancyArrowPatch]:
    return {p.get_gid(): p for p in ax.patches if isinstance(p, FancyArrowPatch)}


@pytest.mark.parametrize("kind", viz.TRAINING_KINDS)
def test_schematic_losses_get_both_inputs(kind):
    ax = viz.plot_training_schematic(kind)
    arrows = _arrows(ax)
    image_loss, label_loss = kind != "weakly-supervised", kind != "unsupervised"
    assert (arrows["fix->img_loss"].get_alpha() == 1.0) == image_loss
    assert (arrows["warped_img->img_loss"].get_alpha() == 1.0) == image_loss
    assert (arrows["fix_lab->lab_loss"].get_alpha() == 1.0) == label_loss
    assert (arrows["warped_lab->lab_loss"].get_alpha() == 1.0) == label_loss
    fixed_label = next(t for t in ax.texts if t.get_text() == "fixed label")
    assert (fixed_label.get_alpha() == 1.0) == label_loss
    # the fixed image's arrow ends on top of the image loss box, pointing down
    (corners,) = [c for s, e, c in diagrams.SCHEMATIC_ARROWS if (s, e) == ("fix", "img_loss")]
    path = diagrams.arrow_path("fix", "img_loss", corners)
    _, x, y, _, _ = diagrams.SCHEMATIC_BOXES["img_loss"]
    assert path[-1][0] == pytest.approx(x) and y < path[-1][1] < y + 1.0 and path[-2][1] > path[-1][1]


def _boxes() -> dict[str, tuple[float, float, float, float]]:
    hw, hh = diagrams.BOX_HALF
    pad = 0.05  # the rounded box style's padding
    return {k: (x - hw - pad, x + hw + pad, y - hh - pad, y + hh + pad)
            for k, (_, x, y, _, _) in diagrams.SCHEMATIC_BOXES.items()}


def _segments_cross(p, q, r, s) -> bool:
    """True when segments pq and rs cross at a point inside both."""
    d = (q[0] - p[0]) * (s[1] - r[1]) - (q[1] - p[1]) * (s[0] - r[0])
    if abs(d) < 1e-12:
        return False
    t = ((r[0] - p[0]) * (s[1] - r[1]) - (r[1] - p[1]) * (s[0] - r[0])) / d
    u = ((r[0] - p[0]) * (q[1] - p[1]) - (r[1] - p[1]) * (q[0] - p[0])) / d
    return 1e-6 < t < 1 - 1e-6 and 1e-6 < u < 1 - 1e-6


def test_schematic_layout_is_tidy():
    boxes = _boxes()
    for (a, (ax0, ax1, ay0, ay1)), (b, (bx0, bx1, by0, by1)) in combinations(boxes.items(), 2):
        assert ax1 < bx0 or bx1 < ax0 or ay1 < by0 or by1 < ay0, f"boxes {a} and {b} overlap"
    paths = {f"{s}->{e}": diagrams.arrow_path(s, e, c) for s, e, c in diagrams.SCHEMATIC_ARROWS}
    for name, path in paths.items():  # no arrow passes through a box (and its text) it does not connect
        ends = set(name.split("->"))
        points = np.concatenate([np.linspace(p, q, 200) for p, q in zip(path[:-1], path[1:], strict=True)])
        for key, (x0, x1, y0, y1) in boxes.items():
            inside = (points[:, 0] > x0) & (points[:, 0] < x1) & (points[:, 1] > y0) & (points[:, 1] < y1)
            assert key in ends or not inside.any(), f"arrow {name} crosses box {key}"
            assert not inside.any(), f"arrow {name} enters box {key}"  # arrows stop at the edges
    for (a, pa), (b, pb) in combinations(paths.items(), 2):
        for p, q in zip(pa[:-1], pa[1:], strict=True):
            for r, s in zip(pb[:-1], pb[1:], strict=True):
                assert not _segments_cross(p, q, r, s), f"arrows {a} and {b} cross"


def test_schematic_text_fits_in_its_box_at_the_default_and_the_book_size():
    _, book = plt.subplots(3, 1, figsize=(12, 12))  # the book's Figs 2.3-2.5
    default = viz.plot_training_schematic("combined")
    drawn = [viz.plot_training_schematic(k, ax=a) for k, a in zip(viz.TRAINING_KINDS, book, strict=True)]
    for ax in [default, *drawn]:
        renderer = ax.figure.canvas.get_renderer()
        boxes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
        for box, text in zip(boxes, ax.texts, strict=True):
            tb, bb = text.get_window_extent(renderer), box.get_window_extent(renderer)
            assert bb.x0 < tb.x0 and tb.x1 < bb.x1 and bb.y0 < tb.y0 and tb.y1 < bb.y1, text.get_text()


# ------------------------------------------------------------------------------------------- package
def test_viz_never_imports_tensorflow():
    code = "import sys, tutorialreg.viz; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_public_names_are_exported():
    for name in ("plot_training_history", "plot_before_after", "prediction_figure", "plot_checkerboard",
                 "frame_slider", "FrameSlider", "LiveLossPlot", "slice_browser", "SliceBrowser"):
        assert name in viz.__all__ and hasattr(viz, name)
    assert all(hasattr(viz, name) for name in viz.__all__)
