"""Tests for tutorialreg.viz's interactive views: the HTML template file, the frame slider, the display
rule (static or live) of both views, and the live loss plot as a callback with one notebook output."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
from importlib import resources

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure
from test_viz_support import PNG_SIGNATURE, close_figures, widget_tree  # noqa: F401

from tutorialreg import callbacks, viz
from tutorialreg.viz import _common, browser


def _png(value: float) -> bytes:
    fig = Figure(figsize=(1.0, 1.0), dpi=20)
    fig.patch.set_facecolor((value, value, value))
    return _common.png_bytes(fig, None)


def _script_block(html: str, element_id: str, suffix: str):
    m = re.search(rf'<script type="application/json" id="{element_id}-{suffix}">(.*?)</script>', html, re.S)
    assert m, f"{suffix} JSON block missing"
    return json.loads(m.group(1))


# ------------------------------------------------------------------------------------------- template
def test_the_static_views_are_filled_from_the_package_template(monkeypatch):
    text = resources.files("tutorialreg.viz").joinpath("browser.html").read_text(encoding="utf-8")
    assert "$frames" in text and "location.hash" in text and 'class="$css_class"' in text
    script = text[text.index('var frames'):text.index("</script></div>")]  # the JS past the id line
    b = viz.slice_browser(np.zeros((6, 6, 3)), mode="static")
    assert script in b.to_html()
    assert "addEventListener" not in open(browser.__file__, encoding="utf-8").read()  # no inline copy left
    monkeypatch.setattr(browser, "template", lambda: browser.string.Template("<p id='$id'>$caption</p>"))
    again = viz.slice_browser(np.zeros((6, 6, 3)), mode="static")
    assert again.to_html() == f"<p id='{again.element_id}'>slice 1 / 3 (axis 2)</p>"


def test_slice_browser_html_keeps_its_structure():
    b = viz.slice_browser(np.random.default_rng(0).random((6, 6, 5)), mode="static")
    html = b.to_html()
    i = b.element_id
    assert f'<div id="{i}" class="tutorialreg-slice-browser"' in html
    for suffix in ("img", "range", "label", "frames"):
        assert f'id="{i}-{suffix}"' in html
    meta = _script_block(html, i, "meta")
    assert meta["names"] == ["z"] and meta["keys"] == [0, 1, 2, 3, 4]
    assert meta["captions"][2] == "slice 2 / 5 (axis 2)"


# ------------------------------------------------------------------------------------------- frame slider
def test_frame_slider_static_html():
    figs = []
    for w in (0.1, 0.3):
        fig, ax = plt.subplots(figsize=(2, 2))  # pyplot figures: rendered, then closed
        ax.set_title(f"weight {w}")
        figs.append(fig)
    labels = ["weight 0.1: Dice 0.78, folding 0.1 %", "weight 0.3 <best> & more"]
    s = viz.frame_slider([*figs, _png(0.5)], [*labels, "raw PNG"], title="Fig. 5.3 <sweep>",
                         param_name="bending weight", mode="static")
    assert s.mode == "static" and not plt.get_fignums() and repr(s).startswith("FrameSlider(3 frames")
    html = s._repr_html_()
    i = s.element_id
    assert f'<div id="{i}" class="tutorialreg-frame-slider"' in html
    for suffix in ("img", "range", "label"):
        assert f'id="{i}-{suffix}"' in html
    assert all(x.startswith(i) for x in re.findall(r'id="([^"]+)"', html))
    frames = _script_block(html, i, "frames")
    assert len(frames) == 3 and all(base64.b64decode(f).startswith(PNG_SIGNATURE) for f in frames)
    assert base64.b64decode(frames[2]) == s.pngs[2]
    meta = _script_block(html, i, "meta")
    assert meta == {"captions": [*labels, "raw PNG"], "keys": [0, 1, 2], "names": []}
    assert "<best>" not in html and "Fig. 5.3 &lt;sweep&gt;" in html  # escaped in text and in JSON
    assert 'aria-label="bending weight"' in html and 'max="2"' in html
    assert f">{labels[0]}</span>" in html  # the first frame's caption


def test_frame_slider_bad_input():
    with pytest.raises(ValueError, match="one entry per frame"):
        viz.frame_slider([_png(0.1)], ["a", "b"], mode="static")
    with pytest.raises(ValueError, match="at least one"):
        viz.frame_slider([], [], mode="static")
    with pytest.raises(ValueError, match="frame 1 .*not a PNG"):
        viz.frame_slider([_png(0.1), b"GIF89a"], ["a", "b"], mode="static")
    with pytest.raises(ValueError, match="frame 0 .*ndarray"):
        viz.frame_slider([np.zeros((4, 4))], ["a"], mode="static")
    with pytest.raises(ValueError, match="frame_slider: mode"):
        viz.frame_slider([_png(0.1)], ["a"], mode="live")


def test_frame_slider_widget_switches_image_and_caption():
    widgets = pytest.importorskip("ipywidgets")
    s = viz.frame_slider([_png(0.1), _png(0.9)], ["low", "high"], title="t", mode="widget")
    assert s._repr_html_() is None
    parts = widget_tree(s.widget())
    image = next(w for w in parts if isinstance(w, widgets.Image))
    slider = next(w for w in parts if isinstance(w, widgets.IntSlider))
    caption = [w for w in parts if isinstance(w, widgets.HTML)][-1]
    assert bytes(image.value) == s.pngs[0] and caption.value == "low" and slider.description == "parameter"
    slider.value = 1
    assert bytes(image.value) == s.pngs[1] and caption.value == "high"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_frame_slider_fragment_selects_a_frame_in_headless_chromium(tmp_path):
    s = viz.frame_slider([_png(v) for v in (0.1, 0.5, 0.9)], ["a", "b", "c"], mode="static")
    page = tmp_path / "slider.html"
    s.save(page)
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--no-first-run", f"--user-data-dir={tmp_path}/ud", "--dump-dom",
           f"{page.as_uri()}#{s.element_id}=2"]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=60).stdout
    assert re.search(rf'id="{s.element_id}-label"[^>]*>c<', dom), dom[-400:]


# ------------------------------------------------------------------------------------------- display rule
def _views(mode: str = "auto"):
    return viz.slice_browser(np.zeros((4, 4, 2)), mode=mode), viz.frame_slider([_png(0.5)], ["x"], mode=mode)


@pytest.mark.parametrize("env, kernel, widgets, expected", [
    (None, True, True, "widget"),      # any kernel with ipywidgets: live, not only Colab
    ("auto", True, True, "widget"),
    (None, False, True, "static"),     # a script: nothing could show a widget
    (None, True, False, "static"),     # no ipywidgets
    ("static", True, True, "static"),  # the book build and CI
    ("0", True, True, "static"),
    ("widget", True, True, "widget"),
    ("1", False, True, "static"),
])
def test_auto_mode_rule(monkeypatch, env, kernel, widgets, expected):
    if env is None:
        monkeypatch.delenv("TUTORIALREG_WIDGETS", raising=False)
    else:
        monkeypatch.setenv("TUTORIALREG_WIDGETS", env)
    monkeypatch.setattr(_common, "in_kernel", lambda: kernel)
    monkeypatch.setattr(_common, "widgets_available", lambda: widgets)
    assert [v.mode for v in _views()] == [expected, expected]
    assert [v.mode for v in _views("static")] == ["static", "static"]  # an explicit mode wins


def test_forced_live_view_without_ipywidgets_says_so(monkeypatch):
    monkeypatch.setenv("TUTORIALREG_WIDGETS", "widget")
    monkeypatch.setattr(_common, "in_kernel", lambda: True)
    monkeypatch.setattr(_common, "widgets_available", lambda: False)
    with pytest.raises(ImportError, match="TUTORIALREG_WIDGETS=widget.*ipywidgets"):
        viz.slice_browser(np.zeros((4, 4, 2)))
    with pytest.raises(ImportError, match=r"frame_slider\(mode='widget'\) needs ipywidgets"):
        viz.frame_slider([_png(0.5)], ["x"], mode="widget")
    monkeypatch.setenv("TUTORIALREG_WIDGETS", "sometimes")
    with pytest.raises(ValueError, match="TUTORIALREG_WIDGETS='sometimes'"):
        viz.slice_browser(np.zeros((4, 4, 2)))


def test_kernel_and_ipywidgets_detection(monkeypatch):
    ipython = pytest.importorskip("IPython")

    class Shell:
        kernel = object()

    monkeypatch.setattr(ipython, "get_ipython", lambda: Shell())
    assert _common.in_kernel() is True
    monkeypatch.setattr(ipython, "get_ipython", lambda: None)
    assert _common.in_kernel() is False
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import fails
    assert _common.widgets_available() is False


# ------------------------------------------------------------------------------------------- live loss plot
class FakeDisplay:
    """IPython's display and update_display, counting notebook outputs."""

    def __init__(self, monkeypatch) -> None:
        display_mod = pytest.importorskip("IPython.display")
        self.outputs: list[str] = []  # display ids, one per output
        self.updates: list[str] = []
        monkeypatch.setattr(display_mod, "display", self.display)
        monkeypatch.setattr(display_mod, "update_display", self.update_display)

    def display(self, obj, display_id=None):
        assert obj.data.startswith(PNG_SIGNATURE) and isinstance(display_id, str)
        self.outputs.append(display_id)

    def update_display(self, obj, display_id):
        assert obj.data.startswith(PNG_SIGNATURE) and display_id in self.outputs
        self.updates.append(display_id)


