"""Setup shared by the ``tests/test_viz*.py`` modules (it holds no tests itself).

Importing it selects matplotlib's headless Agg backend; each test module imports :func:`close_figures`
(autouse) so that no pyplot figure outlives its test.
"""

from __future__ import annotations

from typing import Any

import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def widget_tree(widget: Any) -> list[Any]:
    """An ipywidgets widget and all its descendants, depth first."""
    out = [widget]
    for child in getattr(widget, "children", ()):
        out.extend(widget_tree(child))
    return out


@pytest.fixture(autouse=True)
def close_figures():
    """Close every pyplot figure after the test."""
    yield
    plt.close("all")
