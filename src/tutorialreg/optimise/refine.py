"""Refinement of a given deformation at test time ("instance optimisation").

A network predicts a DDF in one pass; a few steps of the classical optimiser, started from that DDF on the
one pair at hand, can improve it using only the images (the recipe that won Learn2Reg 2021). Here the
optimiser registers the moving image as already warped by the given field, with a residual field ``r``
(by default a smooth, integrated velocity field, so it cannot fold), and the result is their composition:
``warped(x) = moving(x + u(x + r(x)) + r(x))`` = ``warp(warp(moving, u), r)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tutorialreg import losses, warp
from tutorialreg.callbacks import Callback
from tutorialreg.optimise.nonrigid import register_ddf
from tutorialreg.optimise.pyramid import as_image
from tutorialreg.optimise.result import RegistrationResult
from tutorialreg.optimise.settings import NonrigidSettings, Schedule

__all__ = ["REFINE_DEFAULT", "Refinement", "refine_ddf"]

#: Refinement settings: a smoothed velocity field integrated by scaling and squaring (no folding), LNCC +
#: bending, a short two-level schedule with a cosine-decaying learning rate.
REFINE_DEFAULT = NonrigidSettings(
    image_loss="lncc", parameterisation="dvf", field_sigma=1.0, deform_weight=1.0,
    schedule=Schedule(levels=(2, 1), learning_rate=0.05, steps=(50, 50), decay="cosine", plateau_window=25))


@dataclass(frozen=True)
class Refinement:
    """What :func:`refine_ddf` returns.

    :ivar ddf: ``[1, d1, d2, d3, 3]`` the refined field (voxels), or the given field when refinement did
        not lower the objective (``improved`` False).
    :ivar warped: ``[1, d1, d2, d3]`` the moving image warped once by ``ddf``.
    :ivar loss_before: the refinement objective (image loss + weight x deformation loss of the residual)
        with no residual, at full size; ``loss_after``: with the optimised residual.
    :ivar residual: the :class:`RegistrationResult` of the residual registration.
    """

    ddf: np.ndarray
    warped: np.ndarray
    loss_before: float
    loss_after: float
    improved: bool
    residual: RegistrationResult


def _objective_value(settings: NonrigidSettings, fixed, warped, residual) -> float:
    """The refinement objective at full size, with the finest level's deformation weight."""
    image = losses.get(settings.image_loss)(fixed, warped, **dict(settings.image_loss_kwargs))[0]
    deform = losses.get(settings.deform_loss)(residual)[0]
    return float(image + settings.weights()[-1] * deform)


def refine_ddf(moving, fixed, ddf, settings: NonrigidSettings = REFINE_DEFAULT, *, seed: int = 0,
               jit: bool = True, progress: bool = False, callbacks: Sequence[Callback] = (),
               **changes) -> Refinement:
    """Refine ``ddf`` (e.g. a network's prediction) on one pair with a label-free image loss.

    :param moving: ``[d1, d2, d3]`` or ``[1, d1, d2, d3]``; ``fixed`` the same shape.
    :param ddf: ``[1, d1, d2, d3, 3]`` or ``[d1, d2, d3, 3]`` starting field on the fixed grid, voxels.
    :param settings: the residual registration's settings (default :data:`REFINE_DEFAULT`); ``changes``
        replace some of them, e.g. ``steps=(25, 25)`` or ``image_loss="gmi"``.
    :param seed, jit, progress, callbacks: as in :func:`register_ddf`.
    :return: a :class:`Refinement`; never worse than the start on its own objective: when the optimised
        residual does not lower it, the given field is returned unchanged.
    """
    settings = settings.replace(**changes) if changes else settings
    mov, fix = as_image(moving, "moving"), as_image(fixed, "fixed")
    start = tf.convert_to_tensor(np.asarray(ddf, np.float32).reshape(1, *fix.shape[1:4], 3))
    prewarped = warp.warp(mov, start)
    residual = register_ddf(prewarped, fix, settings, seed=seed, jit=jit, progress=progress,
                            callbacks=callbacks)
    zero = tf.zeros_like(start)
    before = _objective_value(settings, fix, prewarped, zero)
    after = _objective_value(settings, fix, residual.warped, residual.ddf)
    if not after < before:
        return Refinement(start.numpy(), prewarped.numpy(), before, before, False, residual)
    total = warp.compose(start, residual.ddf)
    return Refinement(total.numpy(), warp.warp(mov, total).numpy(), before, after, True, residual)
