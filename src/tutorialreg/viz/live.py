"""The live loss plot: a callback (see :mod:`tutorialreg.callbacks`) that draws curves as an engine runs."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from tutorialreg.viz import _common
from tutorialreg.viz.plots import draw_losses, draw_secondary


class LiveLossPlot:
    """Loss curves that redraw while an optimisation or a training runs; a callback for the engines.

    The engine calls :meth:`on_step` as it goes and :meth:`close` once at the end. Inside an IPython kernel
    (Jupyter, Colab, nbval, the book build) the plot is rendered to a PNG and shown as exactly ONE notebook
    output: the first draw creates it, later draws (every ``every`` calls, at least ``min_interval_s``
    seconds apart) and :meth:`close` (the final curves) update it in place; if nothing was drawn before
    (fewer calls than ``every``), :meth:`close` shows it once. Outside a kernel nothing is drawn: the values
    are only recorded, and :meth:`figure` draws them on demand.

    :param every: redraw every ``every`` calls of :meth:`on_step`.
    :param log: log y axis for the loss terms when all are > 0.
    :param title: the plot's title.
    :param min_interval_s: at least this many seconds between redraws (the final draw is never skipped).
    :param figsize: figure size in inches.
    :param xlabel: the engine's step axis, e.g. ``"step"`` (optimisation) or ``"epoch"`` (training).
    :param secondary: names of terms drawn on a second, right-hand, linear y axis (e.g. ``("val_dice",)``);
        all other terms go on the loss axis.
    :param secondary_label: the right-hand axis label.
    :param terms: names of the terms to record and draw (default: all the engine reports), e.g. ``("ssd",)``
        when the total equals the one loss term.
    """

    def __init__(self, every: int = 10, log: bool = True, title: str = "loss curves",
                 min_interval_s: float = 1.0, figsize: tuple[float, float] = (5.0, 3.2), xlabel: str = "step",
                 secondary: Sequence[str] = (), secondary_label: str = "validation Dice",
                 terms: Sequence[str] | None = None) -> None:
        if isinstance(every, bool) or int(every) != every or every < 1:
            raise ValueError(f"LiveLossPlot: every must be an integer >= 1; got {every!r}")
        if isinstance(secondary, str) or not all(isinstance(s, str) for s in secondary):
            raise ValueError(f"LiveLossPlot: secondary must be a sequence of term names, e.g. ('val_dice',); "
                             f"got {secondary!r}")
        self.every = int(every)
        self.log = log
        self.title = title
        self.min_interval_s = float(min_interval_s)
        self.figsize = figsize
        self.xlabel = xlabel
        self.secondary = tuple(secondary)
        self.secondary_label = secondary_label
        self.terms = None if terms is None else tuple(terms)
        self.steps: dict[str, list[float]] = {}
        self.values: dict[str, list[float]] = {}
        self.live = _common.in_kernel()
        self._calls = 0
        self._last_draw = -np.inf
        self._display_id: str | None = None  # set once the one notebook output exists

    @property
    def history(self) -> dict[str, list[float]]:
        """``{name: values}`` recorded so far (steps in :attr:`steps`)."""
        return {k: list(v) for k, v in self.values.items()}

    def on_step(self, step: float, terms: Mapping[str, float]) -> None:
        """Record ``terms`` (name to value: floats, numpy or 0-d tensor scalars) at ``step``; maybe redraw."""
        for name, value in terms.items():
            if self.terms is not None and name not in self.terms:
                continue
            self.steps.setdefault(name, []).append(float(step))
            self.values.setdefault(name, []).append(float(np.asarray(value)))
        self._calls += 1
        due = self._calls % self.every == 0 and time.monotonic() - self._last_draw >= self.min_interval_s
        if self.live and due:
            self._show()

    def close(self) -> None:
        """Draw the final curves into the one output (in a kernel); outside a kernel this does nothing."""
        if self.live and self.values:
            self._show()

    def figure(self) -> Figure:
        """A new Figure (not managed by pyplot) of the curves recorded so far."""
        fig = Figure(figsize=self.figsize, layout="constrained")
        ax = fig.add_subplot()
        main = {k: (self.steps[k], v) for k, v in self.values.items() if k not in self.secondary}
        draw_losses(ax, main, self.log, self.title, self.xlabel)
        extra = {k: (self.steps[k], self.values[k]) for k in self.secondary if k in self.values}
        if extra:
            draw_secondary(ax, extra, self.secondary_label)
        return fig

    def _show(self) -> None:
        """Create the one display output, or update it."""
        from IPython.display import Image, display, update_display

        img = Image(data=_common.png_bytes(self.figure(), None), format="png")
        if self._display_id is None:
            self._display_id = "tr-live-" + uuid.uuid4().hex[:12]
            display(img, display_id=self._display_id)
        else:
            update_display(img, display_id=self._display_id)
        self._last_draw = time.monotonic()
