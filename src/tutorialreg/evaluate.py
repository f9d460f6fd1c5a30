"""Scoring a registered pair the same way for every method, and tables of methods compared on the same pairs.

Label channel 0 is the main structure (a gland, a lung); channels 1 and up, when present, are small
landmarks scored by the distance between their centroids. Distances are in mm when the voxel ``spacing``
is given (voxels otherwise); folding is the share of voxels with ``det J <= 0``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from tutorialreg import metrics

__all__ = ["Comparison", "label_scores", "pair_scores", "shared_labels"]


def label_scores(warped_label, fixed_label, spacing=(1.0, 1.0, 1.0)) -> dict[str, np.ndarray]:
    """Per-channel ``dice``, ``hd95`` and ``centroid`` distance (``spacing`` units) of ``[d1, d2, d3, c]``
    labels, both thresholded at 0.5; distances are NaN where a label is empty."""
    return {"dice": np.atleast_1d(metrics.dice(warped_label, fixed_label)),
            "hd95": np.atleast_1d(metrics.hausdorff95(warped_label, fixed_label, spacing)),
            "centroid": np.atleast_1d(metrics.centroid_distance(warped_label, fixed_label, spacing))}


def pair_scores(warped_label, fixed_label, ddf, spacing=(1.0, 1.0, 1.0), seconds: float = float("nan"),
                mask=None) -> dict[str, float]:
    """One row of a comparison table for one registered pair.

    :param warped_label: ``[d1, d2, d3, c]`` moving labels warped onto the fixed grid; ``fixed_label`` alike.
    :param ddf: ``[d1, d2, d3, 3]`` (or with a batch of 1) the field that warped them, voxels; None for
        "no registration" (no folding to measure).
    :param mask: ``[c]``, 1 for the channels the pair really has (default all).
    :return: ``dice``, ``hd95`` (channel 0), ``landmark`` (mean centroid distance of channels >= 1),
        ``landmarks`` (their number), ``vanished`` (landmarks whose warped label is empty, so unmeasurable),
        ``folding`` (%), ``log_jac_std``, ``seconds``.
    """
    scores = label_scores(warped_label, fixed_label, spacing)
    mask = np.ones(len(scores["dice"]), bool) if mask is None else np.asarray(mask) > 0
    marks = scores["centroid"][1:][mask[1:]]
    row = {"dice": float(scores["dice"][0]), "hd95": float(scores["hd95"][0]),
           "landmark": float(np.nanmean(marks)) if np.isfinite(marks).any() else float("nan"),
           "landmarks": int(mask[1:].sum()), "vanished": int(np.isnan(marks).sum()),
           "seconds": float(seconds), "folding": 0.0, "log_jac_std": 0.0}
    if ddf is not None:
        row["folding"] = 100.0 * metrics.folding_fraction(ddf)
        row["log_jac_std"] = metrics.log_jacobian_std(ddf)
    row["_landmark_distances"] = marks.tolist()
    return row


COLUMNS = (("dice", "gland Dice", "{:.3f}"), ("hd95", "HD95 mm", "{:.1f}"),
           ("landmark", "landmarks mm", "{:.1f}"), ("folding", "folding %", "{:.3f}"),
           ("log_jac_std", "sd log|J|", "{:.3f}"), ("seconds", "s/pair", "{:.2f}"))


def shared_labels(pairs: Sequence[Mapping], reference: Sequence[Mapping], key: str = "moving_label",
                  channel: int = 0) -> np.ndarray:
    """Which ``pairs`` have a label identical to one of the ``reference`` pairs' (e.g. test pairs whose MR
    gland outline also occurs in a training pair: a data set can reuse one outline with different images).

    :param pairs, reference: dicts with ``key`` ``[d1, d2, d3, c]`` arrays on one grid, compared after
        thresholding channel ``channel`` at 0.5.
    :return: bool ``[len(pairs)]``.
    """
    def digest(p: Mapping) -> bytes:
        mask = np.asarray(p[key])[..., channel] > 0.5
        return repr(mask.shape).encode() + np.packbits(mask).tobytes()

    known = {digest(p) for p in reference}
    return np.array([digest(p) in known for p in pairs], bool)


@dataclass
class Comparison:
    """Methods scored on the same pairs: ``rows[method]`` is one :func:`pair_scores` dict per pair.

    ``summary(method)`` gives the mean of each column over pairs, except ``landmark``: the mean over every
    landmark of every pair (pairs hold different numbers of landmarks), ``seconds``: the median over pairs,
    and ``vanished`` and ``landmarks``: totals. ``structure`` names label channel 0 in the table.
    """

    rows: dict[str, list[dict]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    structure: str = "gland"

    def add(self, method: str, row: Mapping, note: str | None = None) -> None:
        self.rows.setdefault(method, []).append(dict(row))
        if note:
            self.notes[method] = note

    def values(self, method: str, key: str) -> np.ndarray:
        """One column of a method over its pairs."""
        return np.array([r[key] for r in self.rows[method]], dtype=float)

    def summary(self, method: str) -> dict[str, float]:
        rows = self.rows[method]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column gives NaN: the answer
            out = {key: float(np.nanmean(self.values(method, key))) for key, _, _ in COLUMNS}
            marks = [d for r in rows for d in r.get("_landmark_distances", [])]
            out["landmark"] = float(np.nanmean(marks)) if np.isfinite(marks).any() else float("nan")
        out["seconds"] = float(np.median(self.values(method, "seconds")))  # a typical pair
        out["vanished"] = int(sum(r["vanished"] for r in rows))
        out["landmarks"] = int(sum(r["landmarks"] for r in rows))
        out["pairs"] = len(rows)
        return out

    def table(self, methods: Sequence[str] | None = None) -> str:
        """A plain-text table of the summaries, one line per method (notes marked with *); the landmark
        column only when there are landmarks."""
        methods = list(self.rows) if methods is None else list(methods)
        summaries = {m: self.summary(m) for m in methods}
        columns = [(k, title.replace("gland", self.structure), fmt) for k, title, fmt in COLUMNS
                   if k != "landmark" or any(s["landmarks"] for s in summaries.values())]
        width = max(len(m) + (2 if m in self.notes else 0) for m in methods)
        lines = [f"{'method':{width}s} " + " ".join(f"{title:>12s}" for _, title, _ in columns)]
        for m in methods:
            name = m + (" *" if m in self.notes else "")
            lines.append(f"{name:{width}s} " + " ".join(f"{fmt.format(summaries[m][k]):>12s}"
                                                         for k, _, fmt in columns))
        lines += [f"* {m}: {note}" for m, note in self.notes.items() if m in methods]
        return "\n".join(lines)
