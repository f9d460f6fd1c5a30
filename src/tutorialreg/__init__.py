"""tutorialreg: medical image registration between old and new.

The companion package of the tutorialreg book. Data flow one way, each module one job:

- :mod:`~tutorialreg.runtime` (environment switches), :mod:`~tutorialreg.checks` (input checks): used by all;
- :mod:`~tutorialreg.data`: verified downloads, a local mirror, loaders, paired data sets and their batches;
- :mod:`~tutorialreg.warp`: grids, affine maps, resampling, warping, scaling and squaring;
- :mod:`~tutorialreg.filters` and :mod:`~tutorialreg.losses`: separable filters; image, label and
  deformation losses (all return ``[batch]``);
- :mod:`~tutorialreg.optimise`: classical (iterative) registration; :mod:`~tutorialreg.networks`,
  :mod:`~tutorialreg.config`, :mod:`~tutorialreg.checkpoints`, :mod:`~tutorialreg.train` and
  :mod:`~tutorialreg.predict`: learning-based registration; :mod:`~tutorialreg.baselines`: classical
  registrations to compare networks with; engines report through :mod:`~tutorialreg.callbacks`;
- :mod:`~tutorialreg.metrics` and :mod:`~tutorialreg.evaluate`: numpy evaluation metrics and tables;
- :mod:`~tutorialreg.viz`: figures, the slice browser and live plots (nothing else imports it).

Conventions everywhere: arrays are ``[batch, d1, d2, d3(, channels)]``, coordinates are voxel indices
in ij order (axis 0, 1, 2), and a dense displacement field (DDF) ``[batch, d1, d2, d3, 3]`` is defined on
the fixed image's grid: ``warped(x) = moving(x + ddf(x))``.
"""

from tutorialreg.runtime import fast_mode, mode_banner, pick

__version__ = "0.1.0"
__all__ = ["fast_mode", "mode_banner", "pick", "__version__"]
