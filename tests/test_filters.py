"""Separable filters against scipy: Gaussian kernels, zero-padded filtering, edge-repeating smoothing."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from tutorialreg import filters


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_gaussian_kernel1d():
    k = filters.gaussian_kernel1d(1.5)
    assert k.shape == (2 * 5 + 1,)  # radius ceil(4.5) = 5
    np.testing.assert_allclose(k.sum(), 1.0)
    ref = np.exp(-0.5 * (np.arange(-5, 6) / 1.5) ** 2)
    np.testing.assert_allclose(k, ref / ref.sum())
    assert filters.gaussian_kernel1d(2.0, radius=1).shape == (3,)
    np.testing.assert_array_equal(filters.gaussian_kernel1d(0.0), [1.0])
    with pytest.raises(ValueError):
        filters.gaussian_kernel1d(-1.0)


@pytest.mark.parametrize(
    "kernels",
    [
        np.ones(5),  # box
        np.convolve(np.ones(3), np.ones(3)) * 0.5,  # triangle
        [0.2, 1.0, 0.3],  # general, asymmetric
        [np.ones(3), filters.gaussian_kernel1d(1.0), np.array([0.0, 1.0, 2.0, 1.0, 0.5])],  # one per axis
        np.ones(25),  # longer than every axis
    ],
)
@pytest.mark.parametrize("normalise", [False, True])
def test_separable_filter_matches_scipy(rng, kernels, normalise):
    x = rng.random((2, 9, 10, 11, 2))
    ks = [np.asarray(kernels, float)] * 3 if np.ndim(kernels[0]) == 0 else [np.asarray(k) for k in kernels]
    ref = np.empty_like(x)
    for b in range(2):
        for c in range(2):
            v, one = x[b, ..., c], np.ones(x.shape[1:4])
            for ax, k in enumerate(ks):
                v = ndimage.correlate1d(v, k, axis=ax, mode="constant")
                one = ndimage.correlate1d(one, k, axis=ax, mode="constant")
            ref[b, ..., c] = v / one if normalise else v
    out = filters.separable_filter(x, kernels, normalise=normalise)
    assert out.shape == x.shape and out.dtype == tf.float64
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10, atol=1e-10)
    # rank-4 input stays rank 4
    assert filters.separable_filter(x[..., 0], kernels).shape == x.shape[:-1]


def test_separable_filter_rejects_bad_kernels(rng):
    x = rng.random((1, 5, 5, 5, 1))
    with pytest.raises(ValueError, match="odd length"):
        filters.separable_filter(x, np.ones(4))
    with pytest.raises(ValueError, match=r"\[batch, d1, d2, d3"):
        filters.separable_filter(x[0, ..., 0], np.ones(3))  # rank 3


@pytest.mark.parametrize("sigma", [0.7, 1.0, 2.0])
def test_field_smoothing_matches_scipy_with_repeated_edges(rng, sigma):
    u = rng.normal(size=(1, 6, 9, 7, 3)).astype(np.float32)
    smoothed = filters.smooth_field(tf.constant(u), sigma).numpy()
    radius = max(1, int(np.ceil(3 * sigma)))
    sigmas = (0, sigma, sigma, sigma, 0)
    expected = ndimage.gaussian_filter(u, sigmas, mode="nearest", truncate=radius / sigma)
    np.testing.assert_allclose(smoothed, expected, atol=1e-5)
    np.testing.assert_array_equal(filters.smooth_field(tf.constant(u), 0.0).numpy(), u)
