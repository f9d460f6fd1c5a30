"""Spatial transforms: reference grids, affine maps, resampling, warping and scaling and squaring.

Pure TensorFlow functions shared by classical optimisation (:mod:`tutorialreg.optimise`) and
networks (:mod:`tutorialreg.networks`), so both take exactly the same code path.

Conventions
-----------
- Volumes are ``[batch, d1, d2, d3]`` or ``[batch, d1, d2, d3, channels]``.
- Coordinates are voxel indices in ij order: the last axis of a grid holds (i, j, k) = (axis 0, 1, 2).
- A dense displacement field (DDF) ``[batch, d1, d2, d3, 3]`` lives on the *fixed* grid, in voxels:
  ``warped(x) = moving(x + ddf(x))``.
- An affine ``theta`` ``[batch, 4, 3]`` maps a voxel index row vector: ``loc = [p, 1] @ theta``.
- Sampling outside a volume returns the nearest border voxel (scipy's ``mode="nearest"``).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from tutorialreg.checks import as_float_tensor, shape3

__all__ = [
    "Warping",
    "affine_from_centred",
    "affine_grid",
    "centre_and_scale",
    "centred_from_affine",
    "compose",
    "ddf_from_theta",
    "integrate_svf",
    "invert_theta",
    "matrix_to_theta",
    "random_affine",
    "random_affine_ddf",
    "random_rigid",
    "random_smooth_ddf",
    "reference_grid",
    "resample",
    "rotation_theta",
    "theta_to_matrix",
    "translation_theta",
    "warp",
    "warp_affine",
]

IDENTITY_THETA = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 0]], dtype=np.float32)


def _as_float(x, name: str) -> tf.Tensor:
    return as_float_tensor(x, name, dtype=tf.float32)


def reference_grid(shape: Sequence[int]) -> tf.Tensor:
    """Voxel-index grid.

    :param shape: ``(d1, d2, d3)``.
    :return: float32 ``[d1, d2, d3, 3]`` with ``grid[i, j, k] = (i, j, k)``.
    """
    d1, d2, d3 = shape3(shape)
    axes = [tf.range(d, dtype=tf.float32) for d in (d1, d2, d3)]
    return tf.stack(tf.meshgrid(*axes, indexing="ij"), axis=-1)


def _batched_matrix(x, name: str, shape: tuple[int, int], what: str) -> tf.Tensor:
    """``[rows, cols]`` or ``[batch, rows, cols]`` -> float32 ``[batch, rows, cols]``."""
    x = _as_float(x, name)
    if x.shape.rank == 2:
        x = x[None]
    if x.shape.rank != 3 or tuple(x.shape[1:]) != shape:
        raise ValueError(f"{name} must have shape [batch, {shape[0]}, {shape[1]}] ({what}), got {x.shape}")
    return x


def _check_theta(theta) -> tf.Tensor:
    return _batched_matrix(theta, "theta", (4, 3), "row-vector affine")


def affine_grid(grid, theta) -> tf.Tensor:
    """Apply an affine transform to every point of a grid: ``loc = [p, 1] @ theta``.

    :param grid: ``[d1, d2, d3, 3]`` voxel coordinates (e.g. :func:`reference_grid`).
    :param theta: ``[batch, 4, 3]``; rows 0-2 are the linear part, row 3 the translation (voxels).
    :return: ``[batch, d1, d2, d3, 3]`` transformed coordinates.
    """
    grid = _as_float(grid, "grid")
    if grid.shape.rank != 4 or grid.shape[-1] != 3:
        raise ValueError(f"grid must have shape [d1, d2, d3, 3], got {grid.shape}")
    theta = _check_theta(theta)
    coords = _affine_coords(tf.reshape(grid, [1, -1, 3]), theta)
    return tf.reshape(tf.stack(coords, axis=-1), [-1, *_dims(grid, 0, 3), 3])


def _dims(x: tf.Tensor, start: int, stop: int) -> list:
    """Sizes of axes ``start:stop`` of ``x``: static ints where known, else scalar tensors."""
    return [d if d is not None else tf.shape(x)[i] for i, d in enumerate(x.shape[start:stop], start)]


def _affine_coords(points: tf.Tensor, theta: tf.Tensor) -> list[tf.Tensor]:
    """``points`` ``[1, n, 3]``, ``theta`` ``[batch, 4, 3]`` -> three ``[batch, n]`` coordinate planes.

    Written as flat multiply-adds, one plane per output axis: XLA fuses them, and the gradient with respect
    to theta (a reduction over every point) is several times cheaper on a CPU than an einsum or an
    interleaved ``[..., 3]`` layout.
    """
    p = [points[..., i] for i in range(3)]
    t = theta[..., None]  # [batch, 4, 3, 1]
    return [p[0] * t[:, 0, a] + p[1] * t[:, 1, a] + p[2] * t[:, 2, a] + t[:, 3, a] for a in range(3)]


def centre_and_scale(shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Centre ``c = (d - 1) / 2`` and half-size ``s = max(c, 0.5)`` per axis of a grid (voxels, float64):
    the normalised coordinates ``u = (p - c) / s`` of :func:`affine_from_centred` span ``[-1, 1]``."""
    c = np.array([(d - 1) / 2.0 for d in shape3(shape)], dtype=np.float64)
    return c, np.maximum(c, 0.5)


