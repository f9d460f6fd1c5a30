"""Paired moving/fixed volumes from ``{split}/{moving,fixed}_{images,labels}/`` folders; seeded splits."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tutorialreg.checks import shape3
from tutorialreg.data import manifest as _manifest
from tutorialreg.data.download import fetch
from tutorialreg.data.errors import PairingError
from tutorialreg.data.standin import standin_ct
from tutorialreg.data.volumes import (
    PLACEMENTS,
    is_nifti,
    normalise,
    place_moving,
    read_volume,
    resize,
    stem,
    volume_grid,
)

__all__ = ["PairedDataset", "split_pairs"]


def split_pairs(
    names: Sequence[str], fractions: Sequence[float] = (0.7, 0.1, 0.2), seed: int = 0
) -> dict[str, list[str]]:
    """Seeded split of pair names.

    :param fractions: train, valid, test fractions (non-negative, summing to 1); sizes by rounding.
    :return: ``{"train", "valid", "test"}`` -> sorted name lists; the same for any order of ``names``.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be 3 non-negative numbers summing to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(sorted(names))
    n_train, n_valid = round(fractions[0] * len(order)), round(fractions[1] * len(order))
    parts = order[:n_train], order[n_train : n_train + n_valid], order[n_train + n_valid :]
    return {k: sorted(p.tolist()) for k, p in zip(("train", "valid", "test"), parts, strict=True)}


def _list_folder(folder: Path) -> dict[str, Path]:
    """``{pair name: file}`` of the volume files in ``folder``.

    :raises PairingError: when two files give one pair name (``a.nii`` beside ``a.nii.gz``).
    """
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        name = stem(path)
        if name is None:
            continue
        if name in found:
            raise PairingError(
                f"{folder}: both {found[name].name} and {path.name} are pair {name!r}; keep one of them"
            )
        found[name] = path
    return found


def _locate(root_or_name: str | Path, split: str | None) -> tuple[Path, bool]:
    """``(folder, is_standin)``: a manifest dataset name is fetched; anything else is a folder."""
    is_standin = False
    if isinstance(root_or_name, str) and not Path(root_or_name).exists() and (
        root_or_name in _manifest.load_manifest()
    ):
        result = fetch(root_or_name)
        root, is_standin = result.root, result.is_standin
    else:
        root = Path(root_or_name)
    folder = root / split if split else root
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder} (split {split!r}); expected {{split}}/moving_images/...")
    return folder, is_standin


