"""Classical affine registration: Adam on the 12 numbers of an affine map (the tutorial's section 4.1)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tutorialreg import losses, warp
from tutorialreg.callbacks import Callback, check_callbacks
from tutorialreg.optimise import engine
from tutorialreg.optimise.pyramid import image_pair, level_image, level_points, smooth
from tutorialreg.optimise.result import RegistrationResult
from tutorialreg.optimise.settings import AFFINE_TUTORIAL, AffineSettings

__all__ = ["register_affine"]


def _parameters(settings: AffineSettings, theta0: np.ndarray, shape: tuple[int, ...]):
    """Initial parameter list and the map from parameters to theta ``[1, 4, 3]``."""
    if settings.coordinates == "centred":
        lin0, shift0 = warp.centred_from_affine(theta0, shape)

        def to_theta(p):
            return warp.affine_from_centred(p[0], p[1], shape)

        return [tf.constant(lin0), tf.constant(shift0)], to_theta

    def identity(p):
        return p[0]

    return [tf.constant(theta0)], identity


def _objective(settings: AffineSettings, to_theta, shape: tuple[int, ...]):
    """``objective(params, points, fixed_values, moving_image) -> [total, image loss]``."""
    fn = losses.get(settings.loss)
    kwargs = dict(settings.loss_kwargs)
    upper = tf.constant(np.array(shape, np.float32) - 1.0)

    def objective(p, points, fixed_values, moving_image):
        theta = to_theta(p)
        pred = warp.warp_affine(moving_image, theta, points=points)  # [1, D1, D2, D3]
        if settings.mask_outside:
            # where the points land, only to mask: no gradient, and cheap next to the warp's backward pass
            loc = warp.affine_grid(points, tf.stop_gradient(theta))  # [1, D1, D2, D3, 3]
            inside = tf.reduce_all((loc >= 0.0) & (loc <= upper), axis=-1)
            pred = tf.where(inside, pred, fixed_values)
            value = fn(fixed_values, pred, **kwargs)[0]
            if settings.loss == "ssd":  # mean over the inside voxels only
                frac = tf.reduce_mean(tf.cast(inside, tf.float32))
                value = value / tf.maximum(frac, 1e-6)
        else:
            value = fn(fixed_values, pred, **kwargs)[0]
        return [value, value]

    return objective


def register_affine(moving, fixed, settings: AffineSettings = AFFINE_TUTORIAL, *, init=None, chunk: int = 25,
                    jit: bool = True, progress: bool = True, callbacks: Sequence[Callback] = (),
                    **changes) -> RegistrationResult:
    """Find the affine ``theta`` that makes ``moving(theta(x))`` look like ``fixed(x)``, by Adam.

    :param moving: ``[d1, d2, d3]`` or ``[1, d1, d2, d3]`` image; ``fixed`` the same shape.
    :param settings: an :class:`AffineSettings` (default: the tutorial's, ``AFFINE_TUTORIAL``; chapter 4's
        ``AFFINE_RECOMMENDED``).
    :param changes: settings or schedule fields to change for this call, e.g. ``steps=300`` or
        ``mask_outside=True`` (applied with ``settings.replace``).
    :param init: starting theta ``[1, 4, 3]`` (default identity).
    :param chunk: steps per compiled call (callbacks see every step; the plateau test runs between calls).
    :param jit: compile with XLA.
    :param progress: show a progress bar.
    :param callbacks: objects with ``on_step(step, terms)`` and ``close()``, e.g. ``viz.LiveLossPlot()``.
    :return: :class:`RegistrationResult` with ``theta``, ``ddf``, ``warped`` and ``history`` (``"total"`` and
        the loss under its name).
    """
    t_start = time.perf_counter()
    settings = settings.replace(**changes) if changes else settings
    mov, fix = image_pair(moving, fixed)
    shape = fix.shape
    levels = settings.schedule.resolve(shape)
    theta0 = warp.IDENTITY_THETA[None] if init is None else np.asarray(init, np.float32).reshape(1, 4, 3)
    params, to_theta = _parameters(settings, theta0, shape)
    stages = []
    for lv in levels:
        points = tf.constant(level_points(shape, lv.factor), tf.float32)
        fv = tf.constant(level_image(fix, lv.factor, lv.sigma)[None])
        mv = tf.constant(smooth(mov, lv.sigma)[None], tf.float32)
        stages.append(engine.Stage((points, fv, mv), lv.steps, lv.lr))
    params, trace = engine.run(
        _objective(settings, to_theta, shape), ["total", settings.loss], params, stages, lambda i, p: p,
        settings.schedule, chunk=chunk, jit=jit, callbacks=check_callbacks(callbacks), progress=progress,
        desc="affine", cache_key=("affine", settings.loss, repr(settings.loss_kwargs), settings.coordinates,
                                  settings.mask_outside, shape))
    theta = to_theta(params).numpy()
    return RegistrationResult(
        kind="affine", theta=theta, ddf=warp.ddf_from_theta(theta, shape).numpy(),
        warped=warp.warp_affine(mov[None], theta).numpy(), trace=trace,
        total_time=time.perf_counter() - t_start, settings=settings)