def affine_from_centred(linear, shift, shape: Sequence[int]) -> tf.Tensor:
    """Voxel-index ``theta`` from parameters acting about the volume centre in normalised coordinates.

    The book's one centred convention (classical optimisation and GlobalNet's head both use it): with
    ``u = (p - c) / s`` (:func:`centre_and_scale`), the map is ``u' = u @ linear + shift``, i.e. in voxel
    indices ``p' = (p - c) S^-1 linear S + shift S + c`` with ``S = diag(s)``. ``linear = I``, ``shift = 0``
    is the identity; ``shift = 0.01`` moves the volume by 1 % of its half-size along that axis.

    :param linear: ``[3, 3]`` or ``[batch, 3, 3]``.
    :param shift: ``[3]`` or ``[batch, 3]``.
    :param shape: ``(d1, d2, d3)`` of the grid.
    :return: ``[batch, 4, 3]`` float32 (batch 1 for unbatched input).
    """
    c, s = (tf.constant(a, tf.float32) for a in centre_and_scale(shape))
    lin = tf.convert_to_tensor(linear, tf.float32) * (s[None, :] / s[:, None])  # S^-1 L S, elementwise
    sh = tf.convert_to_tensor(shift, tf.float32)
    tr = c - tf.linalg.matvec(lin, c, transpose_a=True) + sh * s
    if lin.shape.rank == 2:  # one transform
        return tf.concat([lin, tr[None]], axis=0)[None]
    return tf.concat([lin, tr[:, None, :]], axis=1)


