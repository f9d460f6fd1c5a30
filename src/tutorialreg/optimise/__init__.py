"""Classical registration: optimise one transformation for one pair of images.

- :func:`register_affine`: 12 affine parameters, image loss only (the tutorial's listings 1.9-1.13).
- :func:`register_ddf`: a dense displacement field (DDF), or a stationary velocity field integrated by
  scaling and squaring (DVF), with an image loss plus a weighted deformation loss (listings 1.14-1.17).
- :func:`refine_ddf`: a few such steps started from a given field, e.g. a network's (instance optimisation).

What to optimise and how is a frozen settings object (:class:`AffineSettings`, :class:`NonrigidSettings`,
each with a :class:`Schedule`); the defaults are the tutorial's settings (``AFFINE_TUTORIAL``,
``NONRIGID_TUTORIAL``), the chapters' improved ones are ``AFFINE_RECOMMENDED`` and ``NONRIGID_RECOMMENDED``.
Progress is reported through ``callbacks`` (:mod:`tutorialreg.callbacks`).

Conventions: images ``[batch=1, d1, d2, d3]`` (or ``[d1, d2, d3]``), voxel indices in ij order, a DDF
``[1, d1, d2, d3, 3]`` on the fixed grid with ``warped(x) = moving(x + ddf(x))``, and an affine ``theta``
``[1, 4, 3]`` mapping fixed voxel indices to moving ones: ``loc = [p, 1] @ theta``.
"""

from tutorialreg.optimise.affine import register_affine
from tutorialreg.optimise.engine import Trace, adam_update
from tutorialreg.optimise.nonrigid import register_ddf
from tutorialreg.optimise.refine import REFINE_DEFAULT, Refinement, refine_ddf
from tutorialreg.optimise.result import RegistrationResult
from tutorialreg.optimise.settings import (
    AFFINE_RECOMMENDED,
    AFFINE_TUTORIAL,
    NONRIGID_RECOMMENDED,
    NONRIGID_TUTORIAL,
    AffineSettings,
    NonrigidSettings,
    Schedule,
)

__all__ = [
    "AFFINE_RECOMMENDED",
    "AFFINE_TUTORIAL",
    "NONRIGID_RECOMMENDED",
    "NONRIGID_TUTORIAL",
    "REFINE_DEFAULT",
    "AffineSettings",
    "NonrigidSettings",
    "Refinement",
    "RegistrationResult",
    "Schedule",
    "Trace",
    "adam_update",
    "refine_ddf",
    "register_affine",
    "register_ddf",
]