class PairedDataset:
    """Moving/fixed volume pairs from ``{split}/{moving,fixed}_{images,labels}/`` (matched by file name).

    :param root_or_name: a manifest dataset name (fetched) or any folder with that layout.
    :param split: sub-folder (``"train"``...) or None for a flat layout (use ``names=`` with
        :func:`split_pairs` to split it).
    :param image_shape: fixed (and by default moving) volumes are resampled to it; None keeps native shapes.
    :param labeled: read the label folders too.
    :param moving_shape: shape for moving volumes when it differs from ``image_shape`` (``"resize"`` only).
    :param names: pair names (file names without suffix) to keep; default all.
    :param cache: keep loaded items in the instance.
    :param moving_placement: ``"resize"``: the whole moving volume is resampled to ``moving_shape``.
        ``"centre"``: it is put on the fixed volume's native grid at true scale with the volume centres
        aligned (:func:`place_moving`: resampled to the fixed voxel size from the NIfTI headers, then
        zero-padded / cropped), then resampled to ``image_shape`` as the fixed volume is. Labels alike.

    ``ds[i]`` is a dict: ``moving_image``, ``fixed_image`` [d1,d2,d3] float32 in [0,1]; ``moving_label``,
    ``fixed_label`` [d1,d2,d3,c] float32 (if ``labeled``); ``name``.
    """

    def __init__(
        self,
        root_or_name: str | Path,
        split: str | None = None,
        image_shape: Sequence[int] | None = None,
        labeled: bool = True,
        moving_shape: Sequence[int] | None = None,
        names: Sequence[str] | None = None,
        cache: bool = True,
        moving_placement: str = "resize",
    ):
        if moving_placement not in PLACEMENTS:
            raise ValueError(f"moving_placement must be one of {PLACEMENTS}, got {moving_placement!r}")
        self.fixed_shape = shape3(image_shape, "image_shape") if image_shape is not None else None
        moving = shape3(moving_shape, "moving_shape") if moving_shape is not None else None
        if moving_placement == "centre" and moving not in (None, self.fixed_shape):
            raise ValueError(
                f"moving_shape {moving} differs from image_shape {self.fixed_shape}: with "
                "moving_placement='centre' the moving volume goes on the fixed grid; leave moving_shape None"
            )
        self.moving_shape = moving if moving is not None else self.fixed_shape
        self.moving_placement = moving_placement
        self.root, self.is_standin = _locate(root_or_name, split)
        self.labeled, self._cache = bool(labeled), {} if cache else None
        self.files = self._pair_files()
        all_names = set().union(*self.files.values())
        self.names = sorted(all_names) if names is None else list(names)
        if unknown := sorted(set(self.names) - all_names):
            raise PairingError(f"pair names not found in {self.root}: {unknown[:5]}")

    def _pair_files(self) -> dict[tuple[str, str], dict[str, Path]]:
        """``{(side, kind): {name: file}}``; PairingError for a missing folder or a file without partner."""
        kinds = ["labels"] if self.is_standin else ["images"] + (["labels"] if self.labeled else [])
        files = {}
        for side in ("moving", "fixed"):
            for kind in kinds:
                folder = self.root / f"{side}_{kind}"
                if not folder.is_dir():
                    raise PairingError(f"missing folder {folder} (expected {side}_{kind}/ under {self.root})")
                files[side, kind] = _list_folder(folder)
        all_names = set().union(*files.values())
        lost = [
            f"{side}_{kind}/ lacks {sorted(all_names - set(found))[:5]}"
            for (side, kind), found in files.items()
            if all_names - set(found)
        ]
        if lost:
            raise PairingError(f"unpaired files in {self.root}: " + "; ".join(lost))
        return files

    def __len__(self) -> int:
        return len(self.names)

    def _header_file(self, side: str, name: str) -> Path:
        """The file whose header gives the native grid of ``side`` of pair ``name`` (labels first)."""
        kind = "labels" if (side, "labels") in self.files else "images"
        try:
            return self.files[side, kind][name]
        except KeyError:
            raise PairingError(f"no pair {name!r} in {self.root}") from None

    def spacing(self, name: str) -> tuple[float, float, float]:
        """Voxel size (mm) of the ``image_shape`` grid that covers the fixed volume of pair ``name``.

        :return: header voxel size x native size / working size per axis; ``(1.0, 1.0, 1.0)`` for files
            without voxel sizes (h5).
        :raises PairingError: for an unknown pair.
        """
        path = self._header_file("fixed", name)
        if not is_nifti(path):
            return (1.0, 1.0, 1.0)
        native, zooms = volume_grid(path)
        working = self.fixed_shape or native
        return tuple(z * n / s for z, n, s in zip(zooms, native, working, strict=True))  # type: ignore

    def _to_grid(self, volume: np.ndarray, name: str, side: str) -> np.ndarray:
        """A native volume of ``side`` on the working grid (moving placement, then resampling)."""
        if side == "moving" and self.moving_placement == "centre":
            _, moving_spacing = volume_grid(self._header_file("moving", name))
            fixed_native, fixed_spacing = volume_grid(self._header_file("fixed", name))
            placed = place_moving(volume, moving_spacing, fixed_native, fixed_spacing, "centre")
            return resize(placed, self.fixed_shape)
        return resize(volume, self.moving_shape if side == "moving" else self.fixed_shape)

    def _side(self, name: str, side: str) -> dict:
        """Image (and label) of one side of pair ``name`` on the working grid."""
        where = f"pair {name!r}, {side}"
        label = None
        if self.labeled or self.is_standin:
            label = read_volume(self.files[side, "labels"][name], np.float32, where)
            label = label[..., None] if label.ndim == 3 else label
        if self.is_standin:  # synthesised at the working resolution (cheap), not at 192 x 192 x 208
            label = self._to_grid(label, name, side)
            image = standin_ct(label.max(-1), seed=zlib.crc32(f"{self.root.name}/{side}/{name}".encode()))
        else:
            path = self.files[side, "images"][name]
            image = read_volume(path, np.float64, where)
            if image.size and np.abs(image).max() <= np.finfo(np.float32).max:
                image = image.astype(np.float32)  # resampled in float32 unless float32 would overflow
            image = image[..., 0] if image.ndim == 4 and image.shape[3] == 1 else image
            if image.ndim != 3:
                raise PairingError(f"{path} ({where}): image must have shape [d1,d2,d3], got {image.shape}")
            if label is not None and label.shape[:3] != image.shape:
                raise PairingError(
                    f"{side} pair {name!r}: label shape {label.shape} does not match image {image.shape}"
                )
            image = self._to_grid(image, name, side)
            label = self._to_grid(label, name, side) if self.labeled else None
            where = f"{path}, {where}"
        out = {f"{side}_image": normalise(image, where)}
        if self.labeled:
            out[f"{side}_label"] = np.asarray(label, np.float32)
        return out

    def load(self, i: int) -> dict:
        """Item ``i`` (see the class doc): from the instance cache if there, else read without caching it."""
        if not -len(self) <= i < len(self):
            raise IndexError(f"pair index {i} out of range for {len(self)} pairs in {self.root}")
        i %= len(self)
        if self._cache is not None and i in self._cache:
            return self._cache[i]
        name = self.names[i]
        item = {**self._side(name, "moving"), **self._side(name, "fixed"), "name": name}
        if self.labeled and item["moving_label"].shape[-1] != item["fixed_label"].shape[-1]:
            raise PairingError(f"pair {name!r}: moving and fixed labels have different channel counts")
        return item

    def __getitem__(self, i: int) -> dict:
        item = self.load(i)
        if self._cache is not None:
            self._cache[i % len(self)] = item
        return item