def test_live_plot_is_one_output_even_when_closed_before_any_draw(monkeypatch):
    fake = FakeDisplay(monkeypatch)
    monkeypatch.setattr(_common, "in_kernel", lambda: True)
    live = viz.LiveLossPlot(every=100, min_interval_s=0.0)
    assert isinstance(live, callbacks.Callback) and not hasattr(live, "update")
    callbacks.check_callbacks([live])
    for step in range(5):
        callbacks.notify([live], step, {"loss": 1.0 / (step + 1)})
    assert fake.outputs == []  # fewer calls than every: nothing shown yet
    callbacks.close_all([live])
    assert len(fake.outputs) == 1 and fake.updates == []  # close shows it once
    live.on_step(5, {"loss": 0.1})  # a second stage with the same plot, closed again: same output
    live.close()
    assert len(fake.outputs) == 1 and fake.updates == fake.outputs


def test_live_plot_draws_at_most_once_per_interval(monkeypatch):
    fake = FakeDisplay(monkeypatch)
    monkeypatch.setattr(_common, "in_kernel", lambda: True)
    live = viz.LiveLossPlot(every=1, min_interval_s=3600.0)
    for step in range(10):
        live.on_step(step, {"loss": 1.0})
    live.close()
    assert len(fake.outputs) == 1 and len(fake.updates) == 1  # the first draw, then the final curves


