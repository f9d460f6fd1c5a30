"""tutorialreg.metrics against analytic cases and direct numpy computations."""

import numpy as np
import pytest
from scipy import ndimage

from tutorialreg import metrics, warp


def _ball(shape, center, radius):
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1)
    return (np.linalg.norm(grid - np.array(center), axis=-1) <= radius).astype(np.float32)


def test_dice_per_channel_against_set_formula():
    rng = np.random.default_rng(0)
    a = rng.random((6, 7, 8, 2)) > 0.5
    b = rng.random((6, 7, 8, 2)) > 0.4
    d = metrics.dice(a, b)
    for c in range(2):
        expected = 2 * np.sum(a[..., c] & b[..., c]) / (a[..., c].sum() + b[..., c].sum())
        assert d[c] == pytest.approx(expected)
    assert metrics.dice(a[..., 0], a[..., 0]) == 1.0
    assert metrics.dice(np.zeros((3, 3, 3)), np.zeros((3, 3, 3))) == 1.0
    assert metrics.dice(np.ones((3, 3, 3)), np.zeros((3, 3, 3))) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.dice(np.zeros((3, 3, 3)), np.zeros((3, 3, 4)))


def test_hausdorff95_of_concentric_balls_is_radius_gap():
    a = _ball((41, 41, 41), (20, 20, 20), 12)
    b = _ball((41, 41, 41), (20, 20, 20), 8)
    hd = metrics.hausdorff95(a, b)
    assert 3.0 <= hd <= 5.0  # surfaces 4 voxels apart, up to voxelisation
    assert metrics.hausdorff95(a, a) == 0.0
    shifted = np.roll(a, 3, axis=0)
    assert metrics.hausdorff95(a, shifted) == pytest.approx(3.0, abs=0.5)
    assert np.isnan(metrics.hausdorff95(a, np.zeros_like(a)))


def test_hausdorff95_matches_brute_force_with_anisotropic_spacing():
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(3)
    a = ndimage.gaussian_filter(rng.random((14, 15, 16)), 2) > 0.5
    b = ndimage.gaussian_filter(rng.random((14, 15, 16)), 2) > 0.5
    spacing = np.array([2.0, 1.0, 0.5])
    surf = [m & ~ndimage.binary_erosion(m, border_value=0) for m in (a, b)]
    pa, pb = (np.argwhere(s) * spacing for s in surf)
    d = cdist(pa, pb)
    expected = np.percentile(np.concatenate([d.min(axis=1), d.min(axis=0)]), 95)
    assert metrics.hausdorff95(a, b, spacing=spacing) == pytest.approx(expected, rel=1e-9)


def test_centroid_distance_with_spacing():
    a = _ball((30, 30, 30), (10, 10, 10), 4)
    b = _ball((30, 30, 30), (13, 14, 10), 4)
    assert metrics.centroid_distance(a, b) == pytest.approx(5.0, abs=1e-6)
    assert metrics.centroid_distance(a, b, spacing=(2, 1, 1)) == pytest.approx(np.hypot(6, 4), abs=1e-6)


def test_jacobian_of_affine_field_is_det_of_matrix():
    theta = warp.random_affine(1, 0.3, seed=5, center=(5, 5, 5))
    ddf = warp.ddf_from_theta(theta, (10, 11, 12)).numpy()
    det = metrics.jacobian_determinant(ddf)
    assert det.shape == (1, 10, 11, 12)
    np.testing.assert_allclose(det, np.linalg.det(theta.numpy()[0, :3]), rtol=1e-4)
    assert metrics.folding_fraction(ddf) == 0.0


def test_jacobian_matches_analytic_nonlinear_field_and_detects_folding():
    shape = (20, 20, 20)
    x = np.stack(np.meshgrid(*[np.arange(s, dtype=float) for s in shape], indexing="ij"), -1)
    ddf = np.zeros(shape + (3,))
    ddf[..., 0] = 0.01 * x[..., 0] ** 2  # d/dx0 -> 1 + 0.02 x0
    det = metrics.jacobian_determinant(ddf)
    np.testing.assert_allclose(det[1:-1], 1 + 0.02 * x[1:-1, ..., 0], rtol=1e-6)
    flip = np.zeros(shape + (3,))
    flip[..., 1] = -2.0 * x[..., 1]  # j -> -j: every voxel folds
    assert metrics.folding_fraction(flip) == 1.0
    with pytest.raises(ValueError, match=r"\[d1, d2, d3, 3\]"):
        metrics.jacobian_determinant(np.zeros((4, 4, 4)))


def test_affine_error_zero_for_exact_inverse_and_measures_offset():
    shape = (16, 16, 8)
    theta_true = warp.random_affine(1, 0.2, seed=2).numpy()
    exact = warp.invert_theta(theta_true).numpy()
    err = metrics.affine_error(exact, theta_true, shape)
    assert err.mean < 1e-3 and err.max < 1e-3
    off = exact.copy()
    off[0, 3] += [0.3, 0.4, 0.0]  # a pure 0.5-voxel translation error
    err = metrics.affine_error(off, theta_true, shape)
    assert err.mean == pytest.approx(0.5, abs=1e-4) and err.max == pytest.approx(0.5, abs=1e-4)


def test_affine_error_agrees_with_image_round_trip():
    """The recovered transform composed with the true one maps the grid back onto itself."""
    rng = np.random.default_rng(1)
    vol = ndimage.gaussian_filter(rng.random((16, 16, 16)), 2).astype(np.float32)
    theta_true = warp.random_affine(1, 0.1, seed=0, center=(7.5, 7.5, 7.5))
    moving = warp.resample(vol[None], warp.affine_grid(warp.reference_grid(vol.shape), theta_true))
    est = warp.invert_theta(theta_true)
    back = warp.resample(moving, warp.affine_grid(warp.reference_grid(vol.shape), est)).numpy()[0]
    assert metrics.affine_error(est, theta_true, vol.shape).max < 1e-3
    assert np.abs(back - vol)[4:-4, 4:-4, 4:-4].mean() < 0.02


def test_folding_of_a_non_finite_field_is_an_error_never_zero():
    from tutorialreg.checks import NonFiniteError

    ddf = np.zeros((5, 6, 7, 3))
    ddf[2, 3, 4, 1] = np.nan
    with pytest.raises(NonFiniteError, match="ddf holds 1 NaN"):
        metrics.folding_fraction(ddf)
    ddf[2, 3, 4, 1] = np.inf
    with pytest.raises(NonFiniteError, match="1 infinite"):
        metrics.jacobian_determinant(ddf[None])


def test_log_jacobian_std_is_zero_for_an_affine_and_matches_numpy():
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in (6, 7, 8)], indexing="ij"), -1)
    affine = grid @ np.diag([0.2, -0.1, 0.05])  # x + ddf = diag(1.2, 0.9, 1.05) x
    assert metrics.log_jacobian_std(affine) == pytest.approx(0.0, abs=1e-9)
    rng = np.random.default_rng(0)
    ddf = rng.normal(0, 0.3, (6, 7, 8, 3))
    jac = metrics.jacobian_determinant(ddf)
    expected = np.std(np.log(np.maximum(np.abs(jac), 1e-9)))
    assert metrics.log_jacobian_std(ddf) == pytest.approx(expected)
