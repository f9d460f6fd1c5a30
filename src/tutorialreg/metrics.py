"""Evaluation metrics: numpy in, numpy out.

Labels are ``[d1, d2, d3]`` or ``[d1, d2, d3, c]`` (a leading batch of 1 is squeezed); DDFs are
``[d1, d2, d3, 3]`` or ``[batch, d1, d2, d3, 3]`` in voxels (ij). ``spacing`` is the voxel size along
(axis 0, 1, 2), in mm; distances are returned in the same unit (voxels when spacing is 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import ndimage

from tutorialreg.checks import check_finite, check_rank

__all__ = [
    "AffineError",
    "affine_error",
    "centroid_distance",
    "dice",
    "folding_fraction",
    "hausdorff95",
    "jacobian_determinant",
    "log_jacobian_std",
]


def _labels(x, name: str) -> tuple[np.ndarray, bool]:
    """Return ``[d1, d2, d3, c]`` and whether the input had no channel axis."""
    x = np.asarray(x)
    if x.ndim == 5 and x.shape[0] == 1:
        x = x[0]
    check_rank(x, (3, 4), name, "[d1, d2, d3] or [d1, d2, d3, c]")
    return (x[..., None], True) if x.ndim == 3 else (x, False)


def _pair(a, b, threshold: float) -> tuple[np.ndarray, np.ndarray, bool]:
    (a, squeeze), (b, _) = _labels(a, "a"), _labels(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"label shapes differ: {a.shape} vs {b.shape}")
    return a > threshold, b > threshold, squeeze


def dice(a, b, threshold: float = 0.5) -> np.ndarray | float:
    """Dice overlap ``2|A n B| / (|A| + |B|)`` per label channel (1.0 when both are empty).

    :return: a float for 3-D input, ``[c]`` for ``[d1, d2, d3, c]`` input.
    """
    a, b, squeeze = _pair(a, b, threshold)
    inter = np.sum(a & b, axis=(0, 1, 2)).astype(np.float64)
    total = np.sum(a, axis=(0, 1, 2)) + np.sum(b, axis=(0, 1, 2))
    out = np.where(total > 0, 2.0 * inter / np.maximum(total, 1), 1.0)
    return float(out[0]) if squeeze else out


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def _hd95_one(a: np.ndarray, b: np.ndarray, spacing: Sequence[float]) -> float:
    if not a.any() or not b.any():
        return float("nan")
    sa, sb = _surface(a), _surface(b)
    dist_to_b = ndimage.distance_transform_edt(~sb, sampling=spacing)
    dist_to_a = ndimage.distance_transform_edt(~sa, sampling=spacing)
    distances = np.concatenate([dist_to_b[sa], dist_to_a[sb]])
    return float(np.percentile(distances, 95))


def hausdorff95(a, b, spacing: Sequence[float] = (1.0, 1.0, 1.0), threshold: float = 0.5):
    """Symmetric 95th-percentile Hausdorff distance between label surfaces (mm if spacing is in mm).

    NaN when either label is empty. Returns a float for 3-D input, ``[c]`` for 4-D input.
    """
    a, b, squeeze = _pair(a, b, threshold)
    out = np.array([_hd95_one(a[..., i], b[..., i], spacing) for i in range(a.shape[-1])])
    return float(out[0]) if squeeze else out


def centroid_distance(a, b, spacing: Sequence[float] = (1.0, 1.0, 1.0), threshold: float = 0.5):
    """Distance between label centroids (mm if spacing is in mm); NaN if either label is empty."""
    a, b, squeeze = _pair(a, b, threshold)
    sp = np.asarray(spacing, dtype=np.float64)
    out = []
    for i in range(a.shape[-1]):
        if not a[..., i].any() or not b[..., i].any():
            out.append(float("nan"))
            continue
        ca = np.array(ndimage.center_of_mass(a[..., i]))
        cb = np.array(ndimage.center_of_mass(b[..., i]))
        out.append(float(np.linalg.norm((ca - cb) * sp)))
    out = np.array(out)
    return float(out[0]) if squeeze else out


def jacobian_determinant(ddf) -> np.ndarray:
    """Determinant of the Jacobian of ``x -> x + ddf(x)`` by central differences (one-sided at borders).

    :param ddf: ``[d1, d2, d3, 3]`` or ``[batch, d1, d2, d3, 3]`` in voxels.
    :return: ``[d1, d2, d3]`` or ``[batch, d1, d2, d3]``; 1 means volume kept, <= 0 means folding.
    :raises NonFiniteError: when the field holds NaN or infinite displacements (their determinant, and so
        any folding count, would be meaningless).
    """
    ddf = np.asarray(ddf, dtype=np.float64)
    check_rank(ddf, (4, 5), "ddf", "[d1, d2, d3, 3] or [batch, d1, d2, d3, 3]")
    if ddf.shape[-1] != 3:
        raise ValueError(f"ddf must have shape [d1, d2, d3, 3] or [batch, d1, d2, d3, 3], got {ddf.shape}")
    check_finite(ddf, "ddf")
    if ddf.ndim == 5:
        return np.stack([jacobian_determinant(d) for d in ddf])
    if min(ddf.shape[:3]) < 2:
        raise ValueError(f"ddf needs at least 2 voxels along each axis, got {ddf.shape}")
    jac = np.empty(ddf.shape[:3] + (3, 3))
    for comp in range(3):
        grads = np.gradient(ddf[..., comp], axis=(0, 1, 2))
        for axis in range(3):
            jac[..., comp, axis] = grads[axis] + (1.0 if comp == axis else 0.0)
    return np.linalg.det(jac)


def folding_fraction(ddf) -> float:
    """Share of voxels (0-1) whose Jacobian determinant is <= 0; a non-finite field raises
    :class:`~tutorialreg.checks.NonFiniteError` (never a silent 0)."""
    return float(np.mean(jacobian_determinant(ddf) <= 0))


def log_jacobian_std(ddf, floor: float = 1e-9) -> float:
    """Standard deviation over voxels of ``log |det J|`` (``|det J|`` floored at ``floor``): how unevenly a
    deformation stretches and squeezes; 0 for any volume-preserving or affine map."""
    jac = np.abs(jacobian_determinant(ddf))
    return float(np.std(np.log(np.maximum(jac, floor))))


class AffineError(NamedTuple):
    """Distances (voxels) between two affine mappings over a grid."""

    mean: float
    max: float


def affine_error(theta_est, theta_true, shape: Sequence[int]) -> AffineError:
    """How far a recovered affine is from the exact inverse of the true one, over the whole grid.

    The moving image was made as ``moving(p) = fixed(T_true(p))``; registering it back to the fixed
    image should recover ``T_est = T_true^-1``. Returns the mean and max of
    ``|T_est(p) - T_true^-1(p)|`` over every voxel ``p`` of a grid of ``shape``, in voxels.

    :param theta_est, theta_true: ``[4, 3]`` or ``[1, 4, 3]`` row-vector affines.
    """
    te = np.asarray(theta_est, dtype=np.float64).reshape(-1, 4, 3)
    tt = np.asarray(theta_true, dtype=np.float64).reshape(-1, 4, 3)
    if te.shape[0] != 1 or tt.shape[0] != 1:
        raise ValueError("affine_error takes one transform: theta of shape [4, 3] or [1, 4, 3]")
    m_true = np.eye(4)
    m_true[:, :3] = tt[0]  # row-vector form: [p,1] @ m_true
    inv = np.linalg.inv(m_true)[:, :3]
    grid = np.stack(np.meshgrid(*[np.arange(d, dtype=np.float64) for d in shape], indexing="ij"), -1)
    p = np.concatenate([grid.reshape(-1, 3), np.ones((grid[..., 0].size, 1))], axis=1)
    dist = np.linalg.norm(p @ te[0] - p @ inv, axis=1)
    return AffineError(float(dist.mean()), float(dist.max()))
