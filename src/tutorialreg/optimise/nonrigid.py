"""Classical nonrigid registration: Adam on a dense field (the tutorial's section 4.2), and refinement of a
given field (instance optimisation)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tutorialreg import losses, warp
from tutorialreg.callbacks import Callback, check_callbacks
from tutorialreg.filters import smooth_field
from tutorialreg.optimise import engine
from tutorialreg.optimise.pyramid import image_pair, level_geometry, level_image, resample_field
from tutorialreg.optimise.result import RegistrationResult
from tutorialreg.optimise.settings import NONRIGID_TUTORIAL, NonrigidSettings

__all__ = ["register_ddf"]

FULL = (1, 1, 1)


def _field_maps(settings: NonrigidSettings):
    """``(to_velocity_or_ddf, to_ddf)``: parameter -> smoothed field -> DDF (integrated for a DVF)."""

    def smoothed(u):
        return smooth_field(u, settings.field_sigma)

    def to_ddf(u):
        v = smoothed(u)
        return warp.integrate_svf(v, settings.svf_steps) if settings.parameterisation == "dvf" else v

    return smoothed, to_ddf


def _objective(settings: NonrigidSettings, to_ddf):
    """``objective(params, fixed, moving, weight) -> [total, image loss, deformation loss]``."""
    image_fn, deform_fn = losses.get(settings.image_loss), losses.get(settings.deform_loss)
    kwargs = dict(settings.image_loss_kwargs)

    def objective(p, fixed_image, moving_image, weight):
        ddf = to_ddf(p[0])
        image_value = image_fn(fixed_image, warp.warp(moving_image, ddf), **kwargs)[0]
        deform_value = deform_fn(ddf)[0]
        return [image_value + weight * deform_value, image_value, deform_value]

    return objective


def _cache_key(settings: NonrigidSettings, shape) -> tuple:
    """What the compiled step depends on besides its tensor arguments (images, weight, learning rate and
    step counts are arguments, so a weight sweep compiles once)."""
    return ("nonrigid", settings.image_loss, repr(settings.image_loss_kwargs), settings.deform_loss,
            settings.parameterisation, settings.field_sigma, settings.svf_steps, tuple(shape))


def register_ddf(moving, fixed, settings: NonrigidSettings = NONRIGID_TUTORIAL, *, seed: int = 0,
                 chunk: int = 50, jit: bool = True, progress: bool = True, callbacks: Sequence[Callback] = (),
                 **changes) -> RegistrationResult:
    """Nonrigid registration: optimise a dense field so that ``moving(x + ddf(x))`` matches ``fixed(x)``.

    Minimises ``image_loss(fixed, warped) + deform_weight * deform_loss(ddf)`` with Adam, level by level of
    the schedule's pyramid (the field lives in each level's voxels and is upsampled trilinearly to start the
    next level, and to full size at the end).

    :param moving: ``[d1, d2, d3]`` or ``[1, d1, d2, d3]`` image; ``fixed`` the same shape.
    :param settings: a :class:`NonrigidSettings` (default: the tutorial's, ``NONRIGID_TUTORIAL``; chapter 5's
        ``NONRIGID_RECOMMENDED``).
    :param changes: settings or schedule fields to change for this call (``settings.replace``).
    :param seed: seed of the random initial field; the same seed gives the same result.
    :param chunk, jit, progress, callbacks: as in :func:`register_affine`.
    :return: :class:`RegistrationResult` with ``ddf`` (full size), ``velocity`` (DVF only), ``warped`` and
        ``history`` (``"total"``, the image loss, the unweighted deformation loss).
    """
    t_start = time.perf_counter()
    settings = settings.replace(**changes) if changes else settings
    mov, fix = image_pair(moving, fixed)
    shape = fix.shape
    levels = settings.schedule.resolve(shape)
    smoothed, to_ddf = _field_maps(settings)
    stages = [engine.Stage((tf.constant(level_image(fix, lv.factor, lv.sigma)[None]),
                            tf.constant(level_image(mov, lv.factor, lv.sigma)[None]),
                            tf.constant(w, tf.float32)), lv.steps, lv.lr)
              for lv, w in zip(levels, settings.weights(), strict=True)]
    n0, _ = level_geometry(shape, levels[0].factor)
    u0 = np.random.default_rng(seed).normal(0.0, settings.init_std, size=[1, *n0, 3])
    u0 = tf.constant((u0 / np.asarray(levels[0].factor, np.float64)).astype(np.float32))

    def on_stage(i, p):
        return p if i == 0 else [resample_field(p[0], shape, levels[i - 1].factor, levels[i].factor)]

    names = ["total", settings.image_loss, settings.deform_loss]
    params, trace = engine.run(
        _objective(settings, to_ddf), names, [u0], stages, on_stage, settings.schedule, chunk=chunk,
        jit=jit, callbacks=check_callbacks(callbacks), progress=progress,
        desc=f"nonrigid ({settings.parameterisation})", cache_key=_cache_key(settings, shape))
    u, last = params[0], levels[-1].factor
    velocity = None
    if settings.parameterisation == "dvf":
        velocity_level = smoothed(u)
        ddf = resample_field(warp.integrate_svf(velocity_level, settings.svf_steps), shape, last, FULL)
        velocity = resample_field(velocity_level, shape, last, FULL).numpy()
    else:
        ddf = resample_field(to_ddf(u), shape, last, FULL)
    ddf = ddf.numpy()
    return RegistrationResult(
        kind=settings.parameterisation, ddf=ddf, velocity=velocity, warped=warp.warp(mov[None], ddf).numpy(),
        trace=trace, total_time=time.perf_counter() - t_start, settings=settings)