def centred_from_affine(theta, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`affine_from_centred` for one ``theta`` ``[1, 4, 3]`` or ``[4, 3]``:
    ``(linear [3, 3], shift [3])`` float32."""
    t = np.asarray(theta, dtype=np.float64).reshape(4, 3)
    c, s = centre_and_scale(shape)
    linear = t[:3] * (s[:, None] / s[None, :])
    shift = (t[3] - c + t[:3].T @ c) / s
    return linear.astype(np.float32), shift.astype(np.float32)


def theta_to_matrix(theta) -> tf.Tensor:
    """``[batch, 4, 3]`` row-vector theta -> ``[batch, 4, 4]`` homogeneous matrix ``M`` with
    ``M @ [p; 1] = [loc; 1]`` (column-vector convention)."""
    theta = _check_theta(theta)
    b = tf.shape(theta)[0]
    bottom = tf.tile(tf.constant([[[0.0, 0.0, 0.0, 1.0]]]), [b, 1, 1])
    return tf.concat([tf.transpose(theta, [0, 2, 1]), bottom], axis=1)


def matrix_to_theta(matrix) -> tf.Tensor:
    """``[batch, 4, 4]`` homogeneous matrix -> ``[batch, 4, 3]`` row-vector theta."""
    matrix = _batched_matrix(matrix, "matrix", (4, 4), "homogeneous")
    return tf.transpose(matrix[:, :3, :], [0, 2, 1])


def invert_theta(theta) -> tf.Tensor:
    """Inverse affine: ``[batch, 4, 3]`` -> ``[batch, 4, 3]`` (computed in float64)."""
    m = tf.cast(theta_to_matrix(theta), tf.float64)
    return matrix_to_theta(tf.cast(tf.linalg.inv(m), tf.float32))


def translation_theta(shift: Sequence[float]) -> np.ndarray:
    """``[1, 4, 3]`` theta of a translation: ``loc = p + shift`` (voxels, ij)."""
    shift = np.asarray(shift, dtype=np.float32).reshape(-1)
    if shift.shape != (3,):
        raise ValueError(f"shift must have 3 components (voxels along axes 0, 1, 2), got {shift.shape}")
    theta = IDENTITY_THETA.copy()
    theta[3] = shift
    return theta[None]


def rotation_theta(degrees: float, center: Sequence[float], plane: tuple[int, int] = (0, 1)) -> np.ndarray:
    """``[1, 4, 3]`` theta of a rotation by ``degrees`` in the plane of two axes, about voxel ``center``.

    ``loc = (p - c) @ R + c`` with ``R`` rotating axis ``plane[0]`` towards ``plane[1]``.
    """
    a, b = plane
    if sorted(plane) not in ([0, 1], [0, 2], [1, 2]):
        raise ValueError(f"plane must be two different axes out of 0, 1, 2, got {plane}")
    c = np.asarray(center, dtype=np.float64).reshape(3)
    angle = np.deg2rad(degrees)
    rot = np.eye(3)
    rot[a, a], rot[a, b], rot[b, a], rot[b, b] = np.cos(angle), np.sin(angle), -np.sin(angle), np.cos(angle)
    return np.vstack([rot, c - c @ rot])[None].astype(np.float32)


def warp_affine(
    image, theta, shape: Sequence[int] | None = None, interpolation: str = "linear", points=None
) -> tf.Tensor:
    """Resample ``image`` at ``[p, 1] @ theta`` for every voxel ``p`` of a grid of ``shape``.

    The same as ``resample(image, affine_grid(reference_grid(shape), theta))``, computed without building
    the ``[..., 3]`` location tensor, which makes value and gradient with respect to ``theta`` cheaper (the
    inner loop of affine registration; ``benchmarks/bench_core.py`` times both).

    :param image: ``[batch, m1, m2, m3]`` or ``[batch, m1, m2, m3, c]`` (moving image).
    :param theta: ``[batch, 4, 3]`` (a batch of 1 is broadcast against the image's batch and vice versa).
    :param shape: ``(d1, d2, d3)`` of the output grid; default the image's own.
    :param points: instead of a grid of ``shape``, any ``[d1, d2, d3, 3]`` voxel coordinates to map
        (e.g. the grid of a coarser pyramid level, in full-resolution voxels).
    :return: ``[batch, d1, d2, d3]`` or ``[batch, d1, d2, d3, c]``.
    """
    _check_interpolation(interpolation)
    vol, squeeze = _check_vol(image, "image")
    theta = _check_theta(theta)
    if points is None:
        points = reference_grid(vol.shape[1:4] if shape is None else shape)
    else:
        if shape is not None:
            raise ValueError("give either shape or points to warp_affine, not both")
        points = _as_float(points, "points")
        if points.shape.rank != 4 or points.shape[-1] != 3:
            raise ValueError(f"points must have shape [d1, d2, d3, 3], got {points.shape}")
    coords = _affine_coords(tf.reshape(points, [1, -1, 3]), theta)
    values = _sample(vol, coords, interpolation)  # [batch, n, c]
    return _finish(values, _dims(points, 0, 3), squeeze)


def ddf_from_theta(theta, shape: Sequence[int]) -> tf.Tensor:
    """Displacement field of an affine: ``[batch, d1, d2, d3, 3] = affine_grid - reference_grid``."""
    grid = reference_grid(shape)
    return affine_grid(grid, theta) - grid


def _check_interpolation(interpolation: str) -> None:
    if interpolation not in ("linear", "nearest"):
        raise ValueError(f"interpolation must be 'linear' or 'nearest', got {interpolation!r}")


def _check_vol(vol, name: str) -> tuple[tf.Tensor, bool]:
    """-> ``[batch, d1, d2, d3, c]`` float32 and whether a channel axis was added."""
    vol = _as_float(vol, name)
    if vol.shape.rank not in (4, 5):
        raise ValueError(f"{name} must have shape [batch, d1, d2, d3(, c)], got {vol.shape}")
    squeeze = vol.shape.rank == 4
    return (vol[..., None] if squeeze else vol), squeeze


def resample(vol, loc, interpolation: str = "linear") -> tf.Tensor:
    """Sample a volume at arbitrary voxel coordinates.

    :param vol: ``[batch, d1, d2, d3]`` or ``[batch, d1, d2, d3, c]``.
    :param loc: ``[batch, D1, D2, D3, 3]`` coordinates in voxels of ``vol`` (ij); a batch of 1 is broadcast.
    :param interpolation: ``"linear"`` (trilinear, differentiable in ``vol`` and ``loc``) or ``"nearest"``.
    :return: ``[batch, D1, D2, D3]`` or ``[batch, D1, D2, D3, c]``, float32. Points outside the
        volume take the value of the nearest border voxel.
    """
    _check_interpolation(interpolation)
    vol, squeeze = _check_vol(vol, "vol")
    loc = _as_float(loc, "loc")
    if loc.shape.rank != 5 or loc.shape[-1] != 3:
        raise ValueError(f"loc must have shape [batch, D1, D2, D3, 3], got {loc.shape}")
    flat = tf.reshape(loc, [tf.shape(loc)[0], -1, 3])
    values = _sample(vol, [flat[..., a] for a in range(3)], interpolation)
    return _finish(values, _dims(loc, 1, 4), squeeze)


def _sample(vol: tf.Tensor, coords: list[tf.Tensor], interpolation: str) -> tf.Tensor:
    """Core of :func:`resample`: ``vol`` ``[batch, d1, d2, d3, c]``, ``coords`` three ``[batch, n]`` planes
    (voxels of ``vol`` along axes 0, 1, 2) -> ``[batch, n, c]``. A batch of 1 on either side broadcasts
    through the index arithmetic, with no copies.
    """
    batch, loc_batch = vol.shape[0], coords[0].shape[0]
    if batch is not None and loc_batch is not None and batch != loc_batch and 1 not in (batch, loc_batch):
        raise ValueError(f"batch sizes differ: volume {batch} vs locations {loc_batch}")
    dims = [int(d) for d in vol.shape[1:4]]
    channels = int(vol.shape[-1])
    # one channel: gather scalars (faster on a CPU); several: gather rows of length c
    flat_vol = tf.reshape(vol, [-1] if channels == 1 else [-1, channels])
    strides = [dims[1] * dims[2], dims[2], 1]
    base = tf.range(tf.shape(vol)[0])[:, None] * (dims[0] * dims[1] * dims[2])  # [batch, 1]
    coords = [tf.clip_by_value(coords[a], 0.0, float(dims[a] - 1)) for a in range(3)]

    if interpolation == "nearest":
        idx = base
        for a in range(3):
            idx = idx + tf.clip_by_value(tf.cast(tf.round(coords[a]), tf.int32), 0, dims[a] - 1) * strides[a]
        out = tf.gather(flat_vol, idx)
        bad = tf.logical_not(tf.reduce_all(tf.math.is_finite(tf.stack(coords)), axis=0))  # NaN stays NaN
        out = tf.where(bad if channels == 1 else bad[..., None], tf.constant(np.nan, out.dtype), out)
        return out[..., None] if channels == 1 else out

    lo, w = [], []
    for a in range(3):
        floor = tf.minimum(tf.floor(coords[a]), float(max(dims[a] - 2, 0)))
        # NaN coordinates would cast to INT_MIN and crash the gather: clamp the integers, so that a
        # non-finite displacement gives a NaN output (through the weights) that callers can detect
        lo.append(tf.clip_by_value(tf.cast(floor, tf.int32), 0, max(dims[a] - 2, 0)))
        w.append((coords[a] - floor) if channels == 1 else (coords[a] - floor)[..., None])  # in [0, 1]
    # offsets of the 8 corners: lower corner + 0 or one stride per axis (0 along an axis of length 1)
    corner = base + lo[0] * strides[0] + lo[1] * strides[1] + lo[2]
    step = [strides[a] if dims[a] > 1 else 0 for a in range(3)]
    # interpolate along k, then j, then i (8 gathers, 7 lerps)
    c = {}
    for a in (0, 1):
        for b in (0, 1):
            v0 = tf.gather(flat_vol, corner + (a * step[0] + b * step[1]))
            v1 = tf.gather(flat_vol, corner + (a * step[0] + b * step[1] + step[2]))
            c[a, b] = v0 + w[2] * (v1 - v0)
    c0 = c[0, 0] + w[1] * (c[0, 1] - c[0, 0])
    c1 = c[1, 0] + w[1] * (c[1, 1] - c[1, 0])
    out = c0 + w[0] * (c1 - c0)
    return out[..., None] if channels == 1 else out


def _finish(values: tf.Tensor, spatial, squeeze: bool) -> tf.Tensor:
    """``[batch, n, c]`` -> ``[batch, *spatial]`` (``squeeze``) or ``[batch, *spatial, c]``."""
    channels = values.shape[-1] if values.shape[-1] is not None else tf.shape(values)[-1]
    out = tf.reshape(values, [tf.shape(values)[0], *spatial, channels])
    return out[..., 0] if squeeze else out


def _check_ddf(ddf, name: str = "ddf") -> tf.Tensor:
    ddf = _as_float(ddf, name)
    if ddf.shape.rank != 5 or ddf.shape[-1] != 3:
        raise ValueError(f"{name} must have shape [batch, d1, d2, d3, 3], got {ddf.shape}")
    return ddf


def warp(image, ddf, interpolation: str = "linear") -> tf.Tensor:
    """Warp a moving image with a DDF defined on the fixed grid: ``out(x) = image(x + ddf(x))``.

    :param image: ``[batch, m1, m2, m3]`` or ``[batch, m1, m2, m3, c]`` (moving image).
    :param ddf: ``[batch, f1, f2, f3, 3]`` displacements in voxels of the moving image.
    :return: ``[batch, f1, f2, f3(, c)]`` on the fixed grid.
    """
    ddf = _check_ddf(ddf)
    return resample(image, reference_grid(ddf.shape[1:4])[None] + ddf, interpolation)


def compose(ddf_a, ddf_b) -> tf.Tensor:
    """DDF of "warp by ``a``, then warp the result by ``b``".

    ``warp(warp(img, a), b) == warp(img, compose(a, b))``, i.e.
    ``compose(a, b)(x) = b(x) + a(x + b(x))``. Both ``[batch, d1, d2, d3, 3]``.
    """
    ddf_a, ddf_b = _check_ddf(ddf_a, "ddf_a"), _check_ddf(ddf_b, "ddf_b")
    return ddf_b + warp(ddf_a, ddf_b)


def integrate_svf(dvf, steps: int = 7) -> tf.Tensor:
    """Scaling and squaring: exponentiate a stationary velocity field into a DDF.

    :param dvf: ``[batch, d1, d2, d3, 3]`` velocity in voxels.
    :param steps: number of squarings; the field is first divided by ``2**steps``.
    :return: ``[batch, d1, d2, d3, 3]`` DDF (diffeomorphic for smooth enough fields).
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if steps == 0:  # no squaring: the velocity itself is the displacement (a first-order approximation)
        return _check_ddf(dvf, "dvf")
    ddf = _check_ddf(dvf, "dvf") / float(2**steps)
    # a loop rather than unrolled Python: under XLA the unrolled squarings get fused into one another and the
    # forward pass recomputes them (about 35x slower at 32x64x64); the loop keeps each squaring materialised
    _, ddf = tf.while_loop(
        lambda i, _: i < steps,
        lambda i, d: (i + 1, d + warp(d, d)),
        (tf.constant(0), ddf),
        maximum_iterations=steps,
    )
    return ddf


_CUBE_CORNERS = np.array(
    [[-1, -1, -1, 1], [-1, -1, 1, 1], [-1, 1, -1, 1], [1, -1, -1, 1]], dtype=np.float64
)


def random_affine(
    batch_size: int, scale: float, seed: int | None = None, center: Sequence[float] | None = None
) -> tf.Tensor:
    """Random affine from perturbed cube corners (the tutorial's generator).

    Four corners of the cube ``[-1, 1]^3`` have each coordinate multiplied by a factor drawn
    uniformly from ``[1 - scale, 1]``; theta is the affine that maps the corners exactly.

    :param batch_size: number of transforms.
    :param scale: perturbation in ``[0, 1]``; 0 gives the identity.
    :param seed: seed of a local numpy generator (no global state).
    :param center: voxel point ``(c1, c2, c3)`` the transform acts about (default: the origin, as in
        the tutorial). ``loc = [p - c, 1] @ theta + c``.
    :return: float32 ``[batch_size, 4, 3]``.
    """
    if not 0.0 <= scale <= 1.0:
        raise ValueError(f"scale must be in [0, 1], got {scale}")
    rng = np.random.default_rng(seed)
    factors = rng.uniform(1.0 - scale, 1.0, size=(batch_size, 4, 3))
    new = _CUBE_CORNERS[None, :, :3] * factors
    theta = np.linalg.solve(_CUBE_CORNERS[None], new)  # corners @ theta = new
    if center is not None:
        c = np.asarray(center, dtype=np.float64).reshape(3)
        theta[:, 3, :] += c - np.einsum("j,bjk->bk", c, theta[:, :3, :])
    return tf.constant(theta, dtype=tf.float32)


def random_rigid(
    batch_size: int, shift: float, degrees: float, seed: int | None = None,
    center: Sequence[float] | None = None,
) -> np.ndarray:
    """Random rigid motions: rotations about axes (0, 1), (0, 2), (1, 2) by angles uniform in
    ``[-degrees, degrees]``, then a shift uniform in ``[-shift, shift]`` voxels along each axis.

    :param center: voxel point ``c`` the rotation acts about (default: the origin);
        ``loc = (p - c) R + c + d`` (row vectors, as :func:`random_affine`).
    :return: float64 ``[batch_size, 4, 3]`` (``loc = [p, 1] @ theta``).
    """
    if shift < 0 or not 0 <= degrees <= 180:
        raise ValueError(f"shift must be >= 0 voxels and degrees in [0, 180], got {shift}, {degrees}")
    rng = np.random.default_rng(seed)
    c = np.zeros(3) if center is None else np.asarray(center, np.float64).reshape(3)
    out = np.zeros((batch_size, 4, 3))
    for b in range(batch_size):
        rot = np.eye(3)
        for i, j in ((0, 1), (0, 2), (1, 2)):
            g = np.deg2rad(rng.uniform(-degrees, degrees))
            r = np.eye(3)
            r[i, i] = r[j, j] = np.cos(g)
            r[i, j], r[j, i] = np.sin(g), -np.sin(g)
            rot = rot @ r
        out[b, :3] = rot
        out[b, 3] = c - c @ rot + rng.uniform(-shift, shift, 3)
    return out


def random_affine_ddf(
    shape: Sequence[int], batch_size: int, scale: float, seed: int | None = None
) -> tf.Tensor:
    """DDF ``[batch, d1, d2, d3, 3]`` of :func:`random_affine` acting about the volume centre."""
    shape = shape3(shape)
    center = [(d - 1) / 2.0 for d in shape]
    return ddf_from_theta(random_affine(batch_size, scale, seed, center=center), shape)


def random_smooth_ddf(
    shape: Sequence[int],
    control_shape: Sequence[int],
    amplitude: float | Sequence[float],
    seed: int | None = None,
    batch_size: int = 1,
) -> tf.Tensor:
    """Smooth random field: normal control points on a coarse grid, trilinearly interpolated.

    :param shape: ``(d1, d2, d3)`` of the output.
    :param control_shape: coarse grid ``(c1, c2, c3)``, each >= 2; fewer points give smoother fields.
    :param amplitude: standard deviation of the control displacements, in voxels (one or per axis).
    :param seed: seed of a local numpy generator.
    :return: float32 ``[batch_size, d1, d2, d3, 3]`` in voxels.
    """
    shape, control_shape = shape3(shape), shape3(control_shape, "control_shape")
    if min(control_shape) < 2:
        raise ValueError(f"control_shape needs >= 2 points per axis, got {control_shape}")
    rng = np.random.default_rng(seed)
    control = rng.normal(size=(batch_size, *control_shape, 3)) * np.asarray(amplitude, dtype=np.float64)
    to_coarse = np.array([(c - 1) / max(d - 1, 1) for c, d in zip(control_shape, shape, strict=True)])
    to_coarse = to_coarse.astype(np.float32)
    return resample(control.astype(np.float32), reference_grid(shape)[None] * to_coarse)


class Warping(keras.layers.Layer):
    """Keras layer: ``Warping(fixed_image_size)([ddf, image]) -> warped image``.

    ``ddf`` is ``[batch, f1, f2, f3, 3]`` with ``(f1, f2, f3) == fixed_image_size``;
    ``image`` is ``[batch, m1, m2, m3(, c)]``.
    """

    def __init__(self, fixed_image_size: Sequence[int], interpolation: str = "linear", **kwargs):
        super().__init__(**kwargs)
        self.fixed_image_size = shape3(fixed_image_size, "fixed_image_size")
        self.interpolation = interpolation

    def call(self, inputs):
        ddf, image = inputs
        if tuple(ddf.shape[1:4]) != self.fixed_image_size:
            raise ValueError(
                f"ddf spatial shape {tuple(ddf.shape[1:4])} != fixed_image_size {self.fixed_image_size}"
            )
        return warp(image, ddf, self.interpolation)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "fixed_image_size": self.fixed_image_size,
            "interpolation": self.interpolation,
        }
