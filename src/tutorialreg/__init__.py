"""tutorialreg: medical image registration between old and new.

The companion package of the tutorialreg book. Modules:

- :mod:`tutorialreg.warp`: grids, affine maps, resampling, warping, scaling and squaring.
- :mod:`tutorialreg.losses`: image, label and deformation losses (all return ``[batch]``).
- :mod:`tutorialreg.metrics`: numpy evaluation metrics (Dice, HD95, Jacobian, folding, affine error).
- :mod:`tutorialreg.data`: verified downloads, a local mirror, loaders for every chapter's data.
- :mod:`tutorialreg.optimise`: classical (iterative) affine and nonrigid registration.
- :mod:`tutorialreg.networks`, :mod:`tutorialreg.train`: learning-based registration.
- :mod:`tutorialreg.viz`: figures and the slice browser.

Conventions everywhere: arrays are ``[batch, d1, d2, d3(, channels)]``, coordinates are voxel indices
in ij order (axis 0, 1, 2), and a dense displacement field (DDF) ``[batch, d1, d2, d3, 3]`` is defined on
the fixed image's grid: ``warped(x) = moving(x + ddf(x))``.
"""

from tutorialreg.runtime import fast_mode, mode_banner, pick

__version__ = "0.1.0"
__all__ = ["fast_mode", "mode_banner", "pick", "__version__"]
