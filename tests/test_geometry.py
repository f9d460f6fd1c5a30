"""Voxel-to-world geometry against hand-computed cases and against warp_affine."""

from __future__ import annotations

import numpy as np
import pytest

from tutorialreg import geometry, warp


def _affine(spacing, origin, angle=0.0):
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
    a = np.eye(4)
    a[:3, :3] = rot @ np.diag(spacing)
    a[:3, 3] = origin
    return a


def test_split_and_world_coordinates():
    a = _affine((1.5, 2.0, 3.0), (10.0, -5.0, 2.0), angle=0.3)
    spacing, direction, origin = geometry.split_affine(a)
    np.testing.assert_allclose(spacing, (1.5, 2.0, 3.0))
    np.testing.assert_allclose(direction @ direction.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(origin, (10.0, -5.0, 2.0))
    np.testing.assert_allclose(geometry.world_from_index(a, [0, 0, 0]), origin)
    expected = origin + 2 * 1.5 * direction[:, 0]
    np.testing.assert_allclose(geometry.world_from_index(a, [[2, 0, 0]])[0], expected)
    np.testing.assert_allclose(geometry.volume_centre(np.diag([1.5, 1.5, 1.5, 1]), (47, 63, 44)),
                               (34.5, 46.5, 32.25))
    with pytest.raises(ValueError, match=r"\[4, 4\]"):
        geometry.split_affine(np.eye(3))


def test_index_map_aligns_centres_and_agrees_with_warp_affine():
    moving_shape, fixed_shape = (9, 7, 6), (5, 7, 4)
    a = np.diag([1.5, 1.5, 1.5, 1.0])  # the same affine in both files: headers align the first voxels
    np.testing.assert_allclose(geometry.index_map(a, a)[0], warp.IDENTITY_THETA, atol=1e-6)
    shift = geometry.volume_centre(a, moving_shape) - geometry.volume_centre(a, fixed_shape)
    theta = geometry.index_map(a, a, shift)
    np.testing.assert_allclose(theta[0, 3], [2.0, 0.0, 1.0])  # (9 - 5) / 2, 0, (6 - 4) / 2 voxels
    moving = np.random.default_rng(0).random((1, *moving_shape)).astype(np.float32)
    placed = warp.warp_affine(moving, theta, shape=fixed_shape).numpy()[0]
    np.testing.assert_allclose(placed, moving[0, 2:7, :, 1:5], atol=1e-6)
