"""Images and fields across pyramid levels (classical registration).

Level ``f`` (a per-axis subsampling factor) has ``d // f`` voxels per axis, centred in the volume: its voxel
``q`` sits at ``offset + f * q`` in full-size voxel coordinates (ij). Images are smoothed, then sampled at
those points; a field defined on one level (values in that level's voxels) is resampled to another.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from scipy import ndimage

from tutorialreg import warp
from tutorialreg.checks import as_float_tensor, check_finite, check_same_shape

Factor = tuple[int, int, int]

__all__ = ["as_image", "image_pair", "level_geometry", "level_image", "level_points", "resample_field"]


def as_image(x, name: str, allow_channels: bool = False) -> tf.Tensor:
    """``[d1, d2, d3]`` or ``[1, d1, d2, d3]`` (``[1, d1, d2, d3, c]`` if allowed) -> float32 ``[1, ...]``."""
    expected = "[d1, d2, d3], [1, d1, d2, d3]" + (" or [1, d1, d2, d3, c]" if allow_channels else "")
    x = as_float_tensor(x, name, (3, 4, 5) if allow_channels else (3, 4), expected, tf.float32)
    if x.shape.rank == 3:
        x = x[None]
    if x.shape[0] != 1:
        raise ValueError(f"{name} must have shape {expected} (one image), got {tuple(x.shape)}")
    return x


def image_pair(moving, fixed) -> tuple[np.ndarray, np.ndarray]:
    """Checked ``(moving, fixed)`` numpy float32 ``[d1, d2, d3]`` images of one shape, >= 4 voxels per axis,
    finite."""
    m = as_image(moving, "moving").numpy()[0]
    f = as_image(fixed, "fixed").numpy()[0]
    check_same_shape(m, f, ("moving", "fixed"), "[d1, d2, d3]")
    if min(f.shape) < 4:
        raise ValueError(f"images need at least 4 voxels along each axis, got {f.shape}")
    check_finite(m, "moving image")
    check_finite(f, "fixed image")
    return m, f


def level_geometry(shape: Sequence[int], factor: Factor) -> tuple[list[int], np.ndarray]:
    """Size and first point of a level: its voxels sit at ``offset + factor * q`` in full-size voxels,
    centred in the volume (for a size divisible by ``factor``, at the centres of ``factor``-blocks)."""
    n = [d // f for d, f in zip(shape, factor, strict=True)]
    offset = np.array([(d - 1 - f * (m - 1)) / 2.0 for d, f, m in zip(shape, factor, n, strict=True)])
    return n, offset


def level_points(shape: Sequence[int], factor: Factor) -> np.ndarray:
    """Full-size voxel coordinates ``[n1, n2, n3, 3]`` of a level's voxels (float64)."""
    n, offset = level_geometry(shape, factor)
    axes = [o + f * np.arange(m, dtype=np.float64) for o, f, m in zip(offset, factor, n, strict=True)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)


def smooth(image: np.ndarray, sigma: Sequence[float]) -> np.ndarray:
    """Gaussian smoothing (``sigma`` full-size voxels per axis, borders repeat the edge); 0 = unchanged."""
    return ndimage.gaussian_filter(image, sigma, mode="nearest") if max(sigma) > 0 else image


def level_image(image: np.ndarray, factor: Factor, sigma: Sequence[float]) -> np.ndarray:
    """Gaussian-smoothed (``sigma`` full-size voxels per axis) image sampled at a level's voxels, float32."""
    smoothed = smooth(image, sigma)
    if max(factor) == 1:
        return smoothed.astype(np.float32)
    pts = level_points(image.shape, factor)
    out = ndimage.map_coordinates(smoothed, pts.reshape(-1, 3).T, order=1, mode="nearest")
    return out.reshape(pts.shape[:3]).astype(np.float32)


def resample_field(field: tf.Tensor, shape: Sequence[int], factor: Factor, new_factor: Factor) -> tf.Tensor:
    """A field ``[1, n1, n2, n3, 3]`` on level ``factor`` (values in that level's voxels) -> level
    ``new_factor`` (values in its voxels), by trilinear resampling."""
    if tuple(factor) == tuple(new_factor):
        return field
    _, offset = level_geometry(shape, factor)
    loc = (level_points(shape, new_factor) - offset) / np.asarray(factor, np.float64)
    out = warp.resample(field, tf.constant(loc[None], tf.float32))
    return out * tf.constant(np.asarray(factor, np.float32) / np.asarray(new_factor, np.float32))
