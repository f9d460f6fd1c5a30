"""Volumes: reading NIfTI / h5 files, intensity normalisation, resampling, and placing a moving volume
onto the fixed volume's grid."""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tutorialreg.checks import check_finite, check_numeric, shape3
from tutorialreg.data.errors import CorruptFileError

if TYPE_CHECKING:
    import h5py

__all__ = ["PLACEMENTS", "SUFFIXES", "normalise", "place_moving", "read_volume", "resize", "volume_grid"]

SUFFIXES = (".nii.gz", ".nii", ".h5")
NIFTI_SUFFIXES = (".nii.gz", ".nii")
PLACEMENTS = ("resize", "centre")


def stem(path: Path) -> str | None:
    """File name without its volume suffix (``obs001.nii.gz`` -> ``obs001``), None for other files."""
    return next((path.name[: -len(s)] for s in SUFFIXES if path.name.endswith(s)), None)


def is_nifti(path: Path) -> bool:
    """True for ``.nii`` and ``.nii.gz`` files."""
    return Path(path).name.endswith(NIFTI_SUFFIXES)


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn the low-level errors of a damaged file into :class:`CorruptFileError` naming it."""
    from nibabel.filebasedimages import ImageFileError

    try:
        yield
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except (EOFError, OSError, zlib.error, ImageFileError) as err:
        raise CorruptFileError(
            f"{path} is truncated or corrupt ({type(err).__name__}: {err}); fetch or copy it again "
            "(python -m tutorialreg.data verify finds damaged cached files)"
        ) from err


def _h5_dataset(f: h5py.File, path: Path) -> h5py.Dataset:
    """The one dataset of an open h5 file; ValueError naming the file and its keys otherwise."""
    if len(f) != 1:
        raise ValueError(f"{path}: expected an h5 file with one dataset, found keys {list(f)}")
    return f[next(iter(f))]


def read_volume(path: str | Path, dtype: type = np.float32, where: str = "") -> np.ndarray:
    """A NIfTI (``.nii``, ``.nii.gz``) or single-dataset ``.h5`` volume.

    :param dtype: floating type of the result; float64 keeps values that overflow float32.
    :param where: context for error messages (e.g. the pair name).
    :return: ``[d1,d2,d3]`` or ``[d1,d2,d3,c]`` array of ``dtype``, the file's values (NIfTI scaling applied).
    :raises CorruptFileError: when the file is truncated or corrupt.
    :raises NonFiniteError: when the file holds NaN or infinite values.
    :raises ValueError: when the values do not fit ``dtype``, or an h5 file has several datasets.
    """
    path = Path(path)
    with _reading(path):
        if path.name.endswith(".h5"):
            import h5py

            with h5py.File(path, "r") as f:
                raw = np.asarray(_h5_dataset(f, path)[()])
        else:
            import nibabel as nib

            raw = np.asarray(nib.load(path).dataobj)
    context = f"{path}, {where}" if where else str(path)
    check_numeric(raw, f"volume ({context})")
    check_finite(raw, "volume", context)
    with np.errstate(over="ignore"):
        out = raw.astype(dtype, copy=False)
    if out.dtype.itemsize < raw.dtype.itemsize and raw.dtype.kind == "f" and not np.isfinite(out).all():
        raise ValueError(
            f"volume ({context}) holds values up to {np.abs(raw).max():.3g} that overflow {out.dtype}; "
            "read it with dtype=np.float64"
        )
    return out


def volume_grid(path: str | Path) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Native grid of a volume file from its header: ``(shape (d1, d2, d3), voxel size in mm)``.

    h5 files carry no voxel size: ``(1.0, 1.0, 1.0)``.

    :raises CorruptFileError: when the file cannot be read; ValueError for a voxel size that is not > 0.
    """
    path = Path(path)
    with _reading(path):
        if not is_nifti(path):
            import h5py

            with h5py.File(path, "r") as f:
                return tuple(_h5_dataset(f, path).shape[:3]), (1.0, 1.0, 1.0)  # type: ignore[return-value]
        import nibabel as nib

        img = nib.load(path)
    spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
    if len(spacing) != 3 or not all(np.isfinite(spacing)) or min(spacing) <= 0:
        raise ValueError(f"{path}: header voxel size {spacing} must be three numbers > 0 (mm)")
    return tuple(int(s) for s in img.shape[:3]), spacing  # type: ignore[return-value]


def normalise(x: np.ndarray, where: str = "") -> np.ndarray:
    """Min-max scale to [0, 1], computed in float64 (values beyond float32 range are fine), as float32.

    :param x: array of any shape (float, int or bool).
    :param where: context for error messages (a file, a pair).
    :return: float32 array of ``x``'s shape; a constant array gives zeros.
    :raises NonFiniteError: when ``x`` holds NaN or infinity (naming ``where``).
    :raises ValueError: for an empty or non-numeric array.
    """
    context = f" ({where})" if where else ""
    check_numeric(x, f"image{context}")
    arr = check_finite(np.asarray(x, dtype=np.float64), "image", where)
    if arr.size == 0:
        raise ValueError(f"image{context} is empty (shape {arr.shape}); nothing to normalise")
    lo, hi = float(arr.min()), float(arr.max())
    if not hi > lo:
        return np.zeros(arr.shape, np.float32)
    if np.isfinite(hi - lo):
        return ((arr - lo) / (hi - lo)).astype(np.float32)
    return ((arr / 2 - lo / 2) / (hi / 2 - lo / 2)).astype(np.float32)  # the range overflows float64


