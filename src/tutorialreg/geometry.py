"""Voxel and world coordinates: a NIfTI-style affine ``A`` ``[4, 4]`` maps voxel indices ``p`` (ij order) to
world positions in millimetres, ``world = A @ [p, 1]``, and splits into spacing, direction and origin.

Numpy only. The registration code works in voxel indices of the fixed grid; these functions relate those
indices to millimetres and turn a placement between two volumes into the book's affine ``theta``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tutorialreg.checks import check_rank

__all__ = ["index_map", "split_affine", "volume_centre", "world_from_index"]


def _affine(affine) -> np.ndarray:
    a = np.asarray(affine, np.float64)
    if a.shape != (4, 4):
        raise ValueError(f"affine must have shape [4, 4] (a voxel-to-world matrix), got {a.shape}")
    return a


def split_affine(affine) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(spacing [3] mm, direction [3, 3] unit columns, origin [3] mm)`` of
    ``A = [D diag(spacing) | origin]``."""
    a = _affine(affine)
    spacing = np.linalg.norm(a[:3, :3], axis=0)
    return spacing, a[:3, :3] / spacing, a[:3, 3].copy()


def world_from_index(affine, index) -> np.ndarray:
    """World positions (mm) ``[..., 3]`` of voxel indices ``[..., 3]``: ``A @ [i, j, k, 1]``."""
    a = _affine(affine)
    index = np.asarray(index, np.float64)
    check_rank(index, range(1, 8), "index", "[..., 3]")
    if index.shape[-1] != 3:
        raise ValueError(f"index must have shape [..., 3] (voxel indices i, j, k), got {index.shape}")
    return index @ a[:3, :3].T + a[:3, 3]


def volume_centre(affine, shape: Sequence[int]) -> np.ndarray:
    """World position (mm) of the centre of a volume of ``shape`` voxels (halfway between its first and last
    voxel centres)."""
    return world_from_index(affine, (np.asarray(shape[:3], np.float64) - 1) / 2)


def index_map(moving_affine, fixed_affine, shift_mm: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """``theta`` ``[1, 4, 3]`` (the book's row-vector affine) taking a fixed voxel index to the moving voxel
    index at the same world point, moved by ``shift_mm``: ``A_moving^-1 T(shift) A_fixed``.

    With ``shift_mm = volume_centre(moving) - volume_centre(fixed)`` the two volume centres are aligned.
    """
    shift = np.eye(4)
    shift[:3, 3] = np.asarray(shift_mm, np.float64)
    m = np.linalg.inv(_affine(moving_affine)) @ shift @ _affine(fixed_affine)
    return np.concatenate([m[:3, :3].T, m[None, :3, 3]])[None].astype(np.float32)
