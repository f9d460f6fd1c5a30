"""Separable filters: Gaussian kernels, zero-padded separable filtering and edge-repeating field smoothing.

Pure TensorFlow (and numpy for the kernels); used by the losses (LNCC windows, multi-scale label
smoothing) and by classical optimisation (smoothed field parameterisation). Volumes are
``[batch, d1, d2, d3, channels]`` (or ``[batch, d1, d2, d3]``) with static spatial sizes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tutorialreg.checks import as_float_tensor

__all__ = ["gaussian_kernel1d", "separable_filter", "smooth_field", "window_weights", "filter_axis"]

_VOLUME_SHAPE = "[batch, d1, d2, d3] or [batch, d1, d2, d3, channels]"


def gaussian_kernel1d(sigma: float, radius: int | None = None) -> np.ndarray:
    """Sampled 1-D Gaussian, normalised to sum 1.

    :param sigma: standard deviation in voxels (>= 0); ``sigma == 0`` gives ``[1.0]`` (no smoothing).
    :param radius: half-width in voxels; default ``ceil(3 * sigma)``.

    :return: numpy float64 array of shape ``[2 * radius + 1]``, centred on index ``radius``.
    """
    sigma = float(sigma)
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"gaussian_kernel1d: sigma must be a finite number >= 0, got {sigma}")
    if radius is None:
        radius = int(math.ceil(3.0 * sigma))
    radius = int(radius)
    if radius < 0:
        raise ValueError(f"gaussian_kernel1d: radius must be >= 0, got {radius}")
    if sigma == 0.0:
        kernel = np.zeros(2 * radius + 1)
        kernel[radius] = 1.0
        return kernel
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def _kernel_list(kernels) -> list[np.ndarray]:
    """One 1-D kernel (used on all three axes) or three of them -> list of three float64 arrays."""
    if isinstance(kernels, (tf.Tensor, tf.Variable)):
        kernels = kernels.numpy() if tf.executing_eagerly() else tf.get_static_value(kernels)
        if kernels is None:
            raise ValueError("separable_filter: kernels must be constant (numpy arrays or lists of numbers)")
    if isinstance(kernels, np.ndarray) and kernels.ndim == 1:
        kernels = [kernels] * 3
    elif isinstance(kernels, Sequence) and len(kernels) > 0 and np.ndim(kernels[0]) == 0:
        kernels = [np.asarray(kernels)] * 3
    if not isinstance(kernels, (Sequence, np.ndarray)) or len(kernels) != 3:
        raise ValueError(
            "separable_filter: kernels must be one 1-D kernel or a sequence of three 1-D kernels"
        )
    out = []
    for k in kernels:
        k = np.asarray(k, dtype=np.float64)
        if k.ndim != 1 or k.size % 2 != 1 or not np.all(np.isfinite(k)):
            raise ValueError(
                f"separable_filter: each kernel must be 1-D, finite, of odd length; got shape {k.shape}"
            )
        out.append(k)
    return out


def _window_sum(x: tf.Tensor, axis: int, size: int, pad: int) -> tf.Tensor:
    """Zero-pad ``x`` by ``pad`` on both sides of ``axis`` (1, 2 or 3), then sum windows of ``size`` (VALID).

    Implemented with ``avg_pool2d`` on a free reshape (reduce-window under XLA; all float dtypes on CPU).
    """
    d1, d2, d3, c = x.shape[1:]
    if c is None:
        c = tf.shape(x)[4]
    paddings = [[0, 0]] * 5
    paddings[axis] = [pad, pad]
    xp = tf.pad(x, paddings)
    n = (d1, d2, d3)[axis - 1] + 2 * pad
    if axis == 1:  # [b, n, d2*d3, c], window along rows
        y = tf.reshape(xp, [-1, n, d2 * d3, c])
        y = tf.nn.avg_pool2d(y, [1, size, 1, 1], [1, 1, 1, 1], "VALID")
        y = tf.reshape(y, [-1, n - size + 1, d2, d3, c])
    elif axis == 2:  # [b*d1, n, d3, c]
        y = tf.reshape(xp, [-1, n, d3, c])
        y = tf.nn.avg_pool2d(y, [1, size, 1, 1], [1, 1, 1, 1], "VALID")
        y = tf.reshape(y, [-1, d1, n - size + 1, d3, c])
    else:  # [b*d1, d2, n, c]
        y = tf.reshape(xp, [-1, d2, n, c])
        y = tf.nn.avg_pool2d(y, [1, 1, size, 1], [1, 1, 1, 1], "VALID")
        y = tf.reshape(y, [-1, d1, d2, n - size + 1, c])
    return y * tf.cast(size, y.dtype)


def _box_sum(x: tf.Tensor, axis: int, size: int, pad: int) -> tf.Tensor:
    """:func:`_window_sum` whose gradient is again a window sum (TF's AvgPoolGrad is slow on CPU)."""

    @tf.custom_gradient
    def box(v: tf.Tensor):
        def grad(dy: tf.Tensor) -> tf.Tensor:
            # adjoint: zero-pad dy by size - 1, window-sum, crop the pad added in the forward pass
            full = _window_sum(dy, axis, size, size - 1)
            index = [slice(None)] * 5
            index[axis] = slice(pad, full.shape[axis] - pad)
            return full[tuple(index)]

        return _window_sum(v, axis, size, pad), grad

    return box(x)


def _triangle_size(kernel: np.ndarray) -> int | None:
    """``m`` if ``kernel`` is proportional to ones(m) convolved with ones(m) (length 2m-1), else None."""
    m = (kernel.size + 1) // 2
    shape = np.convolve(np.ones(m), np.ones(m))
    return m if m > 1 and np.allclose(kernel, kernel[0] * shape, rtol=1e-12, atol=0.0) else None


def filter_axis(x: tf.Tensor, kernel: np.ndarray, axis: int) -> tf.Tensor:
    """Zero-padded 'SAME' correlation of rank-5 ``x`` with an odd 1-D ``kernel`` along ``axis``."""
    size = kernel.size
    radius = size // 2
    if size == 1:
        return x * tf.cast(kernel[0], x.dtype)
    if np.all(kernel == kernel[0]):  # box: one reduce-window
        return _box_sum(x, axis, size, radius) * tf.cast(kernel[0], x.dtype)
    m = _triangle_size(kernel)
    if m is not None:  # triangle = box(m) * box(m): pad fully once, two reduce-windows
        y = _box_sum(x, axis, m, radius)
        return _box_sum(y, axis, m, 0) * tf.cast(kernel[0], x.dtype)
    # general kernel: multiply by the banded (Toeplitz) matrix; zero padding = truncated band
    return _band_product(x, _band_matrix(x.shape[axis], kernel, edge=False), axis)


def window_weights(kernels: list[np.ndarray], dims: Sequence[int], dtype: tf.DType) -> tf.Tensor:
    """Sum of the in-volume kernel weights at every voxel, shape ``[1, d1, d2, d3, 1]``.

    Separable, so it is the outer product of three 1-D sums (kept as 1-D constants, broadcast).
    """
    sums = []
    for kernel, n in zip(kernels, dims, strict=True):
        r, size = kernel.size // 2, kernel.size
        sums.append(
            tf.constant([kernel[max(0, r - i) : min(size, r + n - i)].sum() for i in range(n)], dtype)
        )
    return (
        sums[0][None, :, None, None, None]
        * sums[1][None, None, :, None, None]
        * sums[2][None, None, None, :, None]
    )


def separable_filter(x, kernels, normalise: bool = False) -> tf.Tensor:
    """Filter a volume with a separable kernel (zero padding, output the same size: 'SAME').

    ``y[i] = sum_j k1[a] k2[b] k3[c] x[i + (a, b, c) - r]`` (correlation; kernels are centred, odd length),
    voxels outside the volume count as 0. Channels are filtered independently.

    :param x: ``[batch, d1, d2, d3, channels]`` (or ``[batch, d1, d2, d3]``), float; spatial sizes static.
    :param kernels: one 1-D kernel (numpy/list, odd length) used on all three axes, or a sequence of three
        (axis 0, 1, 2). Box and triangular kernels use reduce-window sums, others a banded matmul.
    :param normalise: divide by the sum of the kernel weights that fall inside the volume at each voxel, so
        the output is a local weighted mean that stays unbiased at the borders (kernels must then be
        non-negative with a positive centre).

    :return: tensor of the same shape and dtype as ``x``.
    """
    t = as_float_tensor(x, "separable_filter: x", (4, 5), _VOLUME_SHAPE)
    squeeze = t.shape.rank == 4
    if squeeze:
        t = t[..., None]
    dims = tuple(t.shape[1:4])
    if any(d is None for d in dims):
        raise ValueError(f"separable_filter: x needs spatial sizes known when traced, got shape {t.shape}")
    ks = _kernel_list(kernels)
    y = t
    for axis, kernel in enumerate(ks, start=1):
        y = filter_axis(y, kernel, axis)
    if normalise:
        y = y / window_weights(ks, dims, y.dtype)
    return y[..., 0] if squeeze else y


def _band_matrix(n: int, kernel: np.ndarray, edge: bool) -> np.ndarray:
    """``[n, n]`` float64 matrix ``B`` with ``(B @ x)[i] = sum_t kernel[t] x[i + t - r]`` (correlation).

    Samples outside ``[0, n)`` count as 0 (``edge=False``) or repeat the nearest edge sample (``edge=True``).
    """
    size = kernel.size
    radius = size // 2
    band = np.zeros((n, n), dtype=np.float64)
    for i in range(n):
        for t, w in enumerate(kernel):
            j = i + t - radius
            if edge:
                band[i, min(max(j, 0), n - 1)] += w
            elif 0 <= j < n:
                band[i, j] += w
    return band


def _band_product(x: tf.Tensor, band: np.ndarray, axis: int) -> tf.Tensor:
    """Apply ``[n, n]`` ``band`` along spatial ``axis`` (1, 2 or 3) of rank-5 ``x``."""
    equation = {1: "bijkc,li->bljkc", 2: "bijkc,lj->bilkc", 3: "bijkc,lk->bijlc"}[axis]
    return tf.einsum(equation, x, tf.constant(band, dtype=x.dtype))


def smooth_field(u: tf.Tensor, sigma: float) -> tf.Tensor:
    """Separable Gaussian smoothing of a field ``[batch, n1, n2, n3, c]`` whose borders repeat the edge value.

    :param sigma: standard deviation in voxels of the field's grid (0: unchanged); kernel radius
        ``max(1, ceil(3 sigma))``.
    :return: the smoothed field, same shape and dtype. One small matrix product per axis, so the
        gradient is as cheap as the forward pass.
    """
    if sigma <= 0:
        return u
    kernel = gaussian_kernel1d(sigma, max(1, int(math.ceil(3 * sigma)))).astype(np.float32)
    for axis in (1, 2, 3):
        u = _band_product(u, _band_matrix(u.shape[axis], kernel, edge=True).astype(np.float32), axis)
    return u
