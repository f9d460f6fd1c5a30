"""Preloaded pair arrays and their seeded numpy batches (the one batcher of training and evaluation)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from tutorialreg.checks import number, shape3

if TYPE_CHECKING:
    from tutorialreg.data.paired import PairedDataset

__all__ = ["PairArrays", "preload_bytes"]

FLOAT32_BYTES = 4
_LAST_COLUMN = np.array([[0.0], [0.0], [0.0], [1.0]])  # [4, 1]: an affine [4, 3] as a 4x4 matrix


def preload_bytes(n_pairs: int, image_shape: Sequence[int], label_channels: int) -> int:
    """Memory (bytes) that :class:`PairArrays` takes to preload ``n_pairs`` pairs.

    :param image_shape: ``(d1, d2, d3)`` working grid of both volumes.
    :param label_channels: ``C`` (0 without labels).
    :return: float32 moving and fixed images ``[d1,d2,d3]``, labels ``[d1,d2,d3,C]`` and masks ``[C]``.
    """
    n = int(number(n_pairs, "n_pairs", low=0, integer=True))
    c = int(number(label_channels, "label_channels", low=0, integer=True))
    voxels = math.prod(shape3(image_shape, "image_shape"))
    return FLOAT32_BYTES * n * (2 * voxels * (1 + c) + c)


def _padded(item: dict, channels: int) -> dict:
    """Arrays of one loaded pair with labels cut / zero-padded to ``channels`` and their ``label_mask``."""
    out = {"moving_image": item["moving_image"], "fixed_image": item["fixed_image"]}
    if channels:
        mask = np.zeros(channels, np.float32)
        for side in ("moving", "fixed"):
            label = item[f"{side}_label"][..., :channels]
            n = label.shape[-1]
            mask[:n] = 1.0
            if n < channels:
                label = np.pad(label, [(0, 0)] * 3 + [(0, channels - n)])
            out[f"{side}_label"] = label
        out["label_mask"] = mask
    return out


class PairArrays:
    """Every pair of a :class:`PairedDataset` preloaded as float32 arrays, with seeded batches.

    :param dataset: the pairs (all on one grid: set ``image_shape``).
    :param label_channels: ``C``, the label channel count of every item (labels are cut or zero-padded to
        it); default: the most any pair has.
    :raises ValueError: when there are no pairs, or the pairs' shapes differ (naming both pairs).

    Attributes: ``names``, ``labeled``, ``is_standin``, ``channels`` (``C``, 0 without labels).
    """

    def __init__(self, dataset: PairedDataset, label_channels: int | None = None):
        if label_channels is not None:
            label_channels = int(number(label_channels, "label_channels", low=1, integer=True))
        self.names = list(dataset.names)
        self.labeled = bool(dataset.labeled)
        self.is_standin = bool(getattr(dataset, "is_standin", False))
        if not self.names:
            raise ValueError(f"no pairs in {dataset.root}")
        load = getattr(dataset, "load", dataset.__getitem__)  # PairedDataset.load: no second cached copy
        loaded = [load(i) for i in range(len(self.names))]
        self.channels = 0
        if self.labeled:
            self.channels = label_channels or max(it["fixed_label"].shape[-1] for it in loaded)
        for i, it in enumerate(loaded):  # one pair at a time, so unpadded copies are freed as we go
            loaded[i] = _padded(it, self.channels)
        self._items = loaded
        first = self._items[0]
        for name, it in zip(self.names, self._items, strict=True):
            if bad := [k for k, v in it.items() if v.shape != first[k].shape]:
                raise ValueError(
                    f"pair {name!r}: {bad} shapes {[it[k].shape for k in bad]} differ from pair "
                    f"{self.names[0]!r}'s {[first[k].shape for k in bad]}; set the dataset's image_shape"
                )

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes held by the preloaded arrays."""
        return sum(v.nbytes for it in self._items for v in it.values())

    def item(self, i: int) -> dict:
        """Pair ``i``: ``moving_image``, ``fixed_image`` ``[d1,d2,d3]`` float32; when labelled also
        ``moving_label``, ``fixed_label`` ``[d1,d2,d3,C]`` and ``label_mask`` ``[C]`` (1 for channels the
        pair has). The arrays are the preloaded ones: do not modify them in place."""
        return dict(self._items[i])

    def batches(
        self,
        batch_size: int,
        seed: int,
        epoch: int,
        shuffle: bool = True,
        augment_scale: float = 0.0,
        drop_remainder: bool = True,
        augment_rigid: Sequence[float] = (0.0, 0.0),
        augment_flip: Sequence[int] = (),
    ) -> Iterator[dict]:
        """Batches of one epoch; order and augmentation depend only on ``(seed, epoch)``.

        :param augment_scale: > 0 adds ``moving_theta`` and ``fixed_theta`` ``[b, 4, 3]`` float32, random
            affines (:func:`tutorialreg.warp.random_affine` about the volume centre) for the training step
            to apply to each side's image and label.
        :param augment_rigid: ``(shift, degrees)``: the moving side's affine is followed by a random rigid
            motion (:func:`tutorialreg.warp.random_rigid` about the centre), new relative positions for a
            network to undo.
        :param augment_flip: spatial axes along which each pair (both sides, images and labels) is mirrored
            with probability 1/2.
        :return: dicts of the :meth:`item` keys stacked to ``[b, ...]``.
        """
        batch_size = int(number(batch_size, "batch_size", low=1, integer=True))
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(self)) if shuffle else np.arange(len(self))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            if drop_remainder and len(idx) < batch_size:
                return
            items = [self._items[int(i)] for i in idx]
            batch = {k: np.stack([it[k] for it in items]) for k in items[0]}
            for axis in augment_flip:
                flip = (rng.random(len(idx)) < 0.5).reshape(-1, 1, 1, 1)
                for k in ("moving_image", "fixed_image", "moving_label", "fixed_label"):
                    if k in batch:
                        where = flip if batch[k].ndim == 4 else flip[..., None]
                        batch[k] = np.where(where, np.flip(batch[k], axis=int(axis) + 1), batch[k])
            if augment_scale > 0 or max(augment_rigid) > 0:
                batch.update(_random_thetas(rng, len(idx), batch["fixed_image"].shape[1:4], augment_scale,
                                            augment_rigid))
            yield batch


def _random_thetas(rng: np.random.Generator, n: int, shape: Sequence[int], scale: float,
                   rigid: Sequence[float]) -> dict:
    """``moving_theta``, ``fixed_theta`` ``[n, 4, 3]`` float32 about the volume centre: random affines of
    ``scale``, the moving one followed by a random rigid motion ``(shift, degrees)``."""
    from tutorialreg import warp

    centre = [(s - 1) / 2 for s in shape]
    out = {}
    for side in ("moving", "fixed"):
        theta = np.asarray(warp.random_affine(n, scale, int(rng.integers(2**31)), centre), np.float64)
        if side == "moving" and max(rigid) > 0:
            motion = warp.random_rigid(n, float(rigid[0]), float(rigid[1]), int(rng.integers(2**31)), centre)
            theta = np.einsum("bij,bjk->bik", np.concatenate([theta, _LAST_COLUMN[None].repeat(n, 0)], -1),
                              motion)
        out[f"{side}_theta"] = theta.astype(np.float32)
    return out