def _per_channel(volume: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``fn`` applied to ``[d1,d2,d3]``, or to each channel of ``[d1,d2,d3,c]`` (stacked last)."""
    if volume.ndim == 3:
        return fn(volume)
    if volume.ndim != 4:
        raise ValueError(f"volume must have shape [d1,d2,d3] or [d1,d2,d3,c], got {volume.shape}")
    return np.stack([fn(volume[..., c]) for c in range(volume.shape[3])], -1)


def _floating(volume: np.ndarray) -> np.ndarray:
    """``volume`` as a floating array (float32 unless already floating)."""
    volume = np.asarray(volume)
    return volume if volume.dtype.kind == "f" else volume.astype(np.float32)


def resize(volume: np.ndarray, shape: Sequence[int] | None) -> np.ndarray:
    """Order-1 resampling of ``[d1,d2,d3]`` or ``[d1,d2,d3,c]`` (per channel) to ``shape`` (corner voxel
    centres kept on corner voxel centres, as ``scipy.ndimage.zoom``).

    :param shape: 3 ints, or None for no change.
    :return: the resampled volume, floating (its dtype if floating, else float32); ``volume`` itself when
        the shape already matches.
    """
    if shape is None or tuple(volume.shape[:3]) == tuple(shape):
        return volume
    from scipy.ndimage import zoom

    shape = shape3(shape, "shape")
    factors = [t / s for t, s in zip(shape, volume.shape[:3], strict=True)]
    return _per_channel(_floating(volume), lambda v: zoom(v, factors, order=1))


def _positive3(spacing: Sequence[float], name: str) -> np.ndarray:
    """``spacing`` as 3 float64 voxel sizes; ValueError naming ``name`` unless all are finite and > 0."""
    values = np.asarray(spacing, dtype=np.float64).reshape(-1)
    if values.size != 3 or not np.all(np.isfinite(values)) or values.min() <= 0:
        raise ValueError(f"{name} must be three voxel sizes > 0 (mm), got {spacing!r}")
    return values


def _to_spacing(volume: np.ndarray, spacing: np.ndarray, new_spacing: np.ndarray) -> np.ndarray:
    """Order-1 resampling onto voxels of ``new_spacing`` covering the same extent, centres aligned
    (``round(size * spacing / new_spacing)`` voxels per axis; edge values extend half a voxel outwards)."""
    from scipy.ndimage import affine_transform

    size = np.asarray(volume.shape[:3])
    new_size = np.maximum(1, np.round(size * spacing / new_spacing)).astype(int)
    ratio = new_spacing / spacing
    offset = (size - 1) / 2 - (new_size - 1) / 2 * ratio  # input index = ratio * output index + offset
    return _per_channel(
        _floating(volume),
        lambda v: affine_transform(v, ratio, offset, output_shape=tuple(new_size), order=1, mode="nearest"),
    )


def _centre_crop_pad(volume: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """``volume`` zero-padded / cropped to ``shape`` about its centre: input index = output index +
    ``(n_in - n_out) // 2`` on each axis (for an odd difference the volume centre lands half a voxel after
    the output centre)."""
    out = np.zeros(tuple(shape) + volume.shape[3:], volume.dtype)
    src, dst = [], []
    for n_in, n_out in zip(volume.shape[:3], shape, strict=True):
        offset = (n_in - n_out) // 2
        lo, hi = max(0, -offset), min(n_out, n_in - offset)
        dst.append(slice(lo, hi))
        src.append(slice(lo + offset, hi + offset))
    out[tuple(dst)] = volume[tuple(src)]
    return out


def place_moving(
    volume: np.ndarray,
    moving_spacing: Sequence[float],
    fixed_shape: Sequence[int],
    fixed_spacing: Sequence[float],
    mode: str = "centre",
) -> np.ndarray:
    """A moving volume on the fixed volume's native grid.

    :param volume: ``[m1,m2,m3]`` or ``[m1,m2,m3,c]`` moving volume.
    :param moving_spacing: its voxel size (3 numbers, mm).
    :param fixed_shape: the fixed volume's native shape ``(f1, f2, f3)``.
    :param fixed_spacing: the fixed voxel size (mm).
    :param mode: ``"resize"``: the whole moving extent resampled onto ``fixed_shape`` (voxel sizes
        ignored). ``"centre"``: volume centres aligned at true scale: resampled (order 1) to the fixed voxel
        size when the voxel sizes differ, then zero-padded / cropped symmetrically to ``fixed_shape`` (an odd
        size difference puts the extra voxel before the volume when padding, after it when cropping).
    :return: ``[f1,f2,f3]`` or ``[f1,f2,f3,c]``, floating.
    :raises ValueError: for an unknown mode, bad shapes or voxel sizes.
    """
    if mode not in PLACEMENTS:
        raise ValueError(f"moving placement must be one of {PLACEMENTS}, got {mode!r}")
    fixed_shape = shape3(fixed_shape, "fixed_shape")
    volume = _floating(volume)
    if volume.ndim not in (3, 4):
        raise ValueError(f"moving volume must have shape [d1,d2,d3] or [d1,d2,d3,c], got {volume.shape}")
    if mode == "resize":
        return resize(volume, fixed_shape)
    spacing = _positive3(moving_spacing, "moving_spacing")
    new_spacing = _positive3(fixed_spacing, "fixed_spacing")
    if not np.allclose(spacing, new_spacing, rtol=1e-6, atol=0.0):
        volume = _to_spacing(volume, spacing, new_spacing)
    return _centre_crop_pad(volume, fixed_shape)
