"""tutorialreg.warp against scipy.ndimage, numpy and analytic cases."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from tutorialreg import warp


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _loc_inside_and_out(rng, shape, out_shape):
    """Coordinates spanning one voxel beyond each border, avoiding exact .5 (rounding ties)."""
    loc = rng.uniform(-1.7, 1.7, size=out_shape + (3,)) + rng.random(out_shape + (3,)) * np.array(shape)
    return loc.astype(np.float32)


@pytest.mark.parametrize("order,interp", [(0, "nearest"), (1, "linear")])
def test_resample_matches_map_coordinates(rng, order, interp):
    vol = rng.random((2, 7, 8, 9)).astype(np.float32)
    loc = np.stack([_loc_inside_and_out(rng, (7, 8, 9), (5, 6, 4)) for _ in range(2)])
    out = warp.resample(vol, loc, interp).numpy()
    assert out.shape == (2, 5, 6, 4)
    for b in range(2):
        ref = ndimage.map_coordinates(vol[b], np.moveaxis(loc[b], -1, 0), order=order, mode="nearest")
        np.testing.assert_allclose(out[b], ref, atol=1e-5)
    # points outside on purpose: some coordinates < 0 and > d-1 were included
    assert (loc < 0).any() and (loc[..., 0] > 6).any()


def test_resample_channels_and_broadcast(rng):
    vol = rng.random((1, 5, 6, 7, 3)).astype(np.float32)
    loc = np.stack([_loc_inside_and_out(rng, (5, 6, 7), (4, 4, 4)) for _ in range(2)])
    out = warp.resample(vol, loc).numpy()
    assert out.shape == (2, 4, 4, 4, 3)
    for c in range(3):
        ref = ndimage.map_coordinates(vol[0, ..., c], np.moveaxis(loc[1], -1, 0), order=1, mode="nearest")
        np.testing.assert_allclose(out[1, ..., c], ref, atol=1e-5)


def test_resample_identity_grid_returns_volume(rng):
    vol = rng.random((1, 4, 5, 6)).astype(np.float32)
    out = warp.resample(vol, warp.reference_grid((4, 5, 6))[None])
    np.testing.assert_allclose(out.numpy(), vol, atol=1e-6)


def test_affine_grid_resample_matches_affine_transform(rng):
    vol = ndimage.gaussian_filter(rng.random((12, 14, 10)), 1.5).astype(np.float32)
    theta = warp.random_affine(1, 0.2, seed=3, center=(5.5, 6.5, 4.5)).numpy()
    out = warp.resample(vol[None], warp.affine_grid(warp.reference_grid(vol.shape), theta)).numpy()[0]
    # scipy: out(p) = in(M p + offset) with column vectors, i.e. M = theta[:3].T, offset = theta[3]
    ref = ndimage.affine_transform(vol, theta[0, :3].T, offset=theta[0, 3], order=1, mode="nearest")
    np.testing.assert_allclose(out, ref, atol=1e-4)


@pytest.mark.parametrize("interp,order", [("linear", 1), ("nearest", 0)])
def test_warp_affine_matches_affine_transform_with_batch_broadcast(rng, interp, order):
    vol = ndimage.gaussian_filter(rng.random((2, 12, 14, 10)), (0, 1.5, 1.5, 1.5)).astype(np.float32)
    theta = warp.random_affine(2, 0.2, seed=4, center=(5.5, 6.5, 4.5)).numpy()
    for image, th, b_img in [(vol[:1], theta, 0), (vol, theta[:1], None), (vol, theta, None)]:
        out = warp.warp_affine(image, th, interpolation=interp).numpy()
        assert out.shape == (2, 12, 14, 10)
        for b in range(2):
            t = th[0 if len(th) == 1 else b]
            src = vol[b if b_img is None else b_img]
            ref = ndimage.affine_transform(src, t[:3].T, offset=t[3], order=order, mode="nearest")
            # nearest: a rounding tie may go either way on a handful of voxels
            close = np.isclose(out[b], ref, atol=1e-4)
            assert close.mean() > (0.995 if order == 0 else 1.0 - 1e-9), close.mean()


def test_warp_affine_equals_resample_of_affine_grid_for_points_and_channels(rng):
    vol = rng.random((1, 9, 8, 7, 2)).astype(np.float32)
    theta = warp.random_affine(1, 0.3, seed=5, center=(4, 3.5, 3)).numpy()
    points = tf.constant(rng.uniform(-1.0, 9.0, (3, 4, 5, 3)), tf.float32)  # e.g. a coarse level's grid
    ref = warp.resample(vol, warp.affine_grid(points, theta)).numpy()
    np.testing.assert_allclose(warp.warp_affine(vol, theta, points=points).numpy(), ref, atol=1e-6)
    out = warp.warp_affine(vol, theta, shape=(5, 4, 3)).numpy()
    assert out.shape == (1, 5, 4, 3, 2)
    np.testing.assert_allclose(
        out, warp.resample(vol, warp.affine_grid(warp.reference_grid((5, 4, 3)), theta)).numpy(), atol=1e-6
    )


def test_warp_affine_theta_gradient_matches_finite_differences(rng):
    vol = ndimage.gaussian_filter(rng.random((1, 14, 15, 12)), 2.0).astype(np.float32) * 10
    fixed = tf.constant(ndimage.gaussian_filter(rng.random((1, 14, 15, 12)), 2.0).astype(np.float32) * 10)
    theta0 = warp.random_affine(1, 0.1, seed=6, center=(6.5, 7, 5.5))

    def loss(th):
        return tf.reduce_mean(tf.square(warp.warp_affine(vol, th) - fixed))

    theta = tf.Variable(theta0)
    with tf.GradientTape() as tape:
        value = loss(theta)
    grad = tape.gradient(value, theta).numpy()[0]
    with tf.GradientTape() as tape:  # the generic path gives the same gradient
        value = tf.reduce_mean(
            tf.square(warp.resample(vol, warp.affine_grid(warp.reference_grid(vol.shape[1:]), theta)) - fixed)
        )
    np.testing.assert_allclose(tape.gradient(value, theta).numpy()[0], grad, rtol=1e-4, atol=1e-7)
    for r, c in [(0, 0), (1, 2), (2, 1), (3, 0), (3, 2)]:
        eps = 1e-3 if r < 3 else 1e-2  # a linear coefficient moves far voxels by up to ~14 eps
        d = np.zeros((1, 4, 3), np.float32)
        d[0, r, c] = eps
        num = (loss(theta0 + d) - loss(theta0 - d)).numpy() / (2 * eps)
        assert abs(num - grad[r, c]) < 0.03 * abs(num) + 1e-3, (r, c, num, grad[r, c])


def test_warp_integer_shift_is_roll_in_interior(rng):
    vol = rng.random((1, 10, 11, 12)).astype(np.float32)
    shift = np.array([2, -1, 3])
    ddf = np.broadcast_to(shift.astype(np.float32), (1, 10, 11, 12, 3))
    out = warp.warp(vol, ddf).numpy()[0]
    rolled = np.roll(vol[0], -shift, axis=(0, 1, 2))
    np.testing.assert_allclose(out[:8, 1:, :9], rolled[:8, 1:, :9], atol=1e-6)


def test_theta_matrix_round_trip_and_inverse():
    theta = warp.random_affine(3, 0.3, seed=7, center=(4, 5, 6))
    np.testing.assert_allclose(warp.matrix_to_theta(warp.theta_to_matrix(theta)), theta, atol=1e-7)
    m = warp.theta_to_matrix(theta).numpy()
    m_inv = warp.theta_to_matrix(warp.invert_theta(theta)).numpy()
    np.testing.assert_allclose(m @ m_inv, np.broadcast_to(np.eye(4), m.shape), atol=1e-5)
    grid = warp.reference_grid((3, 4, 5))
    there = warp.affine_grid(grid, theta[:1])
    back = warp.affine_grid(there[0], warp.invert_theta(theta[:1]))
    np.testing.assert_allclose(back[0], grid, atol=1e-4)


def test_random_affine_is_seeded_and_bounded():
    a = warp.random_affine(2, 0.2, seed=1).numpy()
    b = warp.random_affine(2, 0.2, seed=1).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, warp.random_affine(2, 0.2, seed=2).numpy())
    np.testing.assert_allclose(warp.random_affine(1, 0.0, seed=0)[0], warp.IDENTITY_THETA, atol=1e-7)
    corners = np.array([[-1, -1, -1, 1], [-1, -1, 1, 1], [-1, 1, -1, 1], [1, -1, -1, 1]], float)
    ratio = (corners @ a[0]) / corners[:, :3]
    assert ((ratio >= 0.8 - 1e-6) & (ratio <= 1 + 1e-6)).all()
    with pytest.raises(ValueError, match="scale"):
        warp.random_affine(1, 1.5)


def test_random_affine_center_is_fixed_point_of_linear_part():
    c = np.array([10.0, 20.0, 5.0])
    theta = warp.random_affine(1, 0.2, seed=4, center=c).numpy()[0]
    np.testing.assert_allclose(np.append(c, 1) @ theta, c + (np.append(c, 1) @ theta - c), atol=1e-4)
    base = warp.random_affine(1, 0.2, seed=4).numpy()[0]
    np.testing.assert_allclose(np.append(c, 1) @ theta - c, np.append(0 * c, 1) @ base, atol=1e-4)
    ddf = warp.random_affine_ddf((9, 9, 9), 2, 0.1, seed=0)
    assert ddf.shape == (2, 9, 9, 9, 3)


def test_integrate_svf_of_constant_field_is_translation():
    v = np.broadcast_to(np.array([1.5, -2.0, 0.75], np.float32), (1, 16, 16, 16, 3))
    ddf = warp.integrate_svf(v, steps=7).numpy()
    # away from the borders, where clamping cannot act, exp(v) is the translation v
    np.testing.assert_allclose(ddf[0, 4:-4, 4:-4, 4:-4], v[0, 4:-4, 4:-4, 4:-4], atol=1e-4)
    np.testing.assert_allclose(warp.integrate_svf(v, steps=0), v)


def test_integrate_svf_compiled_matches_eager_and_gradient_matches_finite_differences(rng):
    v0 = ndimage.gaussian_filter(rng.normal(0, 4, (1, 8, 9, 7, 3)), (0, 1.5, 1.5, 1.5, 0)).astype(np.float32)
    weights = tf.constant(rng.random((1, 8, 9, 7, 3)).astype(np.float32))
    eager = warp.integrate_svf(v0).numpy()
    compiled = tf.function(warp.integrate_svf, jit_compile=True)(tf.constant(v0)).numpy()
    np.testing.assert_allclose(compiled, eager, atol=1e-5)
    # scaling and squaring is not the identity on a curved field: the result differs from v itself
    assert np.abs(eager - v0).max() > 1e-2

    def f(v):
        return tf.reduce_sum(tf.cast(warp.integrate_svf(v), tf.float64) * tf.cast(weights, tf.float64))

    v = tf.Variable(v0)
    with tf.GradientTape() as tape:
        y = f(v)
    grad = tape.gradient(y, v).numpy()
    eps = 1e-2
    for idx in [(0, 3, 4, 3, 0), (0, 5, 2, 4, 1), (0, 2, 6, 2, 2)]:
        d = np.zeros(v0.shape, np.float32)
        d[idx] = eps
        num = (f(v0 + d) - f(v0 - d)).numpy() / (2 * eps)
        assert abs(num - grad[idx]) < 0.02 * abs(num) + 2e-3, (idx, num, grad[idx])


def test_random_smooth_ddf_interpolates_control_points():
    ddf = warp.random_smooth_ddf((9, 9, 5), (3, 3, 2), amplitude=(2.0, 1.0, 0.5), seed=0).numpy()
    assert ddf.shape == (1, 9, 9, 5, 3)
    control = np.random.default_rng(0).normal(size=(1, 3, 3, 2, 3)) * np.array([2.0, 1.0, 0.5])
    # control point (a, b, c) sits at voxel (4a, 4b, 4c) of the output
    np.testing.assert_allclose(ddf[0, ::4, ::4, ::4], control[0], atol=1e-5)
    np.testing.assert_array_equal(ddf, warp.random_smooth_ddf((9, 9, 5), (3, 3, 2), (2.0, 1.0, 0.5), seed=0))
    with pytest.raises(ValueError, match="control_shape"):
        warp.random_smooth_ddf((9, 9, 5), (1, 3, 3), 1.0)


def test_compose_matches_sequential_warps(rng):
    vol = ndimage.gaussian_filter(rng.random((1, 12, 12, 12)), (0, 2, 2, 2)).astype(np.float32)
    a = ndimage.gaussian_filter(rng.normal(0, 1.0, (1, 12, 12, 12, 3)), (0, 3, 3, 3, 0)).astype(np.float32)
    b = ndimage.gaussian_filter(rng.normal(0, 1.0, (1, 12, 12, 12, 3)), (0, 3, 3, 3, 0)).astype(np.float32)
    two_steps = warp.warp(warp.warp(vol, a), b).numpy()
    one_step = warp.warp(vol, warp.compose(a, b)).numpy()
    # trilinear interpolation of an interpolated image differs slightly; the interior agrees closely
    assert np.abs(two_steps - one_step)[:, 2:-2, 2:-2, 2:-2].mean() < 5e-3


def test_resample_gradients_match_finite_differences(rng):
    vol = tf.constant(ndimage.gaussian_filter(rng.random((1, 6, 7, 8)), 1).astype(np.float64))
    loc = tf.constant(rng.uniform(0.3, 4.6, (1, 3, 3, 3, 3)))
    weights = tf.constant(rng.random((1, 3, 3, 3)))

    def f(v, p):
        return tf.reduce_sum(tf.cast(warp.resample(v, p), tf.float64) * weights)

    with tf.GradientTape(persistent=True) as tape:
        tape.watch([vol, loc])
        y = f(vol, loc)
    g_loc, g_vol = tape.gradient(y, loc).numpy(), tape.gradient(y, vol).numpy()
    eps = 1e-3
    for idx in [(0, 0, 0, 0, 0), (0, 1, 2, 1, 1), (0, 2, 1, 0, 2)]:
        d = np.zeros(loc.shape)
        d[idx] = eps
        num = (f(vol, loc + d) - f(vol, loc - d)).numpy() / (2 * eps)
        assert abs(num - g_loc[idx]) < 2e-2 * max(1.0, abs(num))
    for idx in [(0, 2, 3, 3), (0, 1, 1, 1)]:
        d = np.zeros(vol.shape)
        d[idx] = eps
        num = (f(vol + d, loc) - f(vol - d, loc)).numpy() / (2 * eps)
        assert abs(num - g_vol[idx]) < 1e-3


def test_warping_layer_and_keras_config(rng):
    layer = warp.Warping(fixed_image_size=(4, 5, 6))
    img = rng.random((1, 4, 5, 6)).astype(np.float32)
    out = layer([np.zeros((1, 4, 5, 6, 3), np.float32), img])
    np.testing.assert_allclose(out, img, atol=1e-6)
    clone = warp.Warping.from_config(layer.get_config())
    assert clone.fixed_image_size == (4, 5, 6)
    with pytest.raises(ValueError, match="fixed_image_size"):
        layer([np.zeros((1, 3, 5, 6, 3), np.float32), img])


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: warp.resample(np.zeros((4, 5, 6)), np.zeros((1, 2, 2, 2, 3))), r"\[batch, d1, d2, d3"),
        (lambda: warp.resample(np.zeros((1, 4, 5, 6)), np.zeros((1, 2, 2, 2, 2))), r"\[batch, D1, D2, D3, 3"),
        (lambda: warp.resample(np.zeros((1, 4, 5, 6)), np.zeros((1, 2, 2, 2, 3)), "cubic"), "interpolation"),
        (lambda: warp.resample(np.array([["a"]]), np.zeros((1, 2, 2, 2, 3))), "real-valued"),
        (lambda: warp.warp(np.zeros((1, 4, 5, 6)), np.zeros((1, 4, 5, 6))), r"\[batch, d1, d2, d3, 3\]"),
        (lambda: warp.affine_grid(warp.reference_grid((2, 2, 2)), np.zeros((1, 3, 3))), r"\[batch, 4, 3\]"),
        (lambda: warp.reference_grid((2, 2)), r"\(d1, d2, d3\)"),
        (
            lambda: warp.warp_affine(
                np.zeros((1, 4, 5, 6)), warp.IDENTITY_THETA, (2, 2, 2), points=np.zeros((2, 2, 2, 3))
            ),
            "not both",
        ),
        (
            lambda: warp.warp_affine(np.zeros((1, 4, 5, 6)), warp.IDENTITY_THETA, points=np.zeros((2, 2, 3))),
            r"\[d1, d2, d3, 3\]",
        ),
        (lambda: warp.resample(np.zeros((2, 4, 5, 6)), np.zeros((3, 2, 2, 2, 3))), "batch sizes differ"),
    ],
)
def test_bad_input_names_expected_shape(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("interpolation", ["linear", "nearest"])
def test_a_nan_displacement_gives_nan_not_a_crash(interpolation):
    """A NaN in a DDF used to cast to INT_MIN and crash the gather; now the affected voxel reads NaN."""
    img = np.random.default_rng(0).random((1, 6, 7, 8), dtype=np.float32)
    ddf = np.zeros((1, 6, 7, 8, 3), np.float32)
    ddf[0, 1, 2, 3, 0] = np.nan
    out = warp.warp(img, ddf, interpolation).numpy()
    assert np.isnan(out[0, 1, 2, 3]) and np.isnan(out).sum() == 1
    np.testing.assert_array_equal(np.delete(out.ravel(), np.ravel_multi_index((0, 1, 2, 3), out.shape)),
                                  np.delete(img.ravel(), np.ravel_multi_index((0, 1, 2, 3), img.shape)))


def test_centred_affine_round_trip_and_batch():
    shape = (9, 12, 7)
    lin, shift = warp.centred_from_affine(warp.IDENTITY_THETA, shape)
    np.testing.assert_allclose(lin, np.eye(3), atol=1e-7)
    np.testing.assert_allclose(shift, 0.0, atol=1e-7)
    theta = warp.random_affine(1, 0.3, seed=3).numpy()
    back = warp.affine_from_centred(*warp.centred_from_affine(theta, shape), shape).numpy()
    np.testing.assert_allclose(back, theta, atol=1e-4)
    # a batch of parameters gives a batch of thetas; each maps centred coordinates as u' = u @ L + t
    rng = np.random.default_rng(1)
    lins = np.eye(3) + 0.1 * rng.normal(size=(2, 3, 3))
    shifts = 0.2 * rng.normal(size=(2, 3))
    thetas = warp.affine_from_centred(lins, shifts, shape).numpy()
    c = (np.array(shape) - 1) / 2.0
    p = np.array([[1.0, 2.0, 3.0], [8.0, 0.0, 6.0]])
    for b in range(2):
        expected = ((p - c) / c @ lins[b] + shifts[b]) * c + c
        np.testing.assert_allclose(np.c_[p, np.ones(2)] @ thetas[b], expected, rtol=1e-5, atol=1e-4)
