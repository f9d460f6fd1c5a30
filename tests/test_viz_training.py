"""Tests for tutorialreg.viz's training figures: history, paired before/after scores, prediction rows."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.colors import to_rgb
from PIL import Image
from test_viz_support import PNG_SIGNATURE, close_figures  # noqa: F401

from tutorialreg import viz
from tutorialreg.checks import NonFiniteError

HISTORY = {
    "loss": [1.0, 0.6, 0.4, 0.3],
    "label": [0.9, 0.5, 0.35, 0.25],
    "regularization": [0.01, 0.02, 0.025, 0.03],
    "val_dice": [0.45, 0.55, 0.62, 0.66],
    "seconds": [12.0, 11.0, 11.5, 11.2],
}



def _twin(ax):
    (right,) = [other for other in ax.figure.axes if other is not ax]
    return right


# ------------------------------------------------------------------------------------------- history
def test_training_history_puts_dice_on_its_own_right_axis():
    ax = viz.plot_training_history(HISTORY, title="Fig. 1")
    assert ax.get_title() == "Fig. 1" and ax.get_xlabel() == "epoch" and ax.get_yscale() == "log"
    assert [line.get_label() for line in ax.lines] == ["loss", "label", "regularization"]  # no seconds
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), [1, 2, 3, 4])
    right = _twin(ax)
    assert right.get_yscale() == "linear" and right.get_ylabel() == "validation Dice"
    assert [line.get_label() for line in right.lines] == ["val_dice"]
    np.testing.assert_allclose(right.lines[0].get_ydata(), HISTORY["val_dice"])
    assert right.get_shared_x_axes().joined(ax, right)
    assert right.bbox.bounds == pytest.approx(ax.bbox.bounds)  # the same plot, two y axes
    assert ax.yaxis.get_label_position() == "left" and right.yaxis.get_label_position() == "right"
    legend = ax.get_legend() or right.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["loss", "label", "regularization", "val_dice"]


def test_training_history_without_validation_and_bad_input():
    fig, ax = plt.subplots()
    out = viz.plot_training_history({"loss": [1.0, -0.5]}, ax=ax)  # a negative loss: linear axis
    assert out is ax and len(fig.axes) == 1 and ax.get_yscale() == "linear" and ax.get_legend() is not None
    with pytest.raises(ValueError, match=r"history\['label'\]"):
        viz.plot_training_history({"loss": [1.0], "label": "0.5"})
    with pytest.raises(ValueError, match="no loss values"):
        viz.plot_training_history({"val_dice": [0.5]})
    with pytest.raises(ValueError, match="dict"):
        viz.plot_training_history([1.0, 0.5])


# ------------------------------------------------------------------------------------------- before/after
BEFORE = np.array([0.40, 0.52, 0.45, 0.60, 0.47, 0.50, 0.43])
AFTER = np.array([0.70, 0.75, 0.68, 0.55, 0.72, 0.74, 0.69])  # pair 3 got worse


def _points_px(ax) -> np.ndarray:
    xy = np.concatenate([np.column_stack([line.get_xdata(), line.get_ydata()]) for line in ax.lines])
    return ax.transData.transform(xy.astype(float))


def _legend_hides_no_point(ax) -> None:
    ax.figure.canvas.draw()
    box = ax.get_legend().get_window_extent()
    pad = 6  # points' marker radius, pixels
    for x, y in _points_px(ax):
        inside = box.x0 - pad < x < box.x1 + pad and box.y0 - pad < y < box.y1 + pad
        assert not inside, f"legend {box} hides the point at ({x:.0f}, {y:.0f}) px"


def test_before_after_marks_and_names_the_worse_pair():
    names = [f"case{i}" for i in range(len(BEFORE))]
    ax = viz.plot_before_after(BEFORE, AFTER, names=names)
    pairs = ax.lines[: len(BEFORE)]
    worse = pairs[3]
    assert worse.get_linestyle() == "--" and to_rgb(worse.get_color()) == to_rgb(viz.OKABE_ITO[5])
    for i, line in enumerate(pairs):
        np.testing.assert_allclose(line.get_ydata(), [BEFORE[i], AFTER[i]])
        if i != 3:
            assert line.get_linestyle() == "-" and to_rgb(line.get_color()) == to_rgb(viz.GREY)
    assert [t.get_text() for t in ax.texts] == ["case3"]
    assert to_rgb(ax.texts[0].get_color()) == to_rgb(viz.OKABE_ITO[5])
    assert [t.get_text() for t in ax.xaxis.get_ticklabels()] == ["no registration", "network"]
    assert ax.get_ylabel() == "gland Dice" and "1 worse" in ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "no registration", "network", "better or equal", "worse (1)"]


@pytest.mark.parametrize("figsize", [(10.0, 4.0), (7.0, 3.0)])
def test_before_after_legend_never_hides_a_point(figsize):
    ax = viz.plot_before_after(BEFORE, AFTER)  # its own figure
    _legend_hides_no_point(ax)
    fig, axes = plt.subplots(1, 2, figsize=figsize, layout="constrained")  # a small panel of the caller's
    for a in axes:
        viz.plot_before_after(BEFORE, AFTER, ax=a)
        _legend_hides_no_point(a)


def test_before_after_distances_and_bad_input():
    ax = viz.plot_before_after([10.0, 5.0], [4.0, 6.0], metric="centroid distance (mm)",
                               higher_is_better=False, labels=("affine", "network"))
    assert ax.lines[0].get_linestyle() == "-" and ax.lines[1].get_linestyle() == "--"  # 5 -> 6 mm is worse
    assert [t.get_text() for t in ax.texts] == ["pair 1"]
    with pytest.raises(ValueError, match="same number"):
        viz.plot_before_after([0.5, 0.6], [0.7])
    with pytest.raises(ValueError, match="names must have one entry per pair"):
        viz.plot_before_after([0.5], [0.7], names=["a", "b"])
    with pytest.raises(NonFiniteError, match="after"):
        viz.plot_before_after([0.5, 0.6], [0.7, np.nan])


# ------------------------------------------------------------------------------------------- prediction
KINDS = ("fixed_image", "fixed_label", "moving_image", "moving_label", "pred_fixed_image", "pred_fixed_label")


def _prediction_pngs(root, depth=10, shape=(16, 12)):
    rng = np.random.default_rng(0)
    for kind in KINDS:
        folder = root / "pair_0_label_0" / kind
        folder.mkdir(parents=True)
        for k in range(depth):
            img = (rng.random(shape) * 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"depth{k}_{kind}.png")


def test_prediction_figure_rows_of_eight_panels(tmp_path):
    _prediction_pngs(tmp_path)
    fig = viz.prediction_figure(tmp_path, pair=0, label=0, depths=[4, 8], title="Fig. 6.4")
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 16 and len(fig.axes) >= 16  # 2 rows of 8 panels (+ colour bars)
    assert fig.axes[0].get_title() == "fixed label"
    assert [ax.get_title() for ax in panels[:8]] == [
        "fixed label", "fixed image", "moving label", "moving image", "warped moving label",
        "warped moving image", "comparison", "warped - fixed"]
    assert panels[0].get_ylabel() == "depth 4" and panels[8].get_ylabel() == "depth 8"
    assert fig.get_suptitle() == "Fig. 6.4" and not plt.get_fignums()  # no pyplot state
    default = viz.prediction_figure(tmp_path)
    assert len([ax for ax in default.axes if ax.images]) == 24  # depths 3, 5, 7
    assert default.get_suptitle() == "pair_0_label_0: slices along axis 2"
    with pytest.raises(FileNotFoundError, match="pair_1_label_0"):
        viz.prediction_figure(tmp_path, pair=1)
