"""Tests of tutorialreg.optimise on small synthetic volumes (the real-data runs are the chapters' job)."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
import tensorflow as tf

from tutorialreg import callbacks, metrics, optimise, warp
from tutorialreg.optimise import pyramid


def _blobs(shape, centres, sigma, grid=None):
    """Sum of Gaussian blobs ``[(centre, amplitude), ...]`` evaluated on ``grid`` (default: voxel indices)."""
    if grid is None:
        grid = np.stack(np.meshgrid(*[np.arange(d, dtype=np.float32) for d in shape], indexing="ij"), -1)
    out = np.zeros(grid.shape[:-1], np.float32)
    for c, a in centres:
        out += a * np.exp(-np.sum((grid - np.asarray(c, np.float32)) ** 2, -1) / (2 * sigma**2))
    return out


BLOBS = [((8, 9, 6), 1.0), ((13, 15, 9), 0.7), ((6, 17, 10), 0.5), ((14, 7, 7), 0.8)]


@pytest.fixture(scope="module")
def smooth_volume() -> np.ndarray:
    """A smooth, asymmetric 20x24x16 volume (four Gaussian blobs)."""
    return _blobs((20, 24, 16), BLOBS, 3.0)


@pytest.fixture(scope="module")
def blob_pair() -> tuple[np.ndarray, np.ndarray]:
    """Fixed: a blob at the centre of 16x24x24; moving: the same blob 2.5 voxels further along axis 1."""
    shape = (16, 24, 24)
    fixed = _blobs(shape, [((7.5, 11.5, 11.5), 1.0)], 3.5)
    moving = _blobs(shape, [((7.5, 14.0, 11.5), 1.0)], 3.5)
    return moving, fixed


# small and quick: a 5-voxel LNCC window, a smoothed field, graph mode (XLA compiles too slowly to pay off
# on volumes this small; the chapters and the DVF and determinism tests use the default jit=True)
FAST_DDF = dict(image_loss_kwargs={"kernel_size": 5}, learning_rate=0.05, steps=60, chunk=20,
                field_sigma=1.0, progress=False, jit=False)


# ---------------------------------------------------------------------------------------------- pieces
def test_adam_update_matches_keras():
    target = tf.constant([[1.0, -2.0, 3.0]])
    start = np.array([[0.3, 0.1, -0.2]], np.float32)
    var = tf.Variable(start)
    opt = keras.optimizers.Adam(learning_rate=0.05)
    p, m, v = tf.constant(start), tf.zeros_like(target), tf.zeros_like(target)
    for step in range(1, 6):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(var - target) * [[1.0, 10.0, 0.1]])
        opt.apply_gradients([(tape.gradient(loss, var), var)])
        with tf.GradientTape() as tape:
            tape.watch(p)
            loss = tf.reduce_sum(tf.square(p - target) * [[1.0, 10.0, 0.1]])
        p, m, v = optimise.adam_update(p, tape.gradient(loss, p), m, v, tf.constant(step, tf.float32), 0.05)
    np.testing.assert_allclose(p.numpy(), var.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("factor", [(2, 2, 2), (1, 2, 4), (4, 2, 1)])
def test_pyramid_levels_keep_voxel_coordinates(factor):
    """A linear field written in a level's voxels comes back exactly when upsampled to full size."""
    shape = (16, 24, 20)
    a = np.array([[0.02, -0.01, 0.03], [0.01, 0.02, 0.0], [-0.02, 0.01, 0.01]])
    points = pyramid.level_points(shape, factor)  # full-size coordinates of the level's voxels
    assert points.shape[:3] == tuple(d // f for d, f in zip(shape, factor, strict=True))
    np.testing.assert_allclose(points.mean(axis=(0, 1, 2)), [(d - 1) / 2 for d in shape])  # centred
    coarse = (points @ a) / np.asarray(factor)  # displacement in the level's voxels
    coarse = tf.constant(coarse[None], tf.float32)
    full = pyramid.resample_field(coarse, shape, factor, (1, 1, 1)).numpy()[0]
    grid = pyramid.level_points(shape, (1, 1, 1))
    inside = tuple(slice(f, d - f) for d, f in zip(shape, factor, strict=True))  # borders are clamped
    np.testing.assert_allclose(full[inside], (grid @ a)[inside], atol=1e-4)


def test_gradient_of_affine_objective_matches_finite_differences(smooth_volume):
    """The optimisers rely on tape gradients through resampling; check them against central differences."""
    shape = smooth_volume.shape
    grid = warp.reference_grid(shape)
    fixed = tf.constant(smooth_volume[None])
    moving = warp.resample(fixed, warp.affine_grid(grid, warp.random_affine(1, 0.1, seed=2)))
    lin = tf.constant(np.eye(3, dtype=np.float32) * 1.01)

    def objective(shift):
        theta = warp.affine_from_centred(lin, shift, shape)
        return tf.reduce_mean(tf.square(warp.resample(moving, warp.affine_grid(grid, theta)) - fixed))

    shift = tf.constant([0.013, -0.021, 0.017])
    with tf.GradientTape() as tape:
        tape.watch(shift)
        value = objective(shift)
    grad = tape.gradient(value, shift).numpy()
    eps = 1e-3
    fd = [(objective(shift + e).numpy() - objective(shift - e).numpy()) / (2 * eps) for e in np.eye(3) * eps]
    np.testing.assert_allclose(grad, fd, rtol=0.05, atol=1e-6)


# ---------------------------------------------------------------------------------------------- affine
def test_affine_recovers_a_known_transform(smooth_volume):
    """moving(p) = fixed(T p) evaluated exactly (no interpolation), so T^-1 is the exact answer."""
    shape = smooth_volume.shape
    theta_true = warp.random_affine(1, 0.1, seed=1)
    where = warp.affine_grid(warp.reference_grid(shape), theta_true).numpy()[0]
    moving = _blobs(shape, BLOBS, 3.0, grid=where)
    before = metrics.affine_error(warp.IDENTITY_THETA, theta_true, shape).mean
    result = optimise.register_affine(
        moving, smooth_volume, coordinates="centred", mask_outside=True, levels=(2, 1), smoothing=(1.0, 0.0),
        learning_rate=(0.02, 0.005), steps=(100, 100), decay="cosine", progress=False)
    err = metrics.affine_error(result.theta, theta_true, shape)
    assert before > 1.0
    assert err.mean < 0.05 and err.max < 0.12, (before, err)  # what is left is linear-interpolation bias
    assert result.kind == "affine" and result.theta.shape == (1, 4, 3) and result.ddf.shape == (1, *shape, 3)
    assert result.warped.shape == (1, *shape)
    assert result.history["ssd"][-1] < 0.01 * result.history["ssd"][0]


def test_affine_tutorial_settings_run_and_improve(smooth_volume):
    shape = smooth_volume.shape
    theta_true = warp.random_affine(1, 0.1, seed=1)
    moving = warp.resample(smooth_volume[None], warp.affine_grid(warp.reference_grid(shape), theta_true))
    result = optimise.register_affine(moving, smooth_volume, steps=40, progress=False)
    assert result.settings.coordinates == "voxel" and result.steps == 40
    assert len(result.history["ssd"]) == 40 and len(result.history["total"]) == 40
    assert result.history["ssd"][-1] < result.history["ssd"][0]


def test_affine_result_warps_labels_with_theta(smooth_volume):
    shape = smooth_volume.shape
    labels = np.stack([smooth_volume > 0.5, smooth_volume > 0.3], -1).astype(np.float32)
    result = optimise.register_affine(smooth_volume, smooth_volume, steps=5, progress=False)
    warped = result.warp(labels[None])
    assert warped.shape == (1, *shape, 2)
    np.testing.assert_allclose(warped[0], labels, atol=0.02)  # near-identity transform


# ---------------------------------------------------------------------------------------------- nonrigid
@pytest.fixture(scope="module")
def ddf_result(blob_pair):
    moving, fixed = blob_pair
    return optimise.register_ddf(moving, fixed, levels=(2, 1), steps=(40, 30), seed=3, **{
        k: v for k, v in FAST_DDF.items() if k != "steps"})


def test_register_ddf_reduces_loss_and_improves_dice(blob_pair, ddf_result):
    moving, fixed = blob_pair
    hist = ddf_result.history
    assert set(hist) == {"total", "lncc", "bending"}
    first_fine = int(np.argmax(ddf_result.level == 1))
    assert hist["lncc"][-1] < hist["lncc"][first_fine]  # the fine level still improves
    assert hist["lncc"][first_fine - 1] < hist["lncc"][0]  # so does the coarse one
    before = metrics.dice(moving > 0.5, fixed > 0.5)
    after = metrics.dice(ddf_result.warp(moving[None])[0] > 0.5, fixed > 0.5)
    assert after > before + 0.1, (before, after)
    assert ddf_result.ddf.shape == (1, *fixed.shape, 3)
    # the blob moved +2.5 voxels along axis 1, so the DDF at its centre points that way
    assert 1.0 < ddf_result.ddf[0, 8, 12, 12, 1] < 3.5


def test_history_has_every_term_with_the_right_length(ddf_result):
    assert ddf_result.level_steps == [40, 30] and ddf_result.steps == 70
    for values in ddf_result.history.values():
        assert values.shape == (70,) and np.all(np.isfinite(values))
    assert ddf_result.level.shape == (70,) and set(ddf_result.level.tolist()) == {0, 1}
    total = ddf_result.history["lncc"] + 1.0 * ddf_result.history["bending"]
    np.testing.assert_allclose(ddf_result.history["total"], total, rtol=1e-5, atol=1e-6)
    assert ddf_result.time_per_step > 0 and ddf_result.total_time > 0
    assert not ddf_result.stopped_early


def test_dvf_parameterisation_does_not_fold(blob_pair):
    moving, fixed = blob_pair
    result = optimise.register_ddf(moving, fixed, parameterisation="dvf", seed=0, **dict(FAST_DDF, jit=True))
    assert result.kind == "dvf" and result.velocity.shape == (1, *fixed.shape, 3)
    assert metrics.folding_fraction(result.ddf) == 0.0
    after = metrics.dice(result.warped[0] > 0.5, fixed > 0.5)
    assert after > metrics.dice(moving > 0.5, fixed > 0.5) + 0.1


def test_same_seed_same_numbers(blob_pair):
    moving, fixed = blob_pair
    kw = dict(FAST_DDF, steps=20, jit=True)
    a = optimise.register_ddf(moving, fixed, seed=7, **kw)
    b = optimise.register_ddf(moving, fixed, seed=7, **kw)
    np.testing.assert_array_equal(a.ddf, b.ddf)
    for name in a.history:
        np.testing.assert_array_equal(a.history[name], b.history[name])


def test_plateau_stops_early_and_callbacks_see_every_step(smooth_volume):
    recorder = callbacks.Recorder()
    result = optimise.register_affine(
        smooth_volume, smooth_volume, coordinates="centred", learning_rate=0.001, steps=1000, chunk=10,
        plateau_tol=0.01, plateau_window=10, progress=False, callbacks=[recorder])
    assert result.stopped_early and result.steps < 1000
    assert len(result.history["ssd"]) == result.steps
    assert set(recorder.values) == {"total", "ssd"} and recorder.closed
    assert recorder.steps["ssd"] == list(range(result.steps))
    np.testing.assert_allclose(recorder.values["ssd"], result.history["ssd"], rtol=1e-6)


def test_callbacks_are_closed_when_the_run_fails(blob_pair):
    moving, fixed = blob_pair
    recorder = callbacks.Recorder()
    with pytest.raises(ValueError, match="NaN/inf"):
        optimise.register_ddf(moving, fixed, learning_rate=1e30, steps=20, chunk=10, progress=False,
                              jit=False, callbacks=[recorder])
    assert recorder.closed


def test_settings_are_frozen_and_replace_reaches_the_schedule():
    s = optimise.AFFINE_RECOMMENDED.replace(decay="constant", mask_outside=False)
    assert s.schedule.decay == "constant" and not s.mask_outside
    assert optimise.AFFINE_RECOMMENDED.schedule.decay == "cosine" and optimise.AFFINE_RECOMMENDED.mask_outside
    with pytest.raises(dataclasses.FrozenInstanceError):
        optimise.AFFINE_RECOMMENDED.loss = "ncc"  # type: ignore[misc]
    with pytest.raises(ValueError, match="unknown setting"):
        optimise.NONRIGID_TUTORIAL.replace(stepz=3)
    with pytest.raises(ValueError, match="one per level"):
        optimise.Schedule(levels=(2, 1), steps=(1, 2, 3))
    with pytest.raises(ValueError, match="deform_weight"):
        optimise.NonrigidSettings(deform_weight=-1.0)
    levels = optimise.NONRIGID_RECOMMENDED.schedule.resolve((32, 128, 128))
    assert [lv.factor for lv in levels] == [(2, 4, 4), (1, 2, 2)]
    assert [lv.sigma for lv in levels] == [(1.0, 2.0, 2.0), (0.0, 1.0, 1.0)]


def test_refinement_never_raises_the_loss_it_optimises(blob_pair):
    """Started from a poor field or from a good one, the refined objective is never above the start's."""
    moving, fixed = blob_pair
    shifted = np.zeros((1, *fixed.shape, 3), np.float32)
    shifted[..., 1] = 2.5  # the right answer, roughly: the blob moved +2.5 voxels along axis 1
    settings = dict(image_loss_kwargs={"kernel_size": 5}, steps=(20, 20), jit=False)
    for start in (np.zeros_like(shifted), -shifted, shifted):
        out = optimise.refine_ddf(moving, fixed, start, **settings)
        assert out.loss_after <= out.loss_before
        assert out.ddf.shape == start.shape and out.warped.shape == (1, *fixed.shape)
        if not out.improved:
            np.testing.assert_array_equal(out.ddf, start)
    poor = optimise.refine_ddf(moving, fixed, np.zeros_like(shifted), **settings)
    assert poor.improved and poor.loss_after < poor.loss_before
    assert metrics.folding_fraction(poor.ddf) == 0.0


# ---------------------------------------------------------------------------------------------- bad input
def test_bad_input_raises_value_error_naming_the_problem(blob_pair):
    moving, fixed = blob_pair
    with pytest.raises(ValueError, match="same shape"):
        optimise.register_ddf(moving[:, :20], fixed, steps=1, progress=False)
    with pytest.raises(ValueError, match="same shape"):
        optimise.register_affine(moving, fixed[:12], steps=1, progress=False)
    with pytest.raises(ValueError, match="unknown image loss 'mse'"):
        optimise.register_ddf(moving, fixed, image_loss="mse", steps=1, progress=False)
    with pytest.raises(ValueError, match="unknown deformation loss 'elastic'"):
        optimise.register_ddf(moving, fixed, deform_loss="elastic", steps=1, progress=False)
    with pytest.raises(ValueError, match="unknown image loss 'dice'"):
        optimise.register_affine(moving, fixed, loss="dice", steps=1, progress=False)
    with pytest.raises(ValueError, match="parameterisation"):
        optimise.register_ddf(moving, fixed, parameterisation="bspline", steps=1, progress=False)
    with pytest.raises(ValueError, match=r"\[d1, d2, d3\]"):
        optimise.register_affine(moving[None, ..., None, None], fixed, steps=1, progress=False)
    with pytest.raises(ValueError, match="one per level"):
        optimise.register_ddf(moving, fixed, levels=(2, 1), steps=(10, 10, 10), progress=False)
    with pytest.raises(ValueError, match="below 4 voxels"):
        optimise.register_ddf(moving, fixed, levels=(8,), steps=1, progress=False)
    with pytest.raises(ValueError, match="coordinates"):
        optimise.register_affine(moving, fixed, coordinates="physical", steps=1, progress=False)
    with pytest.raises(ValueError, match="decay"):
        optimise.register_affine(moving, fixed, decay="step", steps=1, progress=False)
    with pytest.raises(ValueError, match="NaN"):
        optimise.register_affine(np.full_like(moving, np.nan), fixed, steps=1, progress=False)
