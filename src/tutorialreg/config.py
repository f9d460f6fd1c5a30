"""Run-time settings read from the environment, in one place.

`TUTORIALREG_FAST=1` is the single fast-mode switch: chapters, benchmarks and tests call
:func:`fast_mode` (or :func:`pick`) to scale iterations, epochs and image sizes.
"""

from __future__ import annotations

import os
from typing import TypeVar

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def fast_mode() -> bool:
    """True when ``TUTORIALREG_FAST`` is set to 1/true/yes/on (CI and quick checks)."""
    return _flag("TUTORIALREG_FAST")


def pick(full: T, fast: T) -> T:
    """Return ``fast`` in fast mode, otherwise ``full`` (e.g. ``steps = pick(3001, 200)``)."""
    return fast if fast_mode() else full


def allow_standin() -> bool:
    """True when ``TUTORIALREG_ALLOW_STANDIN`` permits stand-in lung CT volumes offline."""
    return _flag("TUTORIALREG_ALLOW_STANDIN")


def mode_banner() -> str:
    """One line saying which mode a chapter runs in, for the top of every chapter."""
    if fast_mode():
        return "tutorialreg: FAST mode (TUTORIALREG_FAST=1): fewer steps, smaller images than full settings."
    return "tutorialreg: full settings (set TUTORIALREG_FAST=1 for a quick run)."
