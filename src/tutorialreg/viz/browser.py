"""Sliders over pre-rendered frames that work with or without a kernel: the slice browser and a parameter
viewer for precomputed results.

Both show either a static HTML + JS slider (PNG frames as base64 in the page, filled into the package file
``browser.html`` with :class:`string.Template`; no kernel, no network) or a live ipywidgets view. Which one
is decided by :func:`tutorialreg.viz._common.resolve_mode` (see :func:`slice_browser`).
"""

from __future__ import annotations

import base64
import html
import json
import os
import string
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from tutorialreg.viz import _common
from tutorialreg.viz._common import (
    OKABE_ITO,
    aspect_for,
    check_axis,
    draw_labels,
    intensity_range,
    labels_per_volume,
    png_bytes,
    titles_for,
    volumes_along,
)

_PANEL_IN = 2.2  # longest side of one panel of a static frame, inches (x 100 dpi = 220 px)
_FRAME_DPI = 100
_DEFAULT_MAX_FRAMES = 40
_PNG_COLOURS = 64  # static slice frames are 64-colour palette PNGs: about 40% smaller than RGB
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TEMPLATE = "browser.html"


def template() -> string.Template:
    """The static slider's HTML + JS, read from the package file :data:`TEMPLATE`."""
    text = resources.files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8")
    return string.Template(text.rstrip("\n"))