def test_live_plot_headless_only_records(monkeypatch):
    fake = FakeDisplay(monkeypatch)
    monkeypatch.setattr(_common, "in_kernel", lambda: False)
    live = viz.LiveLossPlot(every=1, min_interval_s=0.0)
    for step in range(3):
        live.on_step(step, {"loss": 1.0, "val_dice": np.float64(0.5)})
    live.close()
    assert fake.outputs == [] and live.live is False and live.history["val_dice"] == [0.5, 0.5, 0.5]


def test_live_plot_secondary_axis_and_x_label():
    live = viz.LiveLossPlot(xlabel="epoch", secondary=("val_dice",), secondary_label="validation Dice")
    for step in range(1, 6):
        live.on_step(step / 2, {"loss": 1.0 / step, "label": 0.5 / step})
        if step % 2 == 0:
            live.on_step(step / 2, {"val_dice": 0.4 + step / 20})
    fig = live.figure()
    left, right = fig.axes
    assert left.get_xlabel() == "epoch" and left.get_yscale() == "log"
    assert [line.get_label() for line in left.lines] == ["loss", "label"]
    assert [line.get_label() for line in right.lines] == ["val_dice"] and right.get_yscale() == "linear"
    np.testing.assert_allclose(right.lines[0].get_xdata(), [1.0, 2.0])
    assert right.get_ylabel() == "validation Dice"
    legend = left.get_legend() or right.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["loss", "label", "val_dice"]
    png = _common.png_bytes(fig, None)
    assert png.startswith(PNG_SIGNATURE)
    only_loss = viz.LiveLossPlot(secondary=("val_dice",))
    only_loss.on_step(1, {"loss": 1.0})
    assert len(only_loss.figure().axes) == 1  # no Dice yet: no right axis
    with pytest.raises(ValueError, match="secondary must be a sequence of term names"):
        viz.LiveLossPlot(secondary="val_dice")
    with pytest.raises(ValueError, match="every"):
        viz.LiveLossPlot(every=2.5)


def test_png_bytes_palette_keeps_size_down():
    fig = Figure(figsize=(2, 2), dpi=50)
    fig.add_subplot().imshow(np.random.default_rng(0).random((20, 20)), cmap="gray")
    full, palette = _common.png_bytes(fig, None), _common.png_bytes(fig, 64)
    from PIL import Image

    assert Image.open(io.BytesIO(palette)).mode == "P" and len(palette) < len(full)


def test_slice_browser_title_and_live_plot_term_filter():
    vol = np.random.default_rng(0).random((6, 7, 5)).astype(np.float32)
    browser = viz.slice_browser(vol, mode="static", title="Fig. 9.1  A volume")
    assert "Fig. 9.1  A volume" in browser.to_html()
    live = viz.LiveLossPlot(terms=("ssd",))
    live.on_step(0, {"total": 1.0, "ssd": 1.0})
    assert set(live.values) == {"ssd"}
