"""Progress reporting: the one interface through which the engines (optimisation, training) report.

An engine takes ``callbacks=[...]``: objects with ``on_step(step, terms)``, called as the engine goes
(``step`` a number on the engine's own axis: an optimisation step, or a fractional epoch in training;
``terms`` a dict of named float values: loss terms, or validation metrics), and ``close()``, called once
when the engine stops for any reason. Engines never draw: a live plot
(:class:`tutorialreg.viz.LiveLossPlot`) is one such callback, passed in by the caller, as is
:class:`Recorder` below, and the progress bar the engines show with ``progress=True``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol, runtime_checkable

__all__ = ["Callback", "ProgressBar", "Recorder", "close_all", "check_callbacks", "notify"]


@runtime_checkable
class Callback(Protocol):
    """What an engine calls: ``on_step(step, terms)`` as it goes, ``close()`` once at the end."""

    def on_step(self, step: float, terms: Mapping[str, float]) -> None: ...

    def close(self) -> None: ...


def check_callbacks(callbacks: Iterable[Callback] | None) -> list[Callback]:
    """The callbacks as a list; ValueError naming any object that lacks ``on_step`` or ``close``."""
    out = list(callbacks or ())
    for cb in out:
        if not (callable(getattr(cb, "on_step", None)) and callable(getattr(cb, "close", None))):
            raise ValueError(f"callbacks must have on_step(step, terms) and close() methods, e.g. "
                             f"tutorialreg.viz.LiveLossPlot(); got {cb!r}")
    return out


def notify(callbacks: Iterable[Callback], step: float, terms: Mapping[str, float]) -> None:
    """Call ``on_step(step, terms)`` on every callback."""
    for cb in callbacks:
        cb.on_step(step, terms)


def close_all(callbacks: Iterable[Callback]) -> None:
    """Call ``close()`` on every callback, even when one of them raises (the first error is re-raised)."""
    error = None
    for cb in callbacks:
        try:
            cb.close()
        except Exception as err:  # noqa: BLE001 - close the others first
            error = error or err
    if error is not None:
        raise error


class Recorder:
    """A callback that keeps everything it is told: ``steps[name]`` and ``values[name]`` lists."""

    def __init__(self) -> None:
        self.steps: dict[str, list[float]] = {}
        self.values: dict[str, list[float]] = {}
        self.closed = False

    def on_step(self, step: float, terms: Mapping[str, float]) -> None:
        for name, value in terms.items():
            self.steps.setdefault(name, []).append(float(step))
            self.values.setdefault(name, []).append(float(value))

    def close(self) -> None:
        self.closed = True


class ProgressBar:
    """A tqdm progress bar driven as a callback; ``step`` counts completed units (steps or epochs).

    :param total: number of units expected (the bar's length).
    :param desc: the bar's label; ``unit``: its unit; ``show``: terms shown after the bar (default all).
    """

    def __init__(self, total: float, desc: str, unit: str = "step", initial: float = 0,
                 show: Iterable[str] | None = None) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, leave=True)
        self._show = None if show is None else set(show)
        self._postfix: dict[str, str] = {}

    def on_step(self, step: float, terms: Mapping[str, float]) -> None:
        advance = float(step) - self._bar.n
        if advance > 0:
            self._bar.update(int(advance) if float(advance).is_integer() else advance)
        for name, value in terms.items():
            if self._show is None or name in self._show:
                self._postfix[name] = f"{value:.4g}"
        self._bar.set_postfix(self._postfix, refresh=False)

    def shorten(self, by: float) -> None:
        """Take ``by`` units off the expected total (a stage ended early)."""
        self._bar.total -= by
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()