def _script_json(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element (no ``<``, ``>`` or ``&`` characters)."""
    text = json.dumps(value)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@dataclass
class StaticFrames:
    """What the static slider shows.

    :param pngs: one PNG (bytes) per slider position.
    :param captions: one caption (plain text) per position, shown beside the slider.
    :param keys: one integer per position that a URL fragment ``#<name>=N`` selects (the nearest key wins).
    :param names: fragment names besides the element's id (e.g. ``["z"]``).
    :param start: the position shown first.
    """

    pngs: list[bytes]
    captions: list[str]
    keys: list[int]
    names: list[str]
    start: int
    aria: str
    alt: str
    note: str
    header: str = ""


def _header(title: str) -> str:
    """The static view's title line (HTML), or nothing."""
    return f'<div style="font-weight:bold;margin-bottom:4px">{html.escape(title)}</div>\n' if title else ""


class _FrameView:
    """What the slice browser and the frame slider share: the static page, saving, notebook display.

    Subclasses set ``CSS_CLASS`` and ``ID_PREFIX`` and implement ``static_frames()`` and ``widget()``.
    """

    CSS_CLASS = ""
    ID_PREFIX = ""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.element_id = self.ID_PREFIX + uuid.uuid4().hex[:12]
        self._html: str | None = None

    def static_frames(self) -> StaticFrames:
        raise NotImplementedError

    def widget(self) -> Any:
        raise NotImplementedError

    def to_html(self) -> str:
        """Self-contained HTML + JS slider (base64 PNG frames, no external scripts); built once."""
        if self._html is None:
            s = self.static_frames()
            frames = [base64.b64encode(png).decode("ascii") for png in s.pngs]
            self._html = template().substitute(
                id=self.element_id, css_class=self.CSS_CLASS, header=s.header, first=frames[s.start],
                alt=html.escape(s.alt, quote=True), last=len(frames) - 1, start=s.start,
                aria=html.escape(s.aria, quote=True), caption=html.escape(s.captions[s.start]),
                note=html.escape(s.note), frames=_script_json(frames),
                meta=_script_json({"captions": s.captions, "keys": s.keys, "names": s.names}),
            )
        return self._html

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write a standalone HTML page holding the static view."""
        page = ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>tutorialreg</title></head>\n"
                f"<body>\n{self.to_html()}\n</body></html>\n")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(page)

    def _repr_html_(self) -> str | None:
        return self.to_html() if self.mode == "static" else None

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any] | None:
        if self.mode != "widget":
            return None  # IPython then uses _repr_html_
        return self.widget()._repr_mimebundle_(include=include, exclude=exclude)


# ----------------------------------------------------------------------------------------------------------
# slice browser
# ----------------------------------------------------------------------------------------------------------
class SliceBrowser(_FrameView):
    """Browse slices of several volumes side by side; made by :func:`slice_browser`.

    Attributes: ``volumes`` (list of ``[d1, d2, d3]``), ``labels`` (per volume ``[d1, d2, d3, c]`` or
    None), ``titles``, ``axis``, ``window``, ``level``, ``mode`` ("static" or "widget").

    - :meth:`to_html` / ``_repr_html_``: static HTML + JS slider over pre-rendered PNG frames (root element
      of class ``tutorialreg-slice-browser``; ``#z=N`` or ``#<id>=N`` in the page URL selects slice N).
    - :meth:`widget`: a live ipywidgets view (slice slider, axis, window/level, label toggle).
    - :meth:`frame_png`: one rendered frame (PNG bytes); :meth:`save`: a standalone HTML page.
    """

    CSS_CLASS = "tutorialreg-slice-browser"
    ID_PREFIX = "tr-sb-"

    def __init__(self, volumes: Sequence[np.ndarray], labels: Sequence[np.ndarray | None],
                 titles: Sequence[str], axis: int, window: float, level: float, cmap: str, mode: str,
                 max_frames: int, contour: bool, spacing: Sequence[float] | None, title: str = "") -> None:
        super().__init__(mode)
        self.title = title
        self.volumes = list(volumes)
        self.labels = list(labels)
        self.titles = list(titles)
        self.axis = axis
        self.window = window
        self.level = level
        self.cmap = cmap
        self.max_frames = max_frames
        self.contour = contour
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)

    def __repr__(self) -> str:
        shapes = ", ".join(str(v.shape) for v in self.volumes)
        return f"SliceBrowser({shapes}, axis={self.axis}, mode={self.mode!r})"

    def frame_indices(self) -> list[int]:
        """Slice indices along ``axis`` in the static browser (at most ``max_frames``, evenly spaced)."""
        n = self.volumes[0].shape[self.axis]
        if n <= self.max_frames:
            return list(range(n))
        return sorted({int(round(x)) for x in np.linspace(0, n - 1, self.max_frames)})

    def frame_png(self, k: int, axis: int | None = None, window: float | None = None,
                  level: float | None = None, show_labels: bool = True, colours: int | None = None) -> bytes:
        """One frame: slice ``k`` of all volumes side by side, titled, labels outlined.

        :param k: slice index along ``axis`` (default the browser's axis).
        :param window: intensity window (default the browser's); ``level`` its centre.
        :param colours: > 0 makes a palette PNG of that many colours.
        :return: PNG bytes, 220 px per panel along its longest side at 100 dpi.
        """
        axis = self.axis if axis is None else check_axis(axis)
        window = self.window if window is None else window
        level = self.level if level is None else level
        aspect = aspect_for(self.spacing, axis)
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
            ax.imshow(np.take(v, k, axis=axis), cmap=self.cmap, vmin=level - window / 2,
                      vmax=level + window / 2, interpolation="nearest", aspect="auto")
            if show_labels and lab is not None:
                draw_labels(ax, np.take(lab, k, axis=axis), OKABE_ITO, 0.4, self.contour, "auto")
            ax.set_axis_off()
            ax.set_title(title, fontsize=9, pad=3)
            x += bw + pad
        return png_bytes(fig, colours)

    def _orientation(self, axis: int) -> str:
        rows, cols = [a for a in range(3) if a != axis]
        return f"vertical: axis {rows} (down), horizontal: axis {cols} (right); voxel indices"

    def static_frames(self) -> StaticFrames:
        """The frames of :meth:`to_html`: the slices of :meth:`frame_indices`, starting near the middle."""
        ks = self.frame_indices()
        n = self.volumes[0].shape[self.axis]
        return StaticFrames(
            pngs=[self.frame_png(k, colours=_PNG_COLOURS) for k in ks],
            captions=[f"slice {k} / {n} (axis {self.axis})" for k in ks], keys=ks, names=["z"],
            start=int(np.argmin([abs(k - n // 2) for k in ks])), aria="slice index",
            alt="slice browser: " + ", ".join(self.titles), note=self._orientation(self.axis),
            header=_header(self.title),
        )

    def widget(self) -> Any:
        """Live ipywidgets view: slice slider, axis choice, window/level sliders, label toggle.

        Frames are rendered with matplotlib (Agg) into an ``ipywidgets.Image`` on every change; needs a
        kernel to respond.

        :return: an ``ipywidgets.VBox``.
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
        parts = [widgets.HTML(f"<b>{html.escape(self.title)}</b>")] if self.title else []
        return widgets.VBox([*parts, controls, caption, image])


def slice_browser(*volumes: Any, labels: Any = None, titles: Sequence[str] | None = None, axis: int = 2,
                  window: float | None = None, level: float | None = None, cmap: str = "gray",
                  mode: str = "auto", max_frames: int | None = None, contour: bool = True,
                  spacing: Sequence[float] | None = None, title: str = "") -> SliceBrowser:
    """Browse slices of one or more volumes side by side.

    Display rule (``mode``):

    - ``"static"``: a self-contained HTML + JS slider over pre-rendered PNG frames. It needs no kernel and
      no network, so it works in the built book, in nbval and in any notebook front end.
    - ``"widget"``: the live ipywidgets view (:meth:`SliceBrowser.widget`); needs a running kernel.
    - ``"auto"`` (default): the environment variable ``TUTORIALREG_WIDGETS`` (read by
      :func:`tutorialreg.runtime.widget_mode`) decides first: ``static`` (set by the book build and CI, so
      that published pages get the static slider) gives ``"static"``. Otherwise, inside any IPython kernel
      (Jupyter, JupyterLab, VS Code, Colab) with ipywidgets importable: ``"widget"``; outside a kernel or
      without ipywidgets: ``"static"``. ``TUTORIALREG_WIDGETS=widget`` forces the live view: in a kernel
      without ipywidgets it raises ImportError instead of falling back.

    Either way ``browser.widget()`` and ``browser.to_html()`` give the other view explicitly.

    :param volumes: arrays ``[d1, d2, d3]`` (or ``[1, d1, d2, d3]``), all the same size along ``axis``.
    :param labels: None, one label shared by all volumes, or a list with one per volume (entries may be
        None), each ``[d1, d2, d3]`` or ``[d1, d2, d3, c]``; channels are drawn in :data:`OKABE_ITO` colours
        as 0.5 outlines (``contour=False``: translucent fills).
    :param window: one intensity window for all panels (default from the 1st-99th percentile of all
        volumes); ``level`` its centre.
    :param max_frames: the static browser keeps at most this many evenly spaced slices (default 40).
    :param spacing: voxel sizes ``(s1, s2, s3)``, for the aspect ratio.
    :param title: shown above the view (e.g. a figure number and caption).
    :return: a :class:`SliceBrowser`.
    """
    vols, axis = volumes_along(volumes, axis, "slice_browser")
    titles = titles_for(titles, len(vols), "slice_browser")
    labs = labels_per_volume(labels, vols, "slice_browser")
    window, level = intensity_range(vols, window, level)
    max_frames = _DEFAULT_MAX_FRAMES if max_frames is None else int(max_frames)
    if max_frames < 1:
        raise ValueError(f"slice_browser: max_frames must be >= 1; got {max_frames}")
    mode = _common.resolve_mode(mode, "slice_browser")
    return SliceBrowser(vols, labs, titles, axis, window, level, cmap, mode, max_frames, contour, spacing,
                        str(title))


# ----------------------------------------------------------------------------------------------------------
# parameter viewer
# ----------------------------------------------------------------------------------------------------------
class FrameSlider(_FrameView):
    """A slider over precomputed result images, one per parameter value; made by :func:`frame_slider`.

    Attributes: ``pngs`` (PNG bytes per frame), ``labels`` (one caption per frame), ``title``,
    ``param_name``, ``mode``. The static view's root element has the class ``tutorialreg-frame-slider``;
    ``#<id>=N`` in the page URL selects frame N.
    """

    CSS_CLASS = "tutorialreg-frame-slider"
    ID_PREFIX = "tr-fs-"

    def __init__(self, pngs: Sequence[bytes], labels: Sequence[str], title: str, param_name: str,
                 mode: str) -> None:
        super().__init__(mode)
        self.pngs = list(pngs)
        self.labels = list(labels)
        self.title = title
        self.param_name = param_name

    def __repr__(self) -> str:
        return f"FrameSlider({len(self.pngs)} frames of {self.param_name!r}, mode={self.mode!r})"

    def static_frames(self) -> StaticFrames:
        """The frames of :meth:`to_html`, starting at the first."""
        return StaticFrames(
            pngs=self.pngs, captions=self.labels, keys=list(range(len(self.pngs))), names=[], start=0,
            aria=self.param_name, alt=f"{self.title or 'results'}: one image per {self.param_name}",
            note=f"{len(self.pngs)} precomputed results: drag the slider or use the arrow keys to change "
                 f"the {self.param_name}", header=_header(self.title),
        )

    def widget(self) -> Any:
        """Live ipywidgets view: a slider over the frames, the frame's label and its image.

        :return: an ``ipywidgets.VBox``.
        """
        import ipywidgets as widgets

        slider = widgets.IntSlider(value=0, min=0, max=len(self.pngs) - 1, description=self.param_name,
                                   readout=False, continuous_update=True,
                                   style={"description_width": "initial"})
        caption = widgets.HTML(html.escape(self.labels[0]))
        image = widgets.Image(value=self.pngs[0], format="png")

        def show(_: Any = None) -> None:
            image.value = self.pngs[slider.value]
            caption.value = html.escape(self.labels[slider.value])

        slider.observe(show, names="value")
        parts = [widgets.HTML(f"<b>{html.escape(self.title)}</b>")] if self.title else []
        return widgets.VBox([*parts, widgets.HBox([slider, caption]), image])


def _frame_png(frame: Any, i: int, colours: int | None) -> bytes:
    """PNG bytes of one frame: a Figure rendered with Agg at its own dpi (then closed in pyplot; a palette
    PNG of ``colours`` colours when given), or PNG bytes checked by their signature."""
    if isinstance(frame, Figure):
        png = png_bytes(frame, colours)
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close(frame)  # not shown a second time below the slider
        return png
    if isinstance(frame, (bytes, bytearray, memoryview)) and bytes(frame[:8]) == _PNG_SIGNATURE:
        return bytes(frame)
    raise ValueError(f"frame_slider: frame {i} must be a matplotlib Figure or PNG bytes; "
                     f"got {type(frame).__name__}" + (" (not a PNG)" if isinstance(frame, bytes) else ""))


def frame_slider(frames: Sequence[Any], labels: Sequence[str], title: str = "", param_name: str = "parameter",
                 mode: str = "auto", colours: int | None = _PNG_COLOURS) -> FrameSlider:
    """A slider over precomputed results, e.g. one figure per regularisation weight.

    The display rule (``mode``) is that of :func:`slice_browser`: a static HTML + JS slider over base64
    PNG frames (works in the built book without a kernel) or a live ipywidgets slider in a kernel.

    :param frames: matplotlib Figures (rendered once at their own dpi, then closed in pyplot so a
        notebook does not also show them) or PNG bytes, one per parameter value.
    :param labels: one caption per frame, e.g. ``"weight 0.3: Dice 0.78, folding 0.1 %"``.
    :param title: shown above the image.
    :param param_name: what the slider changes (its label).
    :param colours: Figures become palette PNGs of this many colours (a page stays small); None keeps RGB.
    :return: a :class:`FrameSlider`.
    """
    frames, labels = list(frames), [str(t) for t in labels]
    if not frames:
        raise ValueError("frame_slider: frames must hold at least one Figure or PNG")
    if len(labels) != len(frames):
        raise ValueError(f"frame_slider: labels must have one entry per frame ({len(frames)}); "
                         f"got {len(labels)}")
    mode = _common.resolve_mode(mode, "frame_slider")
    pngs = [_frame_png(f, i, colours) for i, f in enumerate(frames)]
    return FrameSlider(pngs, labels, str(title), str(param_name), mode)
