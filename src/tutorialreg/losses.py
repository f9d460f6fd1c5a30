"""Image, label and deformation losses for registration (TensorFlow).

Every loss returns a value to MINIMISE with shape ``[batch]``; identical inputs (or a zero/affine
displacement for the deformation losses) give the minimum.

Inputs
    Images and labels are ``[batch, d1, d2, d3]`` or ``[batch, d1, d2, d3, channels]``; ``y_true`` and
    ``y_pred`` must have the same shape. Multi-channel inputs are scored per channel and the channel
    scores averaged. DDFs are ``[batch, d1, d2, d3, 3]`` in voxel units (ij order, see
    :mod:`tutorialreg.warp`). Numpy arrays and tensors are both accepted. Floating-point inputs keep
    their dtype (float16/32/64, so gradients can be checked in float64); integer or boolean inputs (e.g.
    ``uint8`` masks) are cast to float32; if ``y_true`` and ``y_pred`` differ in dtype, ``y_true`` is cast
    to the dtype of ``y_pred``. Anything else raises :class:`ValueError` naming the expected shape.

Conventions chosen
    - :func:`ssd`: mean over voxels of ``(y_true - y_pred) ** 2``.
    - :func:`ncc`: ``1 - NCC`` (global Pearson correlation), in ``[0, 2]``; 0 for identical images.
    - :func:`lncc`: ``1 - mean(cc)`` with the local squared correlation
      ``cc = (cov**2 + eps) / (var_t * var_p + eps)`` over a window, in ``[0, 1]``; 0 for identical images.
    - :func:`gmi`: ``-MI`` (nats) from a Gaussian Parzen-window joint histogram of intensities in [0, 1].
    - :func:`dice_loss`, :func:`jaccard_loss`: ``1 - soft overlap`` (squared-norm denominators, equal to the
      set formulas on binary labels); :func:`cross_entropy`: mean binary cross-entropy per voxel. All three
      take ``scales`` (Gaussian smoothing sigmas in voxels, losses averaged over scales); Dice also takes
      ``pools`` (average-pooling factors) instead.
    - :func:`centroid_distance`: distance between soft label centroids (for small labels such as landmarks).
    - :func:`bending_energy`, :func:`gradient_norm`: finite differences on interior voxels, voxel units.

Everything is ``tf.function(jit_compile=True)`` friendly: only static shapes are inspected in Python,
spatial sizes must be known when the function is traced.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from tutorialreg.checks import as_float_tensor, check_same_shape
from tutorialreg.filters import filter_axis, gaussian_kernel1d, separable_filter, window_weights

__all__ = [
    "bending_energy",
    "centroid_distance",
    "cross_entropy",
    "dice_loss",
    "get",
    "gmi",
    "gradient_l1",
    "gradient_l2",
    "gradient_norm",
    "jaccard_loss",
    "lncc",
    "ncc",
    "ssd",
    "sweep",
]

_VOLUME_SHAPE = "[batch, d1, d2, d3] or [batch, d1, d2, d3, channels]"
_DDF_SHAPE = "[batch, d1, d2, d3, 3] (each d >= 3)"
_LNCC_KERNELS = ("rectangular", "triangular", "gaussian")


# ----------------------------------------------------------------------------------------------------
# input checking
# ----------------------------------------------------------------------------------------------------


def _volume(x, what: str, dtype: tf.DType | None = None) -> tf.Tensor:
    """``x`` as a rank-5 ``[batch, d1, d2, d3, c]`` floating tensor; rank 4 gets a channel axis."""
    t = as_float_tensor(x, what, (4, 5), _VOLUME_SHAPE, dtype)
    return t[..., None] if t.shape.rank == 4 else t


def _pair(y_true, y_pred, fn: str) -> tuple[tf.Tensor, tf.Tensor]:
    """Check and convert a ``(y_true, y_pred)`` pair to rank-5 tensors of one dtype and shape."""
    p = as_float_tensor(y_pred, f"{fn}: y_pred", None, _VOLUME_SHAPE)
    t = as_float_tensor(y_true, f"{fn}: y_true", None, _VOLUME_SHAPE, p.dtype)
    check_same_shape(t, p, (f"{fn}: y_true", "y_pred"), _VOLUME_SHAPE)
    return _volume(t, f"{fn}: y_true"), _volume(p, f"{fn}: y_pred")


def _static_spatial(x: tf.Tensor, what: str) -> tuple[int, int, int]:
    dims = tuple(x.shape[1:4])
    if any(d is None for d in dims):
        raise ValueError(
            f"{what}: the spatial sizes d1, d2, d3 must be known when traced, got shape {x.shape}"
        )
    return dims  # type: ignore[return-value]


def _ddf(ddf, fn: str) -> tf.Tensor:
    t = as_float_tensor(ddf, f"{fn}: ddf", (5,), _DDF_SHAPE)
    if t.shape[-1] != 3 or any(d is not None and d < 3 for d in t.shape[1:4]):
        raise ValueError(f"{fn}: ddf must have shape {_DDF_SHAPE}, got {tuple(t.shape)}")
    return t


def _lncc_kernel(kernel_size: int, kernel: str) -> np.ndarray:
    if not isinstance(kernel_size, (int, np.integer)) or kernel_size < 1 or kernel_size % 2 != 1:
        raise ValueError(f"lncc: kernel_size must be an odd integer >= 1, got {kernel_size!r}")
    k = int(kernel_size)
    if kernel == "rectangular":
        return np.ones(k)
    if kernel == "triangular":
        m = (k + 1) // 2
        return np.convolve(np.ones(m), np.ones(m))
    if kernel == "gaussian":
        return gaussian_kernel1d(k / 3.0, radius=k // 2)
    raise ValueError(f"lncc: kernel must be one of {_LNCC_KERNELS}, got {kernel!r}")


# ----------------------------------------------------------------------------------------------------
# image losses
# ----------------------------------------------------------------------------------------------------


def ssd(y_true, y_pred) -> tf.Tensor:
    """Mean squared difference over voxels (and channels). Inputs ``[b,d1,d2,d3(,c)]``; returns ``[b]``."""
    t, p = _pair(y_true, y_pred, "ssd")
    return tf.reduce_mean(tf.square(t - p), axis=[1, 2, 3, 4])


def ncc(y_true, y_pred, eps: float = 1e-10) -> tf.Tensor:
    """Global normalised cross-correlation loss ``1 - NCC`` per channel, averaged over channels.

    ``NCC = cov(t, p) / sqrt(max(var(t) var(p), eps))`` over all voxels of an image (population moments),
    so the loss lies in ``[0, 2]``: 0 for identical (or positively linearly related) images, 2 for
    inverted ones.

    :param y_true, y_pred: ``[b, d1, d2, d3]`` or ``[b, d1, d2, d3, c]``.
    :param eps: floor on ``var(t) var(p)``; a constant image gets NCC 0 (and a finite gradient).

    :return: ``[b]``.
    """
    t, p = _pair(y_true, y_pred, "ncc")
    axes = [1, 2, 3]
    t = t - tf.reduce_mean(t, axis=axes, keepdims=True)
    p = p - tf.reduce_mean(p, axis=axes, keepdims=True)
    cov = tf.reduce_mean(t * p, axis=axes)
    var_t = tf.reduce_mean(tf.square(t), axis=axes)
    var_p = tf.reduce_mean(tf.square(p), axis=axes)
    corr = cov / tf.sqrt(tf.maximum(var_t * var_p, tf.cast(eps, t.dtype)))
    return 1.0 - tf.reduce_mean(corr, axis=-1)


def lncc(y_true, y_pred, kernel_size: int = 9, kernel: str = "rectangular", eps: float = 1e-5) -> tf.Tensor:
    """Local normalised cross-correlation loss ``1 - mean(cc)``.

    At every voxel the windowed (weighted) means ``E[.]`` give ``cov = E[tp] - E[t]E[p]``,
    ``var_t = E[t^2] - E[t]^2`` (same for p) and the local squared correlation
    ``cc = (cov^2 + eps) / (var_t * var_p + eps)``, which lies in ``[0, 1]`` (Cauchy-Schwarz) and is 1
    where the images are locally linearly related or flat. The loss is ``1 - cc`` averaged over voxels
    and channels, in ``[0, 1]``, 0 for identical images. ``eps`` is absolute, so intensities are best
    scaled to about [0, 1].

    Windows: ``kernel`` of ``kernel_size`` taps per axis (odd), separable:
    ``"rectangular"`` (box), ``"triangular"`` (box of ``(k+1)/2`` convolved with itself: weights
    1, 2, ..., (k+1)/2, ..., 2, 1) or ``"gaussian"`` (sigma ``k/3`` voxels, truncated to ``k`` taps).
    Borders: zero padding, and each mean is divided by the sum of the weights inside the volume, so a
    window that sticks out of the volume averages only the voxels inside.

    :param y_true, y_pred: ``[b, d1, d2, d3]`` or ``[b, d1, d2, d3, c]``, static spatial sizes.

    :return: ``[b]``.
    """
    t, p = _pair(y_true, y_pred, "lncc")
    dims = _static_spatial(t, "lncc: y_true")
    ks = [_lncc_kernel(kernel_size, kernel)] * 3
    weights = window_weights(ks, dims, t.dtype)

    def local_mean(v: tf.Tensor) -> tf.Tensor:
        for axis, k in enumerate(ks, start=1):
            v = filter_axis(v, k, axis)
        return v / weights

    mean_t, mean_p = local_mean(t), local_mean(p)
    cov = local_mean(t * p) - mean_t * mean_p
    var_t = local_mean(t * t) - mean_t * mean_t
    var_p = local_mean(p * p) - mean_p * mean_p
    eps_t = tf.cast(eps, t.dtype)
    cc = (cov * cov + eps_t) / (var_t * var_p + eps_t)
    return 1.0 - tf.reduce_mean(cc, axis=[1, 2, 3, 4])


def gmi(y_true, y_pred, num_bins: int = 23, sigma_ratio: float = 0.5, eps: float = 1e-7) -> tf.Tensor:
    """Global mutual information loss ``-MI`` (nats), differentiable via Gaussian Parzen windows.

    Intensities are clipped to [0, 1] (scale images first). ``num_bins`` bin centres are spread evenly
    over [0, 1]; each voxel value ``v`` contributes weights ``exp(-(v - c_i)^2 / (2 s^2))`` normalised over
    the bins, with ``s = sigma_ratio * bin spacing``. The joint distribution ``P_ab`` is the mean over
    voxels of the outer product of the two weight vectors, and
    ``MI = sum_ab P_ab log((P_ab + eps) / (P_a P_b + eps))``. Computed per channel, averaged over channels.

    :param y_true, y_pred: ``[b, d1, d2, d3]`` or ``[b, d1, d2, d3, c]``.

    :return: ``[b]``: ``-MI`` in nats. The Parzen blur keeps MI below the hard-histogram value: identical
        uniformly spread images give about -2.07 with the defaults (a 23-bin histogram: log 23 = 3.14).
    """
    if int(num_bins) < 2:
        raise ValueError(f"gmi: num_bins must be >= 2, got {num_bins}")
    t, p = _pair(y_true, y_pred, "gmi")
    dtype = t.dtype
    centres = tf.constant(np.linspace(0.0, 1.0, int(num_bins)), dtype=dtype)
    inv_two_var = 1.0 / (2.0 * (float(sigma_ratio) / (int(num_bins) - 1)) ** 2)

    def parzen(v: tf.Tensor) -> tf.Tensor:  # [b, d1, d2, d3, c] -> [b, c, n, bins]
        shape = tf.shape(v)
        v = tf.reshape(tf.transpose(v, [0, 4, 1, 2, 3]), [shape[0], shape[4], -1, 1])
        w = tf.exp(-tf.cast(inv_two_var, dtype) * tf.square(tf.clip_by_value(v, 0.0, 1.0) - centres))
        return w / tf.reduce_sum(w, axis=-1, keepdims=True)

    w_t, w_p = parzen(t), parzen(p)
    n = tf.cast(tf.shape(w_t)[2], dtype)
    p_ab = tf.matmul(w_t, w_p, transpose_a=True) / n  # [b, c, bins, bins]
    p_a = tf.reduce_mean(w_t, axis=2)  # [b, c, bins]
    p_b = tf.reduce_mean(w_p, axis=2)
    eps_t = tf.cast(eps, dtype)
    ratio = (p_ab + eps_t) / (p_a[..., :, None] * p_b[..., None, :] + eps_t)
    mi = tf.reduce_sum(p_ab * tf.math.log(ratio), axis=[2, 3])  # [b, c]
    return -tf.reduce_mean(mi, axis=-1)


# ----------------------------------------------------------------------------------------------------
# label losses
# ----------------------------------------------------------------------------------------------------


def _scales(scales, fn: str) -> list[float]:
    if scales is None:
        return [0.0]
    values = [float(s) for s in np.atleast_1d(np.asarray(scales, dtype=np.float64))]
    if not values or any(not math.isfinite(s) or s < 0 for s in values):
        raise ValueError(
            f"{fn}: scales must be a non-empty list of Gaussian sigmas >= 0 (voxels), got {scales!r}"
        )
    return values


def _block_mean(x: tf.Tensor, k: int) -> tf.Tensor:
    """Means of ``[b, d1, d2, d3, c]`` over ``k``-cubed blocks (stride ``k``); a partial block at the far
    end of an axis averages the voxels it has. Any floating dtype (average pooling is float32-only on CPU)."""
    _static_spatial(x, "pools")
    for axis in (1, 2, 3):
        d = x.shape[axis]
        n = -(-d // k)
        pad = [[0, 0]] * 5
        pad[axis] = [0, n * k - d]
        shape = [-1 if a == 0 else s for a, s in enumerate(x.shape)]
        shape[axis : axis + 1] = [n, k]
        shape[-1] = tf.shape(x)[-1]
        counts = np.minimum(k, d - k * np.arange(n)).reshape([n if a == axis else 1 for a in range(5)])
        x = tf.reduce_sum(tf.reshape(tf.pad(x, pad), shape), axis=axis + 1) / tf.constant(counts, x.dtype)
    return x


def _pools(pools, fn: str) -> list[int]:
    given = np.atleast_1d(np.asarray(pools if pools is not None else [], dtype=np.float64))
    values = [int(k) for k in given]
    if not values or min(values) < 1 or np.any(given != np.round(given)):
        raise ValueError(f"{fn}: pools must be a non-empty list of integers >= 1, got {pools!r}")
    return values


def _multiscale(
    y_true, y_pred, scales, fn: str, per_scale: Callable[[tf.Tensor, tf.Tensor], tf.Tensor], pools=None
) -> tf.Tensor:
    """Average ``per_scale(t_s, p_s)`` over scales (``t_s``, ``p_s``: labels smoothed by sigma ``s``), or
    over average-pooling factors ``k`` (``k``-cubed windows, stride ``k``; 1 = as given)."""
    t, p = _pair(y_true, y_pred, fn)
    if pools is not None:
        if scales is not None:
            raise ValueError(f"{fn}: give scales or pools, not both")
        out = []
        for k in _pools(pools, fn):
            out.append(per_scale(t, p) if k == 1 else per_scale(_block_mean(t, k), _block_mean(p, k)))
        return tf.add_n(out) / float(len(out))
    sigmas = _scales(scales, fn)
    if any(s > 0 for s in sigmas):
        _static_spatial(t, f"{fn}: y_true")
    losses = []
    for sigma in sigmas:
        if sigma == 0:
            losses.append(per_scale(t, p))
        else:
            kernel = gaussian_kernel1d(sigma)
            losses.append(per_scale(separable_filter(t, kernel, True), separable_filter(p, kernel, True)))
    return tf.add_n(losses) / float(len(losses))


def dice_loss(y_true, y_pred, scales: Sequence[float] | None = None, eps: float = 1e-5,
              pools: Sequence[int] | None = None) -> tf.Tensor:
    """Soft Dice loss ``1 - (2 sum(t p) + eps) / (sum t^2 + sum p^2 + eps)`` per channel, channel-averaged.

    For binary labels ``t^2 = t`` and this is the usual ``2 |T n P| / (|T| + |P|)``. The squares in the
    denominator keep identical soft labels (e.g. after smoothing) at loss 0 and make ``y_pred = y_true``
    the unique minimum (``2 t.p <= |t|^2 + |p|^2``), at every scale.

    :param y_true, y_pred: labels/probabilities in [0, 1], ``[b, d1, d2, d3]`` or ``[b, d1, d2, d3, c]``.
    :param scales: Gaussian sigmas in voxels; both labels are smoothed at each scale (0 = as given) and the
        losses averaged over scales. ``None`` = ``[0]``. Smoothing is a normalised local mean (zero
        padding, divided by the in-volume weight, see :func:`tutorialreg.filters.separable_filter`),
        radius ``ceil(3 sigma)``.
    :param eps: keeps two empty labels at loss 0.
    :param pools: instead of ``scales``, average-pooling factors (integers, 1 = as given): the losses of
        the labels block-averaged by each factor (``k``-cubed blocks, 'SAME' padding) are averaged. Coarse
        factors reach far, like wide Gaussians, at a fraction of their cost.

    :return: ``[b]`` in [0, 1].
    """

    def one_scale(t: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
        axes = [1, 2, 3]
        inter = tf.reduce_sum(t * p, axis=axes)
        total = tf.reduce_sum(t * t, axis=axes) + tf.reduce_sum(p * p, axis=axes)
        e = tf.cast(eps, t.dtype)
        return 1.0 - tf.reduce_mean((2.0 * inter + e) / (total + e), axis=-1)

    return _multiscale(y_true, y_pred, scales, "dice_loss", one_scale, pools)


def jaccard_loss(y_true, y_pred, scales: Sequence[float] | None = None, eps: float = 1e-5) -> tf.Tensor:
    """Soft Jaccard loss ``1 - (sum(t p) + eps) / (sum t^2 + sum p^2 - sum(t p) + eps)``.

    Binary labels: ``1 - |T n P| / |T u P|``. Channels, ``scales`` and ``eps`` as in :func:`dice_loss`.

    :return: ``[b]`` in [0, 1].
    """

    def one_scale(t: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
        axes = [1, 2, 3]
        inter = tf.reduce_sum(t * p, axis=axes)
        union = tf.reduce_sum(t * t, axis=axes) + tf.reduce_sum(p * p, axis=axes) - inter
        e = tf.cast(eps, t.dtype)
        return 1.0 - tf.reduce_mean((inter + e) / (union + e), axis=-1)

    return _multiscale(y_true, y_pred, scales, "jaccard_loss", one_scale)


def cross_entropy(y_true, y_pred, scales: Sequence[float] | None = None, eps: float = 1e-6) -> tf.Tensor:
    """Binary cross-entropy ``-(t log p + (1 - t) log(1 - p))`` averaged over voxels and channels.

    ``y_pred`` is clipped to ``[eps, 1 - eps]``; each channel is an independent binary label. ``scales`` as in
    :func:`dice_loss`. Identical hard labels give about ``eps`` (the minimum over ``y_pred``).

    :return: ``[b]``.
    """

    def one_scale(t: tf.Tensor, p: tf.Tensor) -> tf.Tensor:
        p = tf.clip_by_value(p, eps, 1.0 - eps)
        ce = -(t * tf.math.log(p) + (1.0 - t) * tf.math.log(1.0 - p))
        return tf.reduce_mean(ce, axis=[1, 2, 3, 4])

    return _multiscale(y_true, y_pred, scales, "cross_entropy", one_scale)


def centroid_distance(y_true, y_pred, spacing: Sequence[float] = (1.0, 1.0, 1.0), smooth: float = 1.0,
                      eps: float = 1e-3) -> tf.Tensor:
    """Distance between the soft centroids of ``y_true`` and ``y_pred``, per channel, channel-averaged.

    A soft centroid is the label-weighted mean position ``sum(x p(x)) / sum(p(x))`` (ij indexing). The
    distance is in ``spacing`` units (mm when ``spacing`` is the voxel size in mm), made smooth at 0 as
    ``sqrt(d^2 + smooth^2) - smooth`` (about ``d`` far away, ``d^2 / (2 smooth)`` near 0). Unlike an overlap
    loss it has a gradient however far apart two small labels (landmarks) are. An empty channel's centroid
    is the origin: mask such channels out (training weights channels by the pair's label mask).

    :param y_true, y_pred: labels/probabilities in [0, 1], ``[b, d1, d2, d3]`` or ``[b, d1, d2, d3, c]``.
    :param spacing: voxel size along axes 0, 1, 2.
    :param smooth: distance below which the loss is quadratic (``spacing`` units).
    :param eps: added to each label's mass.
    :return: ``[b]``.
    """
    t, p = _pair(y_true, y_pred, "centroid_distance")
    dims = _static_spatial(t, "centroid_distance: y_true")
    if len(spacing) != 3 or min(float(v) for v in spacing) <= 0:
        raise ValueError(f"centroid_distance: spacing must be 3 voxel sizes > 0, got {spacing!r}")
    e, sq = tf.cast(eps, t.dtype), 0.0
    for axis, (n, h) in enumerate(zip(dims, spacing, strict=True)):
        shape = [1, 1, 1, 1, 1]
        shape[axis + 1] = n
        x = tf.reshape(tf.range(n, dtype=t.dtype) * tf.cast(h, t.dtype), shape)
        centres = [tf.reduce_sum(v * x, axis=[1, 2, 3]) / (tf.reduce_sum(v, axis=[1, 2, 3]) + e)
                   for v in (t, p)]
        sq = sq + tf.square(centres[0] - centres[1])
    s = tf.cast(smooth, t.dtype)
    return tf.reduce_mean(tf.sqrt(sq + s * s) - s, axis=-1)


# ----------------------------------------------------------------------------------------------------
# deformation losses
# ----------------------------------------------------------------------------------------------------


def _interior_shift(u: tf.Tensor, s1: int, s2: int, s3: int) -> tf.Tensor:
    """``u[:, 1+s1 : d1-1+s1, 1+s2 : ..., 1+s3 : ..., :]`` for shifts in {-1, 0, 1} (interior-sized)."""
    d1, d2, d3 = (tf.shape(u)[i] for i in (1, 2, 3))
    return u[:, 1 + s1 : d1 - 1 + s1, 1 + s2 : d2 - 1 + s2, 1 + s3 : d3 - 1 + s3, :]


#: A finite-difference stencil: (weight in the penalty, taps ((shift along axes 0, 1, 2), coefficient)).
Stencil = tuple[float, tuple[tuple[tuple[int, int, int], float], ...]]


def _unit(axis: int, step: int = 1) -> tuple[int, int, int]:
    s = [0, 0, 0]
    s[axis] = step
    return (s[0], s[1], s[2])


def _plus(a: tuple[int, int, int], b: tuple[int, int, int]) -> tuple[int, int, int]:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


# u(x+1) - 2u(x) + u(x-1) along each axis (weight 1), and the mixed
# (u(+,+) - u(+,-) - u(-,+) + u(-,-)) / 4 for each pair of axes (weight 2, the two equal mixed terms)
_BENDING: tuple[Stencil, ...] = tuple(
    (1.0, ((_unit(a), 1.0), ((0, 0, 0), -2.0), (_unit(a, -1), 1.0))) for a in range(3)
) + tuple(
    (2.0, tuple((_plus(_unit(a, sa), _unit(b, sb)), 0.25 * sa * sb) for sa in (1, -1) for sb in (1, -1)))
    for a, b in ((0, 1), (0, 2), (1, 2))
)
# central first differences (u(x+1) - u(x-1)) / 2 along each axis
_GRADIENT: tuple[Stencil, ...] = tuple((1.0, ((_unit(a), 0.5), (_unit(a, -1), -0.5))) for a in range(3))


def _apply_stencil(u: tf.Tensor, taps, sign: int = 1) -> tf.Tensor:
    """Sum of ``coefficient * u(x + sign * shift)`` over the taps, on the interior of ``u``."""
    out = None
    for shift, coef in taps:
        term = _interior_shift(u, *(sign * v for v in shift))
        term = term if coef == 1.0 else coef * term
        out = term if out is None else out + term
    return out


def _stencil_penalty(u: tf.Tensor, stencils: tuple[Stencil, ...], l1: bool) -> tf.Tensor:
    """``mean over interior voxels of sum_s weight_s sum_k phi((L_s u)_k)``, ``phi = |.|`` or ``(.)^2``.

    ``u`` ``[b, d1, d2, d3, c]`` -> ``[b]``. The gradient is written out as the adjoint stencils applied to
    the zero-padded residuals, ``sum_s weight_s L_s^T phi'(L_s u) / n``: the same numbers as automatic
    differentiation, but without one full-size strided-slice gradient per tap (``benchmarks/bench_core.py``
    times it).
    """

    @tf.custom_gradient
    def penalty(u):
        residuals = [_apply_stencil(u, taps) for _, taps in stencils]
        weights = [w for w, _ in stencils]
        phi = tf.abs if l1 else tf.square
        total = tf.add_n([w * phi(r) for w, r in zip(weights, residuals, strict=True)])
        n = tf.cast(tf.reduce_prod(tf.shape(total)[1:4]), u.dtype)
        value = tf.reduce_sum(total, axis=[1, 2, 3, 4]) / n

        def grad(upstream):
            scale = tf.reshape(upstream / n, [-1, 1, 1, 1, 1])
            pad = [[0, 0], [2, 2], [2, 2], [2, 2], [0, 0]]
            parts = []
            for w, (_, taps), r in zip(weights, stencils, residuals, strict=True):
                d_r = w * scale * (tf.sign(r) if l1 else 2.0 * r)
                parts.append(_apply_stencil(tf.pad(d_r, pad), taps, sign=-1))  # adjoint: shifts reversed
            return tf.add_n(parts)

        return value, grad

    return penalty(u)


def bending_energy(ddf) -> tf.Tensor:
    """Bending energy of a DDF, averaged over interior voxels (voxel units).

    At each interior voxel (one voxel in from every face):
    ``sum_k [ u_k,11^2 + u_k,22^2 + u_k,33^2 + 2 (u_k,12^2 + u_k,13^2 + u_k,23^2) ]`` with pure second
    derivatives ``u(x+1) - 2u(x) + u(x-1)`` and mixed ones from central differences
    ``(u(+,+) - u(+,-) - u(-,+) + u(-,-)) / 4``. Both are exact for quadratic fields; an affine DDF gives 0.

    :param ddf: ``[b, d1, d2, d3, 3]``, each spatial size >= 3.

    :return: ``[b]``.
    """
    return _stencil_penalty(_ddf(ddf, "bending_energy"), _BENDING, l1=False)


def gradient_norm(ddf, l1: bool = False) -> tf.Tensor:
    """Mean norm of the DDF's spatial gradient over interior voxels (voxel units).

    The 3x3 Jacobian of the displacement ``du_k / dx_a`` uses central differences
    ``(u(x+1) - u(x-1)) / 2``; per interior voxel the loss takes ``sum |du_k/dx_a|`` (``l1=True``) or
    ``sum (du_k/dx_a)^2`` (squared Frobenius norm, ``l1=False``), then averages over voxels.
    For ``u(x) = A x + b`` that is ``sum |A|`` or ``|A|_F^2``.

    :param ddf: ``[b, d1, d2, d3, 3]``, each spatial size >= 3.

    :return: ``[b]``.
    """
    return _stencil_penalty(_ddf(ddf, "gradient_norm"), _GRADIENT, l1=l1)


# ----------------------------------------------------------------------------------------------------
# lookup by name
# ----------------------------------------------------------------------------------------------------


def _registry() -> dict[str, Callable[..., tf.Tensor]]:
    return {
        "ssd": ssd,
        "ncc": ncc,
        "lncc": lncc,
        "gmi": gmi,
        "dice": dice_loss,
        "jaccard": jaccard_loss,
        "cross-entropy": cross_entropy,
        "centroid": centroid_distance,
        "bending": bending_energy,
        "gradient-l1": gradient_l1,
        "gradient-l2": gradient_l2,
    }


def gradient_l1(ddf) -> tf.Tensor:
    """``gradient_norm(ddf, l1=True)``: mean L1 norm of the DDF's spatial gradient, ``[b]``."""
    return gradient_norm(ddf, l1=True)


def gradient_l2(ddf) -> tf.Tensor:
    """``gradient_norm(ddf, l1=False)``: mean squared Frobenius norm of the DDF's gradient, ``[b]``."""
    return gradient_norm(ddf, l1=False)


def sweep(loss_fns: dict[str, Callable[..., tf.Tensor]], fixed, movings) -> dict[str, np.ndarray]:
    """Evaluate each loss between ``fixed`` and every volume of ``movings`` (e.g. a translation sweep).

    :param loss_fns: ``{name: fn(y_true, y_pred) -> [batch]}``; the first batch element is kept.
    :param fixed: ``[1, d1, d2, d3(, c)]``.
    :param movings: sequence of volumes shaped like ``fixed``.
    :return: ``{name: float64 array [len(movings)]}``.
    """
    return {name: np.array([float(fn(fixed, m)[0]) for m in movings]) for name, fn in loss_fns.items()}


def get(name: str) -> Callable[..., tf.Tensor]:
    """Loss function by name (case-insensitive, ``_`` same as ``-``).

    Names: ``ssd, ncc, lncc, gmi`` (``fn(y_true, y_pred)``), ``dice, jaccard, cross-entropy, centroid``
    (``fn(y_true, y_pred)``), ``bending, gradient-l1, gradient-l2`` (``fn(ddf)``). Unknown -> ValueError.
    """
    registry = _registry()
    key = name.strip().lower().replace("_", "-") if isinstance(name, str) else None
    if key not in registry:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(registry)}")
    return registry[key]
