"""Figures of a network's training and evaluation: history, paired before/after scores, prediction rows."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from tutorialreg.checks import check_finite
from tutorialreg.viz._common import GREY, OKABE_ITO, as_series, new_axes
from tutorialreg.viz.plots import difference, draw_losses, draw_secondary, label_comparison

#: The history key drawn on the right-hand axis of :func:`plot_training_history`.
DICE_KEY = "val_dice"
_NOT_PLOTTED = ("seconds",)  # history keys that are neither loss terms nor Dice

#: Styles of :func:`plot_before_after`: improved (or equal) pairs, and pairs that got worse.
BETTER_STYLE: dict[str, Any] = {"color": GREY, "ls": "-", "linewidth": 1.0}
WORSE_STYLE: dict[str, Any] = {"color": OKABE_ITO[5], "ls": "--", "linewidth": 2.0}


def plot_training_history(history: Mapping[str, Sequence[float]], ax: Axes | None = None,
                          title: str = "training history") -> Axes:
    """Loss terms per epoch on the left axis, validation Dice on its own right-hand axis.

    :param history: a training history: per-epoch lists, ``loss`` (the total) and one list per loss term
        (e.g. ``label``, ``regularization``, ``image``), optionally ``val_dice`` and ``seconds`` (not drawn).
        Value ``i`` of a list belongs to epoch ``i + 1``.
    :param ax: Axes for the loss terms (None: a new pyplot figure); the Dice axis is its twin.
    :param title: the plot's title.
    :return: the loss Axes (log y when every loss value is > 0). The Dice axis (linear, right-hand) is the
        other Axes of ``ax.figure`` sharing its x axis; one legend below the plot lists both.
    """
    if not isinstance(history, Mapping):
        raise ValueError(f"plot_training_history: history must be a dict of per-epoch lists, "
                         f"got {type(history).__name__}")
    series = {str(k): as_series(v, f"plot_training_history: history[{k!r}]") for k, v in history.items()
              if k not in _NOT_PLOTTED}
    losses = {k: (np.arange(1, len(v) + 1), v) for k, v in series.items() if k != DICE_KEY}
    if not any(len(v) for _, v in losses.values()):
        raise ValueError(f"plot_training_history: history holds no loss values (keys {sorted(history)})")
    ax = new_axes(ax, (6.0, 3.6), layout="constrained")
    draw_losses(ax, losses, True, title, "epoch", marker="o", legend=DICE_KEY not in series)
    if DICE_KEY in series:
        dice = series[DICE_KEY]
        draw_secondary(ax, {DICE_KEY: (np.arange(1, len(dice) + 1), dice)}, "validation Dice")
    ax.xaxis.get_major_locator().set_params(integer=True)
    return ax


def _worse(before: np.ndarray, after: np.ndarray, higher_is_better: bool) -> np.ndarray:
    return after < before if higher_is_better else after > before


def _name_positions(y: np.ndarray, gap: float) -> np.ndarray:
    """``y`` nudged apart (in order) so that neighbouring names are at least ``gap`` apart."""
    order = np.argsort(y)
    out = y.astype(np.float64).copy()
    for prev, cur in zip(order[:-1], order[1:], strict=True):
        out[cur] = max(out[cur], out[prev] + gap)
    return out


def plot_before_after(before: Sequence[float], after: Sequence[float], names: Sequence[str] | None = None,
                      ax: Axes | None = None, metric: str = "gland Dice", higher_is_better: bool = True,
                      labels: tuple[str, str] = ("no registration", "network"),
                      title: str | None = None) -> Axes:
    """Paired slope chart: one line per pair from its score before (left) to after (right).

    Pairs that got worse are drawn in Okabe-Ito vermillion, dashed and thicker (:data:`WORSE_STYLE`), and
    named beside their right end; the others thin and grey (:data:`BETTER_STYLE`). The legend sits outside
    the axes, below the condition names, so it never hides a point.

    :param before: ``[n]`` scores before (e.g. without registration).
    :param after: ``[n]`` scores after, same pairs in the same order.
    :param names: ``[n]`` pair names (default ``pair 0``, ``pair 1``, ...).
    :param ax: Axes to draw on (None: a new pyplot figure with room for the legend).
    :param metric: the y axis label (the score's name and unit).
    :param higher_is_better: True for overlaps (Dice), False for distances (a rise is then worse).
    :param labels: names of the two conditions (x tick labels and legend).
    :param title: default ``"<metric> of n pairs: k worse"``.
    :return: the Axes.
    """
    b = check_finite(as_series(before, "plot_before_after: before"), "plot_before_after: before")
    a = check_finite(as_series(after, "plot_before_after: after"), "plot_before_after: after")
    if len(a) != len(b) or not len(a):
        raise ValueError(f"plot_before_after: before and after must hold the same number (>= 1) of scores, "
                         f"one per pair; got {len(b)} and {len(a)}")
    names = [f"pair {i}" for i in range(len(a))] if names is None else [str(n) for n in names]
    if len(names) != len(a):
        raise ValueError(f"plot_before_after: names must have one entry per pair ({len(a)}); "
                         f"got {len(names)}")
    if len(labels) != 2:
        raise ValueError(f"plot_before_after: labels must be two names (before, after); got {labels!r}")
    worse = _worse(b, a, higher_is_better)
    ax = new_axes(ax, (6.0, 4.0), layout="constrained")
    for bi, ai, bad in zip(b, a, worse, strict=True):
        ax.plot([0, 1], [bi, ai], zorder=3 if bad else 2, **(WORSE_STYLE if bad else BETTER_STYLE))
    ax.plot(np.zeros_like(b), b, "o", color=OKABE_ITO[1], ms=6, zorder=4, label=labels[0])
    ax.plot(np.ones_like(a), a, "o", color=OKABE_ITO[2], ms=6, zorder=4, label=labels[1])
    span = float(np.ptp(np.concatenate([a, b]))) or 1.0
    idx = np.flatnonzero(worse)
    for i, y in zip(idx, _name_positions(a[idx], 0.06 * span), strict=True):
        ax.annotate(names[i], (1.0, a[i]), xytext=(1.08, y), color=WORSE_STYLE["color"], va="center",
                    fontsize="small")
    handles = [Line2D([], [], marker="o", ls="", color=OKABE_ITO[1], label=labels[0]),
               Line2D([], [], marker="o", ls="", color=OKABE_ITO[2], label=labels[1]),
               Line2D([], [], **BETTER_STYLE, label="better or equal"),
               Line2D([], [], **WORSE_STYLE, label=f"worse ({len(idx)})")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=2, fontsize="small",
              frameon=False)
    ax.set(xticks=[0, 1], xticklabels=list(labels), xlim=(-0.3, 1.6), ylabel=metric)
    ax.set_title(title if title is not None else f"{metric} of {len(a)} pairs: {len(idx)} worse")
    ax.grid(axis="y", alpha=0.3)
    return ax


_PANEL_KINDS = ("fixed_label", "fixed_image", "moving_label", "moving_image", "pred_fixed_label",
                "pred_fixed_image")
_PANEL_TITLES = ("fixed label", "fixed image", "moving label", "moving image", "warped moving label",
                 "warped moving image", "comparison", "warped - fixed")


def prediction_figure(out_dir: str | os.PathLike, pair: int = 0, label: int = 0,
                      depths: Sequence[int] | None = None, title: str | None = None) -> Figure:
    """The tutorial's 8-panel rows, read from the PNGs that :func:`tutorialreg.train.predict` writes.

    Panels: fixed label, fixed image, moving label, moving image, warped label, warped image, comparison
    (warped vs fixed label: light grey both, orange only warped, blue only fixed; :func:`label_comparison`)
    and warped minus fixed image; one row per depth (slice along axis 2).

    :param out_dir: the prediction folder holding ``pair_<pair>_label_<label>/<kind>/depth<k>_<kind>.png``.
    :param pair: pair index.
    :param label: label channel index.
    :param depths: slice indices along axis 2 (default at 30 %, 50 % and 70 % of the depth).
    :param title: default ``"pair_<pair>_label_<label>: slices along axis 2"``.
    :return: a Figure (no pyplot state).
    :raises FileNotFoundError: naming the folder when that pair and label were not predicted.
    """
    import matplotlib.image as mpimg

    folder = Path(out_dir) / f"pair_{pair}_label_{label}"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} not found: run predict() with this pair and label first")

    def png(kind: str, k: int) -> np.ndarray:
        return mpimg.imread(folder / kind / f"depth{k}_{kind}.png")

    n = len(list((folder / "fixed_image").glob("*.png")))
    depths = list(depths) if depths is not None else [int(round(n * q)) for q in (0.3, 0.5, 0.7)]
    fig = Figure(figsize=(16, 2.2 * len(depths) + 0.6), layout="constrained")
    axes = fig.subplots(len(depths), 8, squeeze=False)
    for row, k in zip(axes, depths, strict=True):
        panels = [png(kind, k) for kind in _PANEL_KINDS]
        for ax, img in zip(row, panels, strict=False):
            ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        row[6].imshow(label_comparison(panels[4], panels[0]), interpolation="nearest")
        difference(panels[5], panels[1], ax=row[7])
        row[7].set(title="", xlabel="", ylabel="")
        row[0].set_ylabel(f"depth {k}")
    for ax, t in zip(axes[0], _PANEL_TITLES, strict=True):
        ax.set_title(t, fontsize=10)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or f"{folder.name}: slices along axis 2")
    return fig
