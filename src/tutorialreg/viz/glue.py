"""Numbers for the book's text, recorded by the run that renders the page.

:func:`glue` records a value under a name in the notebook's outputs, in the format MyST-NB reads
(``{glue:text}`name:.3f``` in a chapter's text pastes it), so every number in the prose comes from the
same execution as the figures. It needs only IPython: a chapter run in Colab or Jupyter records the value
invisibly; outside a kernel it does nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = ["glue"]

#: the mime-type prefix MyST-NB uses for glued values that are not shown where they are recorded
GLUE_PREFIX = "application/papermill.record/"


def glue(name: str, value: Any, display: bool = False) -> None:
    """Record ``value`` under ``name`` for ``{glue:text}`` / ``{glue:}`` in the book (returns nothing, so a
    glue at the end of a cell prints nothing).

    :param display: also show the value where it is recorded (figures, tables).

    Numpy scalars are recorded as Python numbers, so ``{glue:text}`name:.3f``` can format them.
    """
    from IPython import get_ipython

    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()
    if get_ipython() is None:
        return
    from IPython.core.formatters import format_display_data
    from IPython.display import display as show

    bundle, metadata = format_display_data(value)
    prefix = "" if display else GLUE_PREFIX
    metadata["scrapbook"] = {"name": name, "mime_prefix": prefix}
    show({prefix + key: data for key, data in bundle.items()}, raw=True, metadata=metadata)
