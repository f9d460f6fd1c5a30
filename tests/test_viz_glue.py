"""Glued values use MyST-NB's output format, so the book can paste them into its text."""

from __future__ import annotations

import IPython
import IPython.display
import numpy as np

from tutorialreg.viz import glue


def test_glue_records_a_hidden_number_in_myst_nb_format(monkeypatch):
    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: shown.append((a, k)))
    assert glue("dice_after", np.float64(0.8125)) is None
    (bundle,), kwargs = shown[0]
    assert kwargs["raw"] is True
    prefix = "application/papermill.record/"
    assert kwargs["metadata"]["scrapbook"] == {"name": "dice_after", "mime_prefix": prefix}
    assert bundle == {prefix + "text/plain": "0.8125"}  # a Python float, not "np.float64(0.8125)"


def test_glue_with_display_shows_it_and_outside_a_kernel_does_nothing(monkeypatch):
    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: shown.append((a, k)))
    monkeypatch.setattr(IPython, "get_ipython", lambda: None)
    assert glue("x", 3) is None and not shown
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    glue("x", 3, display=True)
    assert shown[0][0][0] == {"text/plain": "3"} and shown[0][1]["metadata"]["scrapbook"]["mime_prefix"] == ""
