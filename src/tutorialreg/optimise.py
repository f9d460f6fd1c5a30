"""Classical registration: optimise one transformation for one pair of images.

Two entry points, both plain gradient descent with Adam on the parameters of a transformation:

- :func:`register_affine`: 12 affine parameters, image loss only (the tutorial's listings 1.9-1.13).
- :func:`register_ddf`: a dense displacement field (DDF), or a stationary velocity field integrated by
  scaling and squaring (DVF), with an image loss plus a weighted deformation loss (listings 1.14-1.17).

Their defaults are the tutorial's settings. Options beyond the tutorial, each off by default:

- ``levels``/``smoothing``: a multi-resolution pyramid (coarse, smoothed images first).
- ``schedule="cosine"``: a learning rate that decays to zero over each level.
- ``plateau_tol``: stop a level once the loss stops improving.
- ``coordinates="centred"`` and ``mask_outside`` (affine): parameters in centred, normalised coordinates
  so that Adam moves rotations and translations at comparable rates; ignore fixed voxels whose
  transformed position falls outside the moving image.
- ``field_sigma`` (nonrigid): a Gaussian-smoothed field parameterisation.

The optimisation runs in compiled chunks: one ``tf.function`` (XLA by default) performs ``chunk`` Adam
steps in a ``tf.while_loop`` and returns every loss term of every step, so Python only updates the
progress bar, the optional live plot and the stopping test between chunks.

Conventions: images ``[batch=1, d1, d2, d3]`` (or ``[d1, d2, d3]``), voxel indices in ij order, a DDF
``[1, d1, d2, d3, 3]`` on the fixed grid with ``warped(x) = moving(x + ddf(x))``, and an affine ``theta``
``[1, 4, 3]`` mapping fixed voxel indices to moving ones: ``loc = [p, 1] @ theta``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import tensorflow as tf
from scipy import ndimage

from tutorialreg import losses, warp

__all__ = [
    "AFFINE_RECOMMENDED",
    "NONRIGID_RECOMMENDED",
    "RegistrationResult",
    "adam_update",
    "affine_from_centred",
    "centred_from_affine",
    "register_affine",
    "register_ddf",
]

#: Adam's constants, as in ``keras.optimizers.Adam`` (and the tutorial's ``tf.optimizers.Adam``).
ADAM_BETA_1, ADAM_BETA_2, ADAM_EPSILON = 0.9, 0.999, 1e-7

#: Settings of :func:`register_affine` beyond the tutorial, used by chapter 4 and the benchmark: centred
#: coordinates, the loss only where the moving image is defined, a two-level pyramid (every 4th voxel of
#: images blurred by sigma 2, then every 2nd voxel, sigma 0.7), a cosine-decaying learning rate and a stop
#: once a level's loss improves by less than 1 % of its range over 25 steps.
#: Read-only: use ``register_affine(moving, fixed, **AFFINE_RECOMMENDED)`` or ``{**AFFINE_RECOMMENDED, ...}``.
AFFINE_RECOMMENDED: Mapping = MappingProxyType(dict(
    coordinates="centred", mask_outside=True, levels=(4, 2), smoothing=(2.0, 0.7), learning_rate=(0.02, 0.01),
    steps=(150, 100), schedule="cosine", plateau_tol=0.01))

#: Settings of :func:`register_ddf` beyond the tutorial, used by chapter 5 and the benchmark: a velocity
#: field integrated by scaling and squaring (DVF), smoothed by a Gaussian (sigma 1 voxel of the level), a
#: two-level pyramid that keeps the 32 slices of the prostate MR along axis 0 at the finer level (factors
#: 2, 4, 4 then 1, 2, 2), and a cosine-decaying learning rate. Loss, weight and learning rate as the tutorial.
NONRIGID_RECOMMENDED: Mapping = MappingProxyType(dict(
    parameterisation="dvf", levels=((2, 4, 4), (1, 2, 2)), field_sigma=1.0, deform_weight=1.0,
    learning_rate=0.1, steps=(150, 150), schedule="cosine"))

_IMAGE_LOSSES = ("ssd", "ncc", "lncc", "gmi")
_DEFORM_LOSSES = ("bending", "gradient-l1", "gradient-l2")

Callback = Callable[[int, dict[str, float]], None]


# ----------------------------------------------------------------------------------------------------------
# result
# ----------------------------------------------------------------------------------------------------------
@dataclass
class RegistrationResult:
    """What a registration returns.

    :ivar kind: ``"affine"``, ``"ddf"`` or ``"dvf"``.
    :ivar theta: ``[1, 4, 3]`` recovered affine (voxel indices, row-vector convention); None for nonrigid.
    :ivar ddf: ``[1, d1, d2, d3, 3]`` displacement field on the fixed grid, voxels (for an affine, the DDF
        of ``theta``).
    :ivar velocity: ``[1, d1, d2, d3, 3]`` stationary velocity field (``kind == "dvf"`` only), voxels.
    :ivar warped: ``[1, d1, d2, d3]`` moving image warped onto the fixed grid.
    :ivar history: ``{term: [steps]}`` loss values of every step: ``"total"`` (what was minimised), the
        image loss under its name (e.g. ``"ssd"``, ``"lncc"``) and, for nonrigid, the unweighted
        deformation loss (e.g. ``"bending"``). Values at different pyramid levels are computed on
        images of different sizes.
    :ivar level: ``[steps]`` pyramid level index of every step.
    :ivar level_steps: steps run at each level (shorter than requested when a plateau stopped it).
    :ivar time_per_step: mean seconds per step over all levels, compilation excluded.
    :ivar level_time_per_step: median seconds per step of each level, compilation excluded.
    :ivar compile_time: seconds spent building and compiling the step functions (the first chunk of each
        level minus its steps at that level's median rate).
    :ivar total_time: wall-clock seconds of the whole call.
    :ivar stopped_early: True when a plateau stopped at least one level before its step budget.
    """

    kind: str
    ddf: np.ndarray
    warped: np.ndarray
    history: dict[str, np.ndarray]
    level: np.ndarray
    level_steps: list[int]
    time_per_step: float
    compile_time: float
    total_time: float
    stopped_early: bool
    level_time_per_step: list[float] = field(default_factory=list)
    theta: np.ndarray | None = None
    velocity: np.ndarray | None = None
    settings: dict = field(default_factory=dict)

    @property
    def steps(self) -> int:
        """Total number of optimisation steps run."""
        return int(sum(self.level_steps))

    @property
    def transform(self) -> np.ndarray:
        """The optimised transformation: ``theta`` for an affine, otherwise the DDF."""
        return self.theta if self.theta is not None else self.ddf

    def warp(self, image, interpolation: str = "linear") -> np.ndarray:
        """Warp another moving-space volume (e.g. labels ``[1, d1, d2, d3(, c)]``) with the result.

        Uses the affine itself for an affine result, so no accuracy is lost to a sampled DDF.
        """
        image = _batched(image, "image", allow_channels=True)
        if self.theta is not None:
            return warp.warp_affine(image, self.theta, self.ddf.shape[1:4], interpolation).numpy()
        return warp.warp(image, self.ddf, interpolation).numpy()

    def __repr__(self) -> str:
        last = {k: float(v[-1]) for k, v in self.history.items() if len(v)}
        terms = ", ".join(f"{k}={v:.4g}" for k, v in last.items())
        per_level = "/".join(f"{1000 * t:.1f}" for t in self.level_time_per_step)
        return (f"RegistrationResult(kind={self.kind!r}, steps={self.steps} {self.level_steps}, "
                f"{per_level} ms/step, compile {self.compile_time:.1f} s, total {self.total_time:.1f} s, "
                f"stopped_early={self.stopped_early}, final: {terms})")


# ----------------------------------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------------------------------
def _batched(x, name: str, allow_channels: bool = False) -> tf.Tensor:
    """``[d1, d2, d3]`` or ``[1, d1, d2, d3]`` (``[1, d1, d2, d3, c]`` if allowed) -> float32 tensor."""
    x = tf.convert_to_tensor(x)
    if not (x.dtype.is_floating or x.dtype.is_integer or x.dtype == tf.bool):
        raise ValueError(f"{name} must be a numeric array, got dtype {x.dtype.name}")
    x = tf.cast(x, tf.float32)
    if x.shape.rank == 3:
        x = x[None]
    ok = (x.shape.rank == 4 or (allow_channels and x.shape.rank == 5)) and x.shape[0] == 1
    if not ok:
        expected = "[d1, d2, d3], [1, d1, d2, d3]" + (" or [1, d1, d2, d3, c]" if allow_channels else "")
        raise ValueError(f"{name} must have shape {expected} (one image), got {tuple(x.shape)}")
    return x


def _pair(moving, fixed) -> tuple[np.ndarray, np.ndarray]:
    m = _batched(moving, "moving").numpy()[0]
    f = _batched(fixed, "fixed").numpy()[0]
    if min(f.shape) < 4 or min(m.shape) < 4:
        raise ValueError(f"images need at least 4 voxels along each axis, got moving {m.shape}, "
                         f"fixed {f.shape}")
    if not (np.all(np.isfinite(m)) and np.all(np.isfinite(f))):
        raise ValueError("moving and fixed images must not contain NaN or inf")
    if m.shape != f.shape:
        raise ValueError(f"moving and fixed must have the same shape, got {m.shape} and {f.shape}")
    return m, f


def _per_level(value, n: int, name: str, cast) -> list:
    """A scalar applies to every level; a sequence must give one value per level."""
    if isinstance(value, (list, tuple, np.ndarray)):
        if len(value) != n:
            raise ValueError(f"{name} must be one value or {n} values (one per level), got {len(value)}")
        return [cast(v) for v in value]
    return [cast(value)] * n


Factor = tuple[int, int, int]


def _check_levels(levels, smoothing, shape) -> tuple[list[Factor], list[tuple[float, float, float]]]:
    """Levels as per-axis factors and per-axis Gaussian sigmas (full-size voxels)."""
    if isinstance(levels, (int, np.integer)) or not len(levels):
        raise ValueError(f"levels must be a non-empty sequence of subsampling factors, e.g. (4, 2), "
                         f"got {levels!r}")
    factors = []
    for f in levels:
        f3 = tuple(int(x) for x in (np.broadcast_to(f, 3) if np.ndim(f) == 0 else f))
        if len(f3) != 3 or min(f3) < 1:
            raise ValueError(f"each level must be a factor >= 1 or three per-axis factors, got {f!r}")
        if any(d // fa < 4 for d, fa in zip(shape, f3, strict=True)):
            raise ValueError(f"level {f!r} subsamples an image of shape {tuple(shape)} below 4 voxels "
                             "per axis")
        factors.append(f3)
    if smoothing is None:
        sigmas = [tuple(fa / 2.0 if fa > 1 else 0.0 for fa in f) for f in factors]
    else:
        if np.ndim(smoothing) == 0:
            smoothing = [smoothing] * len(factors)
        if len(smoothing) != len(factors):
            raise ValueError(f"smoothing must be one value or {len(factors)} values (one per level), "
                             f"got {len(smoothing)}")
        sigmas = [tuple(float(x) for x in np.broadcast_to(sg, 3)) for sg in smoothing]
    if any(x < 0 for sg in sigmas for x in sg):
        raise ValueError(f"smoothing sigmas must be >= 0 voxels, got {sigmas}")
    return factors, sigmas


def _schedule(levels, smoothing, shape, learning_rate, steps) -> tuple[list, list, list[float], list[int]]:
    """Pyramid levels, their smoothing sigmas, and the learning rate and step count of each level."""
    factors, sigmas = _check_levels(levels, smoothing, shape)
    lrs = _per_level(learning_rate, len(factors), "learning_rate", float)
    return factors, sigmas, lrs, _per_level(steps, len(factors), "steps", int)


def _loss_fn(name: str, allowed: Sequence[str], kind: str, kwargs: dict | None) -> Callable:
    if name not in allowed:
        raise ValueError(f"unknown {kind} loss {name!r}; expected one of {list(allowed)}")
    fn = losses.get(name)
    kwargs = dict(kwargs or {})
    return (lambda *a: fn(*a, **kwargs)) if kwargs else fn


# ----------------------------------------------------------------------------------------------------------
# Adam, affine parameterisation, pyramid helpers
# ----------------------------------------------------------------------------------------------------------
def adam_update(param, grad, m, v, step, lr):
    """One Adam step, written out: returns ``(param, m, v)``.

    ``step`` counts from 1. Identical to ``keras.optimizers.Adam`` (beta_1 0.9, beta_2 0.999,
    epsilon 1e-7): ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g^2``,
    ``param <- param - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``.
    """
    m = m + (grad - m) * (1.0 - ADAM_BETA_1)
    v = v + (tf.square(grad) - v) * (1.0 - ADAM_BETA_2)
    alpha = lr * tf.sqrt(1.0 - ADAM_BETA_2**step) / (1.0 - ADAM_BETA_1**step)
    return param - alpha * m / (tf.sqrt(v) + ADAM_EPSILON), m, v


def _centre_scale(shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    c = np.array([(d - 1) / 2.0 for d in shape], dtype=np.float64)
    return c, np.maximum(c, 0.5)


def affine_from_centred(linear, shift, shape: Sequence[int]) -> tf.Tensor:
    """Voxel-index theta ``[1, 4, 3]`` from centred, normalised parameters.

    With ``u = (p - c) / s`` (``c`` the volume centre, ``s`` its half-size per axis, so ``u`` spans
    ``[-1, 1]``), the transform is ``u' = u @ linear + shift``; in voxel indices
    ``p' = (p - c) S^-1 linear S + shift S + c``. ``linear`` ``[3, 3]`` (identity = no change),
    ``shift`` ``[3]`` (0 = no change).
    """
    c, s = (tf.constant(a, tf.float32) for a in _centre_scale(shape))
    lin = tf.convert_to_tensor(linear, tf.float32) * (s[None, :] / s[:, None])
    tr = c - tf.linalg.matvec(lin, c, transpose_a=True) + tf.convert_to_tensor(shift, tf.float32) * s
    return tf.concat([lin, tr[None]], axis=0)[None]


def centred_from_affine(theta, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`affine_from_centred`: ``theta`` ``[1, 4, 3]`` -> ``(linear [3, 3], shift [3])``."""
    t = np.asarray(theta, dtype=np.float64).reshape(4, 3)
    c, s = _centre_scale(shape)
    linear = t[:3] * (s[:, None] / s[None, :])
    shift = (t[3] - c + t[:3].T @ c) / s
    return linear.astype(np.float32), shift.astype(np.float32)


def _level_geometry(shape: Sequence[int], factor: Factor) -> tuple[list[int], np.ndarray]:
    """Size and first point of a level: its voxels sit at ``offset + factor * q`` in full-size voxels,
    centred in the volume (for a size divisible by ``factor``, at the centres of ``factor``-blocks)."""
    n = [d // f for d, f in zip(shape, factor, strict=True)]
    offset = np.array([(d - 1 - f * (m - 1)) / 2.0 for d, f, m in zip(shape, factor, n, strict=True)])
    return n, offset


def _level_points(shape: Sequence[int], factor: Factor) -> np.ndarray:
    """Full-size voxel coordinates ``[n1, n2, n3, 3]`` of a level's voxels."""
    n, offset = _level_geometry(shape, factor)
    axes = [o + f * np.arange(m, dtype=np.float64) for o, f, m in zip(offset, factor, n, strict=True)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)


def _level_image(image: np.ndarray, factor: Factor, sigma: Sequence[float]) -> np.ndarray:
    """Gaussian-smoothed (``sigma`` full-size voxels per axis) image sampled at the level's voxels."""
    smooth = ndimage.gaussian_filter(image, sigma, mode="nearest") if max(sigma) > 0 else image
    if max(factor) == 1:
        return smooth.astype(np.float32)
    pts = _level_points(image.shape, factor)
    out = ndimage.map_coordinates(smooth, pts.reshape(-1, 3).T, order=1, mode="nearest")
    return out.reshape(pts.shape[:3]).astype(np.float32)


def _resample_field(field_: tf.Tensor, shape: Sequence[int], factor: Factor, new_factor: Factor) -> tf.Tensor:
    """A field on level ``factor`` (values in that level's voxels) -> level ``new_factor`` (its voxels)."""
    if tuple(factor) == tuple(new_factor):
        return field_
    _, offset = _level_geometry(shape, factor)
    loc = (_level_points(shape, new_factor) - offset) / np.asarray(factor, np.float64)
    out = warp.resample(field_, tf.constant(loc[None], tf.float32))
    return out * tf.constant(np.asarray(factor, np.float32) / np.asarray(new_factor, np.float32))


def _gaussian_kernel(sigma: float) -> np.ndarray:
    r = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def _smoothing_matrix(n: int, sigma: float) -> np.ndarray:
    """``[n, n]`` matrix ``S`` with ``S @ x`` = Gaussian smoothing of ``x`` (edge values repeated)."""
    k = _gaussian_kernel(sigma)
    r = len(k) // 2
    m = np.zeros((n, n), dtype=np.float64)
    for i in range(n):
        for t, w in enumerate(k):
            m[i, min(max(i + t - r, 0), n - 1)] += w
    return m.astype(np.float32)


def _smooth_field(u: tf.Tensor, sigma: float) -> tf.Tensor:
    """Separable Gaussian smoothing of a ``[1, n1, n2, n3, 3]`` field; borders repeat the edge value.

    One small matrix product per axis: fast under XLA, forwards and backwards.
    """
    if sigma <= 0:
        return u
    for axis, equation in ((1, "bijkc,li->bljkc"), (2, "bijkc,lj->bilkc"), (3, "bijkc,lk->bijlc")):
        u = tf.einsum(equation, u, tf.constant(_smoothing_matrix(u.shape[axis], sigma)))
    return u


# ----------------------------------------------------------------------------------------------------------
# the optimisation engine
# ----------------------------------------------------------------------------------------------------------
def _make_chunk(objective: Callable, n_params: int, n_terms: int, chunk: int, schedule: str, jit: bool):
    """Compile ``chunk`` Adam steps of ``objective(params, *data) -> [total, term1, ...]`` into one call."""

    def run(params, ms, vs, start, n_run, level_steps, lr0, *data):
        def body(i, params, ms, vs, record):
            with tf.GradientTape() as tape:
                tape.watch(params)
                terms = objective(params, *data)
            grads = tape.gradient(terms[0], params)
            t = tf.cast(start + i, tf.float32)
            lr = lr0
            if schedule == "cosine":
                lr = lr0 * 0.5 * (1.0 + tf.cos(np.pi * t / tf.cast(level_steps, tf.float32)))
            new = [adam_update(p, g, m, v, t + 1.0, lr)
                   for p, g, m, v in zip(params, grads, ms, vs, strict=True)]
            params = [x[0] for x in new]
            ms = [x[1] for x in new]
            vs = [x[2] for x in new]
            record = tf.tensor_scatter_nd_update(record, [[i]], tf.stack(terms)[None])
            return i + 1, params, ms, vs, record

        record = tf.zeros([chunk, n_terms])
        out = tf.while_loop(lambda i, *_: i < n_run, body, [tf.constant(0), params, ms, vs, record])
        return out[1], out[2], out[3], out[4]

    # a partial, so TensorFlow counts retracing per registration (one trace per pyramid level is expected)
    # instead of pooling every registration of the session under the one code object of ``run``
    return tf.function(functools.partial(run), jit_compile=jit)


@dataclass
class _Level:
    data: tuple
    steps: int
    lr: float


def _optimise(objective, names: list[str], params: list[tf.Tensor], levels: list[_Level],
              on_level: Callable[[int, list[tf.Tensor]], list[tf.Tensor]], *, schedule: str,
              plateau_tol: float | None, plateau_window: int, chunk: int, jit: bool, progress: bool,
              callback: Callback | None, live_plot, desc: str) -> dict:
    """Run Adam level by level; ``on_level(i, params)`` maps the parameters into level ``i``."""
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule must be 'constant' or 'cosine', got {schedule!r}")
    if plateau_tol is not None and plateau_tol < 0:
        raise ValueError(f"plateau_tol must be >= 0 or None, got {plateau_tol}")
    if chunk < 1 or plateau_window < 1:
        raise ValueError(f"chunk and plateau_window must be >= 1, got {chunk}, {plateau_window}")
    from tqdm.auto import tqdm

    run = _make_chunk(objective, len(params), len(names), chunk, schedule, jit)
    records, level_of_step, level_steps = [], [], []
    steady, first_chunks = [], []  # per level: s/step of the later chunks; (seconds, steps) of the first
    stopped_early = False
    bar = tqdm(total=sum(lv.steps for lv in levels), desc=desc, disable=not progress, leave=True)
    done_total = 0
    for li, lv in enumerate(levels):
        params = on_level(li, params)
        ms = [tf.zeros_like(p) for p in params]
        vs = [tf.zeros_like(p) for p in params]
        done, level_losses = 0, []
        steady.append([])
        while done < lv.steps:
            n = min(chunk, lv.steps - done)
            t0 = time.perf_counter()
            params, ms, vs, rec = run(params, ms, vs, tf.constant(done), tf.constant(n),
                                      tf.constant(lv.steps), tf.constant(lv.lr, tf.float32), *lv.data)
            rec = rec.numpy()[:n]
            elapsed = time.perf_counter() - t0
            if done == 0:
                first_chunks.append((elapsed, n))
            elif n == chunk:
                steady[-1].append(elapsed / n)
            if not np.all(np.isfinite(rec)):
                raise FloatingPointError(f"loss became NaN/inf at level {li}, step {done}: "
                                         "lower the learning rate")
            records.append(rec)
            level_losses.extend(rec[:, 0].tolist())
            level_of_step.extend([li] * n)
            done += n
            done_total += n
            last = dict(zip(names, map(float, rec[-1]), strict=True))
            bar.update(n)
            bar.set_postfix({k: f"{v:.4g}" for k, v in last.items()}, refresh=False)
            if live_plot is not None:
                for j, row in enumerate(rec):
                    live_plot.update(done_total - n + j, **dict(zip(names, map(float, row), strict=True)))
            if callback is not None:
                callback(done_total, last)
            stop = plateau_tol is not None and _plateau(level_losses, plateau_window, plateau_tol)
            if stop and done < lv.steps:
                stopped_early = True
                bar.total -= lv.steps - done
                bar.refresh()
                break
        level_steps.append(done)
    bar.close()
    if live_plot is not None:
        live_plot.close()
    # each level's rate: median over its chunks after the first (the first one also compiles); a level of
    # one chunk only has the first, compilation included
    level_rates = [float(np.median(r)) if r else t / n
                   for r, (t, n) in zip(steady, first_chunks, strict=True)]
    compile_time = sum(max(0.0, t - n * r) for (t, n), r in zip(first_chunks, level_rates, strict=True))
    rate = sum(r * n for r, n in zip(level_rates, level_steps, strict=True)) / max(1, sum(level_steps))
    hist = np.concatenate(records, axis=0)
    return {
        "params": params,
        "history": {name: hist[:, i].copy() for i, name in enumerate(names)},
        "level": np.asarray(level_of_step, dtype=np.int32),
        "level_steps": level_steps,
        "time_per_step": rate,
        "level_time_per_step": level_rates,
        "compile_time": compile_time,
        "stopped_early": stopped_early,
    }


def _plateau(values: list[float], window: int, tol: float) -> bool:
    """True when the mean of the last ``window`` values improved on the window before by less than
    ``tol`` (relative to the loss range seen so far at this level)."""
    if len(values) < 2 * window:
        return False
    last = float(np.mean(values[-window:]))
    prev = float(np.mean(values[-2 * window:-window]))
    scale = max(float(np.max(values)) - float(np.min(values)), 1e-12)
    return (prev - last) < tol * scale


def _live(live_plot, title: str):
    if live_plot is False or live_plot is None:
        return None
    if live_plot is True:
        from tutorialreg.viz import LiveLossPlot

        return LiveLossPlot(every=50, title=title)
    if not hasattr(live_plot, "update"):
        raise ValueError("live_plot must be True/False or an object with update(step, **losses), "
                         "e.g. tutorialreg.viz.LiveLossPlot()")
    return live_plot


# ----------------------------------------------------------------------------------------------------------
# affine
# ----------------------------------------------------------------------------------------------------------
def register_affine(
    moving,
    fixed,
    loss: str = "ssd",
    learning_rate: float | Sequence[float] = 0.01,
    steps: int | Sequence[int] = 1001,
    *,
    coordinates: str = "voxel",
    mask_outside: bool = False,
    levels: Sequence[int | Sequence[int]] = (1,),
    smoothing: float | Sequence[float] | None = None,
    schedule: str = "constant",
    plateau_tol: float | None = None,
    plateau_window: int = 25,
    init=None,
    loss_kwargs: dict | None = None,
    chunk: int = 25,
    jit: bool = True,
    progress: bool = True,
    live_plot=False,
    callback: Callback | None = None,
    seed: int = 0,
) -> RegistrationResult:
    """Find the affine ``theta`` that makes ``moving(theta(x))`` look like ``fixed(x)``, by Adam.

    :param moving, fixed: ``[d1, d2, d3]`` or ``[1, d1, d2, d3]`` images (same shape).
    :param loss: image loss name from :mod:`tutorialreg.losses` (``"ssd"``, ``"ncc"``, ``"lncc"``, ``"gmi"``).
    :param learning_rate: Adam's learning rate (one, or one per level). Its unit is the parameters':
        voxel-index theta for ``coordinates="voxel"``, normalised units for ``"centred"`` (0.01 moves
        the volume by about 1 % of its half-size).
    :param steps: Adam steps (one number for every level, or one per level).
    :param coordinates: ``"voxel"`` optimises theta on raw voxel indices (the tutorial);
        ``"centred"`` optimises ``(linear, shift)`` about the volume centre in coordinates scaled to
        ``[-1, 1]`` (see :func:`affine_from_centred`), which puts all 12 gradients on one scale.
    :param mask_outside: average the image loss only over fixed voxels that land inside the moving image
        (for other losses than ``"ssd"``, voxels outside take the fixed value).
    :param levels: pyramid subsampling factors, coarse to fine, e.g. ``(4, 2)``, each a number or a per-axis
        triple such as ``(1, 2, 2)``; the loss of level ``f`` is evaluated on every ``f``-th fixed voxel
        (centred in the volume); theta stays in full-size voxels throughout.
    :param smoothing: Gaussian sigma (full-size voxels) applied to both images at each level: one value, or
        one per level (each a number or a per-axis triple); default ``factor / 2`` per axis (0 at factor 1).
    :param schedule: ``"constant"`` (the tutorial) or ``"cosine"`` (decays to 0 over each level).
    :param plateau_tol: stop a level when the mean loss of the last ``plateau_window`` steps improved on
        the window before by less than this fraction of the level's loss range; None runs every step.
    :param init: starting theta ``[1, 4, 3]`` (default identity).
    :param loss_kwargs: extra keyword arguments of the loss (e.g. ``{"kernel_size": 5}``).
    :param chunk: steps per compiled call (the progress bar, live plot and plateau test run between calls).
    :param jit: compile with XLA (``jit_compile=True``).
    :param progress: show a tqdm progress bar. ``live_plot``: True for a
        :class:`tutorialreg.viz.LiveLossPlot`, or your own object with ``update(step, **terms)``.
    :param callback: ``callback(step, {term: value})`` after every chunk.
    :param seed: kept for a uniform signature; the affine starts from ``init`` and involves no randomness.
    :return: :class:`RegistrationResult` with ``theta``, ``ddf``, ``warped`` and ``history``.
    """
    t_start = time.perf_counter()
    mov, fix = _pair(moving, fixed)
    if coordinates not in ("voxel", "centred"):
        raise ValueError(f"coordinates must be 'voxel' or 'centred', got {coordinates!r}")
    loss_fn = _loss_fn(loss, _IMAGE_LOSSES, "image", loss_kwargs)
    shape = fix.shape
    factors, sigmas, lrs, steps_ = _schedule(levels, smoothing, shape, learning_rate, steps)
    if any(s < 1 for s in steps_) or any(lr <= 0 for lr in lrs):
        raise ValueError(f"steps must be >= 1 and learning_rate > 0, got {steps_} and {lrs}")
    theta0 = warp.IDENTITY_THETA[None] if init is None else np.asarray(init, np.float32).reshape(1, 4, 3)

    if coordinates == "centred":
        lin0, shift0 = centred_from_affine(theta0, shape)
        params = [tf.constant(lin0), tf.constant(shift0)]

        def to_theta(p):
            return affine_from_centred(p[0], p[1], shape)
    else:
        params = [tf.constant(theta0)]

        def to_theta(p):
            return p[0]

    upper = tf.constant(np.array(shape, np.float32) - 1.0)

    def objective(p, points, fixed_values, moving_image):
        theta = to_theta(p)
        pred = warp.warp_affine(moving_image, theta, points=points)  # [1, D1, D2, D3]
        if mask_outside:
            # where the points land, only to mask: no gradient, and cheap next to the warp's backward pass
            loc = warp.affine_grid(points, tf.stop_gradient(theta))  # [1, D1, D2, D3, 3]
            inside = tf.reduce_all((loc >= 0.0) & (loc <= upper), axis=-1)
            pred = tf.where(inside, pred, fixed_values)
            value = loss_fn(fixed_values, pred)[0]
            if loss == "ssd":  # mean over the inside voxels only
                frac = tf.reduce_mean(tf.cast(inside, tf.float32))
                value = value / tf.maximum(frac, 1e-6)
        else:
            value = loss_fn(fixed_values, pred)[0]
        return [value, value]

    level_list = []
    for f, s, n, lr in zip(factors, sigmas, steps_, lrs, strict=True):
        points = tf.constant(_level_points(shape, f), tf.float32)
        fv = tf.constant(_level_image(fix, f, s)[None])
        mv = ndimage.gaussian_filter(mov, s, mode="nearest") if max(s) > 0 else mov
        mv = tf.constant(mv[None], tf.float32)
        level_list.append(_Level((points, fv, mv), n, lr))

    names = ["total", loss]
    live = _live(live_plot, f"affine registration ({loss})")
    out = _optimise(objective, names, params, level_list, lambda i, p: p, schedule=schedule,
                    plateau_tol=plateau_tol, plateau_window=plateau_window, chunk=chunk, jit=jit,
                    progress=progress, callback=callback, live_plot=live, desc="affine")
    theta = to_theta(out["params"]).numpy()
    warped = warp.warp_affine(mov[None], theta).numpy()
    return RegistrationResult(
        kind="affine", theta=theta, ddf=warp.ddf_from_theta(theta, shape).numpy(), warped=warped,
        history=out["history"], level=out["level"], level_steps=out["level_steps"],
        time_per_step=out["time_per_step"], level_time_per_step=out["level_time_per_step"],
        compile_time=out["compile_time"], total_time=time.perf_counter() - t_start,
        stopped_early=out["stopped_early"],
        settings=dict(loss=loss, learning_rate=lrs, steps=steps_, coordinates=coordinates,
                      mask_outside=mask_outside, levels=factors, smoothing=sigmas, schedule=schedule,
                      plateau_tol=plateau_tol, seed=seed),
    )


# ----------------------------------------------------------------------------------------------------------
# nonrigid
# ----------------------------------------------------------------------------------------------------------
def register_ddf(
    moving,
    fixed,
    image_loss: str = "lncc",
    deform_loss: str = "bending",
    deform_weight: float | Sequence[float] = 1.0,
    learning_rate: float | Sequence[float] = 0.1,
    steps: int | Sequence[int] = 3001,
    parameterisation: str = "ddf",
    *,
    levels: Sequence[int | Sequence[int]] = (1,),
    smoothing: float | Sequence[float] | None = None,
    field_sigma: float = 0.0,
    svf_steps: int = 7,
    schedule: str = "constant",
    plateau_tol: float | None = None,
    plateau_window: int = 50,
    init_std: float = 1e-3,
    image_loss_kwargs: dict | None = None,
    chunk: int = 50,
    jit: bool = True,
    progress: bool = True,
    live_plot=False,
    callback: Callback | None = None,
    seed: int = 0,
) -> RegistrationResult:
    """Nonrigid registration: optimise a dense field so that ``moving(x + ddf(x))`` matches ``fixed(x)``.

    Minimises ``image_loss(fixed, warped) + deform_weight * deform_loss(ddf)`` with Adam.

    :param moving, fixed: ``[d1, d2, d3]`` or ``[1, d1, d2, d3]`` images of the same shape.
    :param image_loss: ``"lncc"`` (the tutorial), ``"ssd"``, ``"ncc"`` or ``"gmi"``.
    :param deform_loss: ``"bending"`` (the tutorial), ``"gradient-l1"`` or ``"gradient-l2"``.
    :param deform_weight: weight of the deformation loss (one, or one per level).
    :param learning_rate: Adam's learning rate, in voxels of the level (one, or one per level).
    :param steps: Adam steps (one number for every level, or one per level).
    :param parameterisation: ``"ddf"`` optimises the displacement of every voxel (the tutorial);
        ``"dvf"`` optimises a stationary velocity field and integrates it by scaling and squaring
        (``svf_steps`` squarings), which keeps the transformation invertible when the field is smooth.
    :param levels: pyramid subsampling factors, coarse to fine, e.g. ``(4, 2)`` or per-axis
        ``((2, 4, 4), (1, 2, 2))``. Level ``f`` registers images smoothed and subsampled by ``f``, with the
        field in that level's voxels; the field is upsampled (trilinear) to start the next level, and to full
        size at the end.
    :param smoothing: Gaussian sigma (full-size voxels) of the images at each level, as in
        :func:`register_affine`; default ``factor / 2`` per axis.
    :param field_sigma: if > 0, the optimised field is smoothed by a Gaussian of this sigma (voxels of the
        level) before use: a smooth parameterisation that damps voxel-wise noise in Adam's steps.
    :param schedule, plateau_tol, plateau_window, chunk, jit, progress, live_plot, callback: as in
        :func:`register_affine`.
    :param init_std: standard deviation (voxels) of the random normal initial field (the tutorial: 1e-3).
    :param image_loss_kwargs: extra keyword arguments of the image loss (e.g. ``{"kernel_size": 9}``).
    :param seed: seed of the initial field; the same seed gives the same result.
    :return: :class:`RegistrationResult` with ``ddf`` (full size), ``velocity`` (DVF only), ``warped``
        and ``history`` (``"total"``, the image loss, the unweighted deformation loss).
    """
    t_start = time.perf_counter()
    mov, fix = _pair(moving, fixed)
    if parameterisation not in ("ddf", "dvf"):
        raise ValueError(f"parameterisation must be 'ddf' or 'dvf', got {parameterisation!r}")
    image_fn = _loss_fn(image_loss, _IMAGE_LOSSES, "image", image_loss_kwargs)
    deform_fn = _loss_fn(deform_loss, _DEFORM_LOSSES, "deformation", None)
    shape = fix.shape
    factors, sigmas, lrs, steps_ = _schedule(levels, smoothing, shape, learning_rate, steps)
    weights = _per_level(deform_weight, len(factors), "deform_weight", float)
    if any(s < 1 for s in steps_) or any(lr <= 0 for lr in lrs) or any(w < 0 for w in weights):
        raise ValueError(f"steps must be >= 1, learning_rate > 0 and deform_weight >= 0; "
                         f"got {steps_}, {lrs}, {weights}")
    if field_sigma < 0 or svf_steps < 0:
        raise ValueError(f"field_sigma and svf_steps must be >= 0, got {field_sigma}, {svf_steps}")

    def to_ddf(u):
        v = _smooth_field(u, field_sigma)
        return warp.integrate_svf(v, svf_steps) if parameterisation == "dvf" else v

    def objective(p, fixed_image, moving_image, weight):
        ddf = to_ddf(p[0])
        image_value = image_fn(fixed_image, warp.warp(moving_image, ddf))[0]
        deform_value = deform_fn(ddf)[0]
        return [image_value + weight * deform_value, image_value, deform_value]

    level_list = []
    for f, s, n, lr, w in zip(factors, sigmas, steps_, lrs, weights, strict=True):
        data = (tf.constant(_level_image(fix, f, s)[None]), tf.constant(_level_image(mov, f, s)[None]),
                tf.constant(w, tf.float32))
        level_list.append(_Level(data, n, lr))

    n0, _ = _level_geometry(shape, factors[0])
    rng = np.random.default_rng(seed)
    u0 = rng.normal(0.0, init_std, size=[1, *n0, 3]) / np.asarray(factors[0], np.float64)
    u0 = tf.constant(u0.astype(np.float32))

    def on_level(i, p):
        return p if i == 0 else [_resample_field(p[0], shape, factors[i - 1], factors[i])]

    names = ["total", image_loss, deform_loss]
    live = _live(live_plot, f"nonrigid registration ({image_loss} + {weights[0]:g} x {deform_loss})")
    out = _optimise(objective, names, [u0], level_list, on_level, schedule=schedule, plateau_tol=plateau_tol,
                    plateau_window=plateau_window, chunk=chunk, jit=jit, progress=progress, callback=callback,
                    live_plot=live, desc=f"nonrigid ({parameterisation})")
    u = out["params"][0]
    last, full = factors[-1], (1, 1, 1)
    if parameterisation == "dvf":
        velocity_level = _smooth_field(u, field_sigma)
        ddf = _resample_field(warp.integrate_svf(velocity_level, svf_steps), shape, last, full)
        velocity = _resample_field(velocity_level, shape, last, full).numpy()
    else:
        ddf = _resample_field(to_ddf(u), shape, last, full)
        velocity = None
    ddf = ddf.numpy()
    warped = warp.warp(mov[None], ddf).numpy()
    return RegistrationResult(
        kind=parameterisation, ddf=ddf, velocity=velocity, warped=warped, history=out["history"],
        level=out["level"], level_steps=out["level_steps"], time_per_step=out["time_per_step"],
        level_time_per_step=out["level_time_per_step"], compile_time=out["compile_time"],
        total_time=time.perf_counter() - t_start,
        stopped_early=out["stopped_early"],
        settings=dict(image_loss=image_loss, deform_loss=deform_loss, deform_weight=weights,
                      learning_rate=lrs, steps=steps_, parameterisation=parameterisation, levels=factors,
                      smoothing=sigmas, field_sigma=field_sigma, schedule=schedule, plateau_tol=plateau_tol,
                      seed=seed),
    )
