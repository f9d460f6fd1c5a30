"""Run-time switches read from the environment, in one place.

Every environment variable the package reads is parsed here and nowhere else:

- ``TUTORIALREG_FAST``: fast mode (fewer steps and epochs, smaller images); :func:`fast_mode`, :func:`pick`.
- ``TUTORIALREG_ALLOW_STANDIN``: offline stand-in lung CT images may be synthesised; :func:`allow_standin`.
- ``TUTORIALREG_MIRROR``: a folder or base URL tried before the upstream data URLs; :func:`mirror`.
- ``TUTORIALREG_DATA_DIR``: the data cache folder; :func:`data_dir_override`.
- ``TUTORIALREG_WIDGETS``: how interactive views are shown; :func:`widget_mode`.

Boolean switches accept ``1/true/yes/on`` and ``0/false/no/off`` (any case); anything else is an error
naming the variable, so a typo never silently means "off".
"""

from __future__ import annotations

import os
from typing import TypeVar

__all__ = [
    "allow_standin",
    "data_dir_override",
    "fast_mode",
    "mirror",
    "mode_banner",
    "pick",
    "widget_mode",
]

T = TypeVar("T")

FAST = "TUTORIALREG_FAST"
ALLOW_STANDIN = "TUTORIALREG_ALLOW_STANDIN"
MIRROR = "TUTORIALREG_MIRROR"
DATA_DIR = "TUTORIALREG_DATA_DIR"
WIDGETS = "TUTORIALREG_WIDGETS"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def _flag(name: str) -> bool:
    """Value of a boolean environment variable; unset or empty is False.

    :raises ValueError: for a value that is neither true nor false.
    """
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={os.environ[name]!r} is not understood: use 1/true/yes/on or 0/false/no/off")


def _text(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def fast_mode() -> bool:
    """True when ``TUTORIALREG_FAST`` is on (CI and quick checks)."""
    return _flag(FAST)


def pick(full: T, fast: T) -> T:
    """``fast`` in fast mode, otherwise ``full`` (e.g. ``steps = pick(3001, 200)``)."""
    return fast if fast_mode() else full


def allow_standin() -> bool:
    """True when ``TUTORIALREG_ALLOW_STANDIN`` permits stand-in lung CT volumes offline."""
    return _flag(ALLOW_STANDIN)


def mirror() -> str | None:
    """``TUTORIALREG_MIRROR`` (a folder, ``file://`` folder or ``http(s)://`` base URL), or None."""
    return _text(MIRROR)


def data_dir_override() -> str | None:
    """``TUTORIALREG_DATA_DIR`` (the data cache folder), or None for the platform's cache folder."""
    return _text(DATA_DIR)


def widget_mode() -> str:
    """How interactive views (slice browser, parameter sliders) are shown: ``"auto"``, ``"static"`` or
    ``"widget"``.

    ``TUTORIALREG_WIDGETS`` unset or ``auto``: live ipywidgets whenever a kernel with ipywidgets runs, a
    static HTML view otherwise. ``0``/``static`` (set by the book build and CI, so that the published pages
    work without a kernel): always static. ``1``/``widget``: always live.
    """
    value = (os.environ.get(WIDGETS) or "auto").strip().lower()
    if value in {"auto", ""}:
        return "auto"
    if value in {"0", "false", "no", "off", "static"}:
        return "static"
    if value in {"1", "true", "yes", "on", "widget", "live"}:
        return "widget"
    raise ValueError(f"{WIDGETS}={os.environ[WIDGETS]!r} is not understood: use auto, static (0) or "
                     "widget (1)")


def mode_banner() -> str:
    """One line saying which mode a chapter runs in, for the top of every chapter."""
    if fast_mode():
        return "tutorialreg: FAST mode (TUTORIALREG_FAST=1): fewer steps, smaller images than full settings."
    return "tutorialreg: full settings (set TUTORIALREG_FAST=1 for a quick run)."
