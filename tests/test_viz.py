"""Tests for tutorialreg.viz (headless, Agg backend, small arrays)."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.colors import is_color_like, to_rgb
from matplotlib.figure import Figure
from PIL import Image
from test_viz_support import PNG_SIGNATURE, close_figures, widget_tree  # noqa: F401

from tutorialreg import viz


def _volume(shape=(24, 20, 12), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vol = rng.normal(size=shape).astype(np.float32)
    vol[6:14, 5:12, :] += 3.0
    return vol


def _label(shape=(24, 20, 12)) -> np.ndarray:
    lab = np.zeros(shape + (2,), np.float32)
    lab[6:14, 5:12, 2:10, 0] = 1
    lab[2:5, 2:6, :, 1] = 1
    return lab


def _frames(html: str, element_id: str) -> list[str]:
    m = re.search(rf'<script type="application/json" id="{element_id}-frames">(.*?)</script>', html, re.S)
    assert m, "frames JSON block missing"
    return json.loads(m.group(1))


# ---------------------------------------------------------------------------------------------- arrays
def test_okabe_ito_palette():
    assert len(viz.OKABE_ITO) == 7 and len(set(viz.OKABE_ITO)) == 7
    assert all(is_color_like(c) for c in viz.OKABE_ITO)
    assert viz.OKABE_ITO[0] == "#E69F00" and "#0072B2" in viz.OKABE_ITO


def test_label_comparison_exact_colours():
    pred = np.array([[1, 1, 0], [0, 0, 0.7]])
    true = np.array([[1, 0, 1], [0, 0.2, 0.9]])
    rgb = viz.label_comparison(pred, true)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.float32
    c = {k: np.array(to_rgb(v), np.float32) for k, v in viz.COMPARISON_COLORS.items()}
    np.testing.assert_array_equal(rgb[0, 0], c["true positive"])
    np.testing.assert_array_equal(rgb[0, 1], c["false positive"])
    np.testing.assert_array_equal(rgb[0, 2], c["false negative"])
    np.testing.assert_array_equal(rgb[1, 0], c["true negative"])
    np.testing.assert_array_equal(rgb[1, 1], c["true negative"])  # 0.2 is below the 0.5 threshold
    np.testing.assert_array_equal(rgb[1, 2], c["true positive"])
    assert viz.COMPARISON_COLORS["false positive"] == "#E69F00"
    assert viz.COMPARISON_COLORS["false negative"] == "#0072B2"
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        viz.label_comparison(pred, np.zeros((3, 2)))


def test_checkerboard_alternates_tiles_exactly():
    a, b = np.zeros((4, 6)), np.ones((4, 6))
    cb = viz.checkerboard(a, b, tiles=2)
    expected = np.array([[0, 0, 0, 1, 1, 1]] * 2 + [[1, 1, 1, 0, 0, 0]] * 2)
    np.testing.assert_array_equal(cb, expected)
    per_pixel = viz.checkerboard(np.zeros((8, 8)), np.ones((8, 8)), tiles=8)
    np.testing.assert_array_equal(per_pixel, np.indices((8, 8)).sum(0) % 2)
    with pytest.raises(ValueError, match=r"\(4, 6\) and \(4, 5\)"):
        viz.checkerboard(a, np.ones((4, 5)))
    with pytest.raises(ValueError, match="2-D"):
        viz.checkerboard(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))


def test_ddf_slice_picks_in_plane_components():
    d1, d2, d3 = 4, 5, 6
    idx = np.indices((d1, d2, d3)).astype(np.float32)  # [3, d1, d2, d3]
    ddf = np.stack([idx[0] + 100, idx[1] + 200, idx[2] + 300], axis=-1)  # component c encodes 100*(c+1)
    s2 = viz.ddf_slice(ddf, 3, axis=2)
    assert s2.shape == (d1, d2, 2)
    np.testing.assert_array_equal(s2, ddf[:, :, 3, :2])
    s0 = viz.ddf_slice(ddf[None], 1, axis=0)  # leading batch of 1
    assert s0.shape == (d2, d3, 2)
    np.testing.assert_array_equal(s0, ddf[1, :, :, 1:])
    s1 = viz.ddf_slice(ddf, 2, axis=1)
    assert s1.shape == (d1, d3, 2)
    np.testing.assert_array_equal(s1[..., 0], ddf[:, 2, :, 0])
    np.testing.assert_array_equal(s1[..., 1], ddf[:, 2, :, 2])
    with pytest.raises(ValueError, match=r"\(4, 5, 6, 2\)"):
        viz.ddf_slice(ddf[..., :2], 0)
    with pytest.raises(ValueError, match="outside axis 2"):
        viz.ddf_slice(ddf, 6)


# ------------------------------------------------------------------------------------- axes-level
def test_overlay_label_contour_and_fill():
    img, lab = _volume()[:, :, 5], _label()[:, :, 5]
    ax = viz.overlay_label(None, img, lab, names=["organ", "lesion"])
    assert isinstance(ax, Axes) and ax.get_title() and ax.get_xlabel() == "axis 1 (voxels)"
    assert len(ax.collections) >= 1 and ax.get_legend() is not None  # contours
    fig, ax2 = plt.subplots()
    out = viz.overlay_label(ax2, img, [lab[..., 0], lab[..., 1]], contour=False, alpha=0.5)
    assert out is ax2 and len(ax2.images) == 3  # image + one fill per channel
    with pytest.raises(ValueError, match=r"\(24, 20\)"):
        viz.overlay_label(None, img, np.zeros((5, 5)))


def test_plot_label_comparison_has_legend_and_dice():
    pred = np.zeros((6, 6))
    pred[1:4, 1:4] = 1
    true = np.zeros((6, 6))
    true[1:4, 1:3] = 1
    ax = viz.plot_label_comparison(None, pred, true)
    assert isinstance(ax, Axes) and "Dice 0.800" in ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "true positive", "false positive", "false negative"]


def test_difference_is_centred_with_colorbar():
    a, b = np.zeros((5, 5)), np.zeros((5, 5))
    a[0, 0], b[1, 1] = 2.0, 0.5
    ax = viz.difference(a, b)
    lo, hi = ax.images[0].get_clim()
    assert lo == -hi == -2.0 and ax.images[0].get_cmap().name == "RdBu_r"
    assert len(ax.figure.axes) == 2 and ax.get_title()  # image + colour bar
    with pytest.raises(ValueError, match=r"\(5, 5\) and \(5, 4\)"):
        viz.difference(a, np.zeros((5, 4)))


def test_warped_grid_moves_lines_by_displacement():
    h, w, step = 8, 12, 4
    ddf2d = np.zeros((h, w, 2), np.float32)
    ddf2d[..., 0] = 1.5  # every point 1.5 voxels down
    ddf2d[..., 1] = -0.5  # and 0.5 voxels left
    ax = viz.warped_grid(None, ddf2d, step=step)
    assert len(ax.lines) == h // step + w // step
    first = ax.lines[0]  # row 0, drawn at x = column - 0.5, y = 0 + 1.5
    np.testing.assert_allclose(first.get_xdata(), np.arange(w) - 0.5)
    np.testing.assert_allclose(first.get_ydata(), np.full(w, 1.5))
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # rows increase downwards, like imshow
    with pytest.raises(ValueError, match=r"\[H, W, 2\].*\(8, 12, 3\)"):
        viz.warped_grid(None, np.zeros((h, w, 3)))


def test_warped_grid_limits_stay_on_the_image():
    h, w = 10, 14
    ddf2d = np.zeros((h, w, 2), np.float32)
    ddf2d[..., 0], ddf2d[..., 1] = 6.0, -5.0  # lines leave the slice downwards and to the left
    ax = viz.warped_grid(None, ddf2d, step=3, image=np.zeros((h, w)))
    assert ax.get_xlim() == (-0.5, w - 0.5) and ax.get_ylim() == (h - 0.5, -0.5)  # the image extent
    left, right, bottom, top = ax.images[0].get_extent()
    assert ax.get_xlim() == (left, right) and ax.get_ylim() == (bottom, top)
    wide = viz.warped_grid(None, ddf2d, step=3, image=np.zeros((h, w)), clip=False)
    assert wide.get_xlim() == (-5.0, w - 0.5) and wide.get_ylim() == (h - 1 + 6.0, -0.5)
    with pytest.raises(ValueError, match=r"\(10, 14\).*\(10, 13\)"):
        viz.warped_grid(None, ddf2d, image=np.zeros((h, w - 1)))


def test_plot_grid_3d_draws_both_lattices():
    from mpl_toolkits.mplot3d.art3d import Line3DCollection

    d1, d2, d3 = 4, 3, 2
    ddf = np.zeros((1, d1, d2, d3, 3), np.float32)
    ddf[..., 2] = 0.5  # every point half a voxel along axis 2
    ax = viz.plot_grid_3d(ddf, title="lattice")
    ax.figure.canvas.draw()  # 3-D collections project their segments when drawn
    assert ax.name == "3d" and ax.get_title() == "lattice" and ax.get_xlabel() == "axis 0 (voxels)"
    grid, moved = [c for c in ax.collections if isinstance(c, Line3DCollection)]
    # two-point pieces of the lines along axis 0, 1 and 2
    n_pieces = d2 * d3 * (d1 - 1) + d1 * d3 * (d2 - 1) + d1 * d2 * (d3 - 1)
    assert len(grid.get_segments()) == len(moved.get_segments()) == n_pieces
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["grid x", "displaced x + u(x)"]
    assert to_rgb(moved.get_color()[0]) == to_rgb(viz.OKABE_ITO[4])
    assert to_rgb(grid.get_color()[0]) == to_rgb(viz.GREY)
    assert ax.get_zlim()[1] >= d3 - 1 + 0.5  # the displaced lattice is in view
    fig = plt.figure()
    ax3 = fig.add_subplot(projection="3d")
    out = viz.plot_grid_3d(ddf[0], ax=ax3, step=2)
    fig.canvas.draw()
    # every 2nd line: along axis 0, 2 x 1 lines of 3 pieces; axis 1, 2 x 1 of 2; axis 2, 2 x 2 of 1
    assert out is ax3 and len(ax3.collections[0].get_segments()) == 2 * 3 + 2 * 2 + 4 * 1
    assert ax3.get_title() == "voxel grid displaced by a DDF"
    with pytest.raises(ValueError, match=r"\[d1, d2, d3, 3\].*\(4, 3, 2, 2\)"):
        viz.plot_grid_3d(ddf[0, ..., :2])
    with pytest.raises(ValueError, match="3-D Axes"):
        viz.plot_grid_3d(ddf, ax=plt.subplots()[1])


@pytest.mark.parametrize("kind, n_used", [("unsupervised", 9), ("weakly-supervised", 13), ("combined", 14)])
def test_plot_training_schematic_fades_unused_parts(kind, n_used):
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    ax = viz.plot_training_schematic(kind)
    assert isinstance(ax, Axes)
    assert ax.get_title() == f"{kind.replace('-', ' ')} training of a registration network"
    boxes = [p for p in ax.patches if isinstance(p, FancyBboxPatch)]
    assert len(boxes) == 14
    assert sum(b.get_edgecolor()[3] == 1.0 for b in boxes) == n_used
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    labels = {t.get_text(): t.get_alpha() for t in ax.texts}
    assert len(arrows) == 17 and len(labels) == 13  # 14 boxes, two of them named "warping"
    assert (labels["image loss"] == 1.0) == (kind != "weakly-supervised")
    assert (labels["label loss"] == 1.0) == (kind != "unsupervised")
    assert (labels["fixed label"] == 1.0) == (kind != "unsupervised")
    assert labels["network"] == labels["regulariser\n(on the DDF)"] == 1.0


def test_plot_training_schematic_title_axes_and_bad_kind():
    fig, ax = plt.subplots()
    out = viz.plot_training_schematic("combined", ax=ax, title="Fig. 1")
    assert out is ax and ax.get_title() == "Fig. 1" and not ax.axison
    with pytest.raises(ValueError, match="'unsupervised', 'weakly-supervised', 'combined'.*'supervised'"):
        viz.plot_training_schematic("supervised")


def test_ddf_quiver_uses_row_column_components():
    ddf2d = np.zeros((8, 8, 2), np.float32)
    ddf2d[..., 0], ddf2d[..., 1] = 2.0, 3.0
    ax = viz.ddf_quiver(None, ddf2d, step=4, image=np.zeros((8, 8)))
    q = ax.collections[-1]
    np.testing.assert_allclose(q.U, 3.0)  # horizontal = component 1 (columns)
    np.testing.assert_allclose(q.V, 2.0)  # vertical = component 0 (rows)
    assert q.N == 4 and ax.get_title()


def test_jacobian_map_centred_at_one_and_counts_folding():
    jac = np.ones((10, 10), np.float32)
    jac[0, 0], jac[1, 1], jac[2, 2] = -0.5, 0.0, 1.8
    ax = viz.jacobian_map(None, jac)
    norm = ax.images[0].norm
    assert norm.vcenter == 1.0 and norm.vmin == pytest.approx(-0.5) and norm.vmax == pytest.approx(2.5)
    assert "2 folding voxels" in ax.get_title()
    assert len(ax.images) == 2 and ax.get_legend() is not None  # folding overlay


def test_plot_losses_scales_and_labels():
    ax = viz.plot_losses({"image": [1.0, 0.5, 0.25], "regulariser": [0.1, 0.2, 0.3]})
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "step" and ax.get_title() == "loss curves"
    assert len(ax.lines) == 2
    ax2 = viz.plot_losses({"ncc": [-0.1, -0.5]}, steps=[10, 20])
    assert ax2.get_yscale() == "linear"
    np.testing.assert_array_equal(ax2.lines[0].get_xdata(), [10, 20])


# ------------------------------------------------------------------------------------- figure-level
def test_plot_slices_grid_titles_and_labels():
    vols = [_volume(), _volume(seed=1)]
    fig = viz.plot_slices(vols, titles=["fixed", "moving"], slices=[2, 5, 9], labels=[_label(), None],
                          suptitle="demo")
    assert isinstance(fig, Figure) and fig.get_suptitle() == "demo"
    axes = [ax for ax in fig.axes if ax.images]
    assert len(axes) == 6
    assert [ax.get_title() for ax in axes[:2]] == ["fixed, slice 2", "moving, slice 2"]
    assert axes[-1].get_title() == "moving, slice 9"
    assert axes[0].get_ylabel() == "axis 0 (voxels)" and axes[-1].get_xlabel() == "axis 1 (voxels)"
    assert len(axes[0].collections) > 0 and len(axes[1].collections) == 0  # label contours only on fixed
    assert not plt.get_fignums()  # detached from pyplot


def test_plot_slices_defaults_wrap_and_axis():
    fig = viz.plot_slices(_volume()[None], slices=4, axis=0, ncols=2)  # batch of 1, one volume
    axes = [ax for ax in fig.axes if ax.images]
    assert len(axes) == 4 and fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (2, 2)
    assert axes[0].images[0].get_array().shape == (20, 12)  # axis 0 slice: rows axis 1, columns axis 2
    assert fig.get_suptitle() == "slices along axis 0"


def test_plot_slices_bad_input():
    with pytest.raises(ValueError, match=r"\(24, 20\)"):
        viz.plot_slices([np.zeros((24, 20))])
    with pytest.raises(ValueError, match=r"\(24, 20, 12\).*\(24, 20, 10\)"):
        viz.plot_slices([_volume(), np.zeros((24, 20, 10))])
    with pytest.raises(ValueError, match="indices in"):
        viz.plot_slices([_volume()], slices=[12])


# ------------------------------------------------------------------------------------- slice browser
def test_static_browser_html_frames_and_no_network():
    vol = _volume()
    b = viz.slice_browser(vol, vol * 2, labels=_label(), titles=["a", "b"], mode="static")
    assert b.mode == "static"
    html = b._repr_html_()
    frames = _frames(html, b.element_id)
    assert len(frames) == 12 == len(b.frame_indices())
    for f in frames:
        assert base64.b64decode(f).startswith(PNG_SIGNATURE)
    assert html.count("data:image/png;base64,") == 2  # initial <img> + the JS prefix
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.I)
    assert "//cdn" not in html.lower() and 'src="http' not in html and "require(" not in html
    assert "slice 6 / 12 (axis 2)" in html
    ids = re.findall(r'id="([^"]+)"', html)
    assert ids and all(i.startswith(b.element_id) for i in ids)
    assert 'type="range"' in html and "ArrowRight" in html and "location.hash" in html


def test_static_browser_unique_ids_and_max_frames():
    long_vol = np.random.default_rng(0).random((10, 8, 50)).astype(np.float32)
    b1 = viz.slice_browser(long_vol, max_frames=10, mode="static")
    b2 = viz.slice_browser(long_vol, max_frames=10, mode="static")
    assert b1.element_id != b2.element_id
    ks = b1.frame_indices()
    assert len(ks) == 10 and ks[0] == 0 and ks[-1] == 49 and ks == sorted(ks)
    assert len(_frames(b1.to_html(), b1.element_id)) == 10
    assert len(viz.slice_browser(long_vol, mode="static").frame_indices()) == 40  # default cap


def test_static_browser_frame_size():
    square = np.random.default_rng(2).random((20, 20, 6))
    b = viz.slice_browser(square, square, mode="static")
    img = Image.open(io.BytesIO(b.frame_png(3)))
    assert 2 * 220 <= img.width <= 2 * 220 + 40  # 220 px per panel (its longest side)
    assert 220 <= img.height <= 280  # + title


def test_slice_browser_bad_input():
    with pytest.raises(ValueError, match=r"\(16, 16\)"):
        viz.slice_browser(np.zeros((16, 16)))
    with pytest.raises(ValueError, match=r"axis 2.*\(8, 8, 4\).*\(8, 8, 5\)"):
        viz.slice_browser(np.zeros((8, 8, 4)), np.zeros((8, 8, 5)))
    with pytest.raises(ValueError, match=r"\(8, 8, 4\).*\(8, 8, 3\)"):
        viz.slice_browser(np.zeros((8, 8, 4)), labels=np.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match="mode"):
        viz.slice_browser(np.zeros((8, 8, 4)), mode="fancy")
    with pytest.raises(ValueError, match="axis"):
        viz.slice_browser(np.zeros((8, 8, 4)), axis=3)


def test_auto_mode_is_static_outside_a_kernel(monkeypatch):
    monkeypatch.setenv("TUTORIALREG_WIDGETS", "1")
    b = viz.slice_browser(np.zeros((1, 8, 8, 4)))  # leading batch of 1 squeezed
    assert b.mode == "static" and b.volumes[0].shape == (8, 8, 4)
    assert b._repr_mimebundle_() is None and b._repr_html_().startswith("<div")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_static_browser_fragment_sets_slice_in_headless_chromium():
    b = viz.slice_browser(np.random.default_rng(1).random((8, 8, 30)), max_frames=10, mode="static")
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "browser.html"
        b.save(page)
        cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp}/ud",
               "--dump-dom", f"{page.as_uri()}#{b.element_id}=20"]
        dom = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
    # frames are slices 0, 3, 6, 10, 13, 16, 19, 23, 26, 29: the nearest to 20 is 19
    assert re.search(rf'id="{b.element_id}-label"[^>]*>slice 19 / 30 \(axis 2\)<', dom), dom[-400:]


def test_widget_slider_changes_image():
    widgets = pytest.importorskip("ipywidgets")
    b = viz.slice_browser(_volume(), labels=_label(), titles=["vol"], mode="widget")
    assert b.mode == "widget" and b._repr_html_() is None
    parts = widget_tree(b.widget())
    image = next(w for w in parts if isinstance(w, widgets.Image))
    slider = next(w for w in parts if isinstance(w, widgets.IntSlider))
    axis_dd = next(w for w in parts if isinstance(w, widgets.Dropdown))
    show = next(w for w in parts if isinstance(w, widgets.Checkbox))
    before = bytes(image.value)
    assert before.startswith(PNG_SIGNATURE) and slider.value == 6
    slider.value = 2
    assert bytes(image.value) != before
    with_labels = bytes(image.value)
    show.value = False
    assert bytes(image.value) != with_labels
    axis_dd.value = 0
    assert slider.max == 23 and slider.value == 12


def test_live_loss_plot_headless():
    live = viz.LiveLossPlot(every=2)
    assert live.live is False  # not in a kernel: nothing is drawn
    for step in range(5):
        live.on_step(step, {"loss": 1.0 / (step + 1), "smooth": np.float32(0.1)})
    live.close()
    assert live.history["loss"][:2] == [1.0, 0.5] and live.steps["smooth"] == [0, 1, 2, 3, 4]
    fig = live.figure()
    assert isinstance(fig, Figure) and fig.axes[0].get_title() == "loss curves"
    with pytest.raises(ValueError, match="every"):
        viz.LiveLossPlot(every=0)


def test_live_loss_plot_in_a_kernel_updates_one_display(monkeypatch):
    display_mod = pytest.importorskip("IPython.display")
    shown: list[str] = []

    def fake_display(obj, display_id=None):
        assert isinstance(obj, display_mod.Image) and obj.data.startswith(PNG_SIGNATURE)
        shown.append("display")

    monkeypatch.setattr(viz._common, "in_kernel", lambda: True)
    monkeypatch.setattr(display_mod, "display", fake_display)
    monkeypatch.setattr(display_mod, "update_display", lambda obj, display_id: shown.append("update"))
    live = viz.LiveLossPlot(every=3, min_interval_s=0.0)
    for step in range(7):
        live.on_step(step, {"loss": 1.0 / (step + 1)})
    assert shown == ["display", "update"]  # calls 3 and 6
    live.close()
    assert shown == ["display", "update", "update"]  # the final curves


def test_plot_curves_styles_and_normalise():
    import matplotlib

    matplotlib.use("Agg")
    curves = {"a": [3.0, 1.0, 2.0], "b": [10.0, 20.0, 30.0]}
    ax = viz.plot_curves(None, [0, 1, 2], curves, normalise=True, xlabel="t (voxels)", title="sweep")
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["a", "b"]
    np.testing.assert_allclose(lines[0].get_ydata(), [1.0, 0.0, 0.5])
    assert lines[0].get_linestyle() != lines[1].get_linestyle()
    assert ax.get_title() == "sweep" and "rescaled" in ax.get_ylabel()
    with pytest.raises(ValueError, match="at most"):
        viz.plot_curves(None, [0], {str(i): [0.0] for i in range(10)})
