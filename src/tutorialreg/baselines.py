"""Classical registrations to compare a network with, on the same pairs (chapters 6 and 6b).

Each function registers one pair with the optimiser of chapters 4 and 5 and returns a :class:`Registered`:
the DDF on the fixed grid and the CPU seconds it took.

- :func:`nonrigid`: chapter 5's optimiser on the two images (same modality: e.g. SSD).
- :func:`label_free`: what a classical method can do with two images of different modalities: an affine
  with mutual information, then a smooth nonrigid velocity field with mutual information and bending energy.
- :func:`label_driven`: the same optimiser driven by the pair's own labels (smoothed gland and landmark
  maps compared by SSD): an upper bound that needs labels at test time, which no user of a registration
  has; it shows what the deformation model can represent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from tutorialreg import warp
from tutorialreg.evaluate import Comparison, pair_scores
from tutorialreg.optimise import AFFINE_RECOMMENDED, NONRIGID_RECOMMENDED, register_affine, register_ddf

__all__ = ["LABEL_DRIVEN", "LABEL_FREE_AFFINE", "LABEL_FREE_NONRIGID", "Registered", "compare",
           "label_driven", "label_free", "label_map", "nonrigid"]

#: Affine stage of :func:`label_free`: chapter 4's settings with mutual information instead of SSD.
LABEL_FREE_AFFINE = AFFINE_RECOMMENDED.replace(loss="gmi", levels=(2, 1), smoothing=(1.0, 0.0),
                                               learning_rate=(0.02, 0.01), steps=(150, 100))
#: Nonrigid stage of :func:`label_free`: chapter 5's velocity field with mutual information.
LABEL_FREE_NONRIGID = NONRIGID_RECOMMENDED.replace(image_loss="gmi", levels=(4, 2), steps=(150, 150))
#: :func:`label_driven`: chapter 5's velocity field, SSD between label maps, deformation weight 0.5.
LABEL_DRIVEN = NONRIGID_RECOMMENDED.replace(image_loss="ssd", deform_weight=0.5, levels=(4, 2),
                                            steps=(150, 150))


@dataclass(frozen=True)
class Registered:
    """A registration of one pair: ``ddf`` ``[1, d1, d2, d3, 3]`` (voxels) and the CPU ``seconds`` it took,
    one-time compilation excluded (as the network's time excludes building its graph)."""

    ddf: np.ndarray
    seconds: float


def label_map(label: np.ndarray, sigma: float = 1.0, landmark_weight: float = 2.0) -> np.ndarray:
    """One image from a pair's labels ``[d1, d2, d3, c]``: the smoothed gland (channel 0) plus
    ``landmark_weight`` times each smoothed landmark (channels >= 1), Gaussian ``sigma`` in voxels."""
    label = np.asarray(label, np.float32)
    weights = np.array([1.0] + [landmark_weight] * (label.shape[-1] - 1), np.float32)
    smooth = np.stack([ndimage.gaussian_filter(label[..., c], sigma) for c in range(label.shape[-1])], -1)
    return (smooth * weights).sum(-1)


def label_free(moving_image, fixed_image, affine=LABEL_FREE_AFFINE, nonrigid=LABEL_FREE_NONRIGID,
               seed: int = 0) -> Registered:
    """Affine then nonrigid registration of ``[d1, d2, d3]`` images with mutual information; the DDF is the
    composition of the two (``warp(warp(moving, affine), nonrigid)``)."""
    tic = time.perf_counter()
    first = register_affine(moving_image, fixed_image, affine, progress=False)
    second = register_ddf(first.warped, fixed_image, nonrigid, seed=seed, progress=False)
    ddf = warp.compose(first.ddf, second.ddf).numpy()
    return Registered(ddf, time.perf_counter() - tic - first.compile_time - second.compile_time)


def nonrigid(moving_image, fixed_image, settings, seed: int = 0) -> Registered:
    """Chapter 5's optimiser (``register_ddf`` with ``settings``) on one pair of ``[d1, d2, d3]`` images."""
    tic = time.perf_counter()
    result = register_ddf(moving_image, fixed_image, settings, seed=seed, progress=False)
    return Registered(result.ddf, time.perf_counter() - tic - result.compile_time)


def label_driven(moving_label, fixed_label, settings=LABEL_DRIVEN, seed: int = 0) -> Registered:
    """Nonrigid registration of the label maps (:func:`label_map`) of ``[d1, d2, d3, c]`` labels; zero-padded
    channels a pair lacks stay zero and so do not pull."""
    tic = time.perf_counter()
    done = nonrigid(label_map(moving_label), label_map(fixed_label), settings, seed)
    return Registered(done.ddf, time.perf_counter() - tic)


Method = Callable[[Mapping], "Registered | None"]


def compare(pairs: Sequence[Mapping], methods: Mapping[str, Method], comparison: Comparison | None = None,
            notes: Mapping[str, str] | None = None) -> Comparison:
    """Score every method on every pair: the one loop behind the book's old-versus-new tables.

    :param pairs: dicts with ``moving_label``, ``fixed_label`` ``[d1, d2, d3, c]`` (and whatever the methods
        read, e.g. images), ``spacing`` (mm) and optionally ``label_mask`` ``[c]``.
    :param methods: ``{name: method(pair) -> Registered or None}``; None means "no registration" (the
        moving label as it is).
    :param comparison: a :class:`~tutorialreg.evaluate.Comparison` to add to (default: a new one).
    :param notes: ``{name: note}`` shown under the table (e.g. which method needs labels at test time).
    """
    comparison = comparison if comparison is not None else Comparison()
    for name, method in methods.items():
        for pair in pairs:
            done = method(pair)
            if done is None:
                warped, ddf, seconds = pair["moving_label"], None, 0.0
            else:
                warped = warp.warp(np.asarray(pair["moving_label"])[None], done.ddf).numpy()[0]
                ddf, seconds = done.ddf, done.seconds
            row = pair_scores(warped, pair["fixed_label"], ddf, pair.get("spacing", (1.0, 1.0, 1.0)), seconds,
                              pair.get("label_mask"))
            comparison.add(name, row, (notes or {}).get(name))
    return comparison
