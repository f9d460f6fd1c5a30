"""Settings of classical registration as frozen objects: a :class:`Schedule` and per-method settings.

A schedule says how the optimisation proceeds (pyramid levels, their smoothing, learning rates, step
budgets, learning-rate decay, plateau stop); :class:`AffineSettings` and :class:`NonrigidSettings` add
what is optimised and against which losses. All are immutable: ``settings.replace(name=value, ...)``
returns a changed copy and accepts schedule fields too (``AFFINE_RECOMMENDED.replace(decay="constant")``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from tutorialreg.checks import number, per_level

IMAGE_LOSSES = ("ssd", "ncc", "lncc", "gmi")
DEFORM_LOSSES = ("bending", "gradient-l1", "gradient-l2")
DECAYS = ("constant", "cosine")

__all__ = [
    "AFFINE_RECOMMENDED",
    "AFFINE_TUTORIAL",
    "NONRIGID_RECOMMENDED",
    "NONRIGID_TUTORIAL",
    "AffineSettings",
    "Level",
    "NonrigidSettings",
    "Schedule",
]

Factor = tuple[int, int, int]


@dataclass(frozen=True)
class Level:
    """One pyramid level: subsampling ``factor`` and Gaussian ``sigma`` per axis (full-size voxels),
    Adam's learning rate ``lr`` and the step budget ``steps``."""

    factor: Factor
    sigma: tuple[float, float, float]
    lr: float
    steps: int


def _tuple(value: Any) -> Any:
    """Lists become tuples (recursively), so a frozen schedule holds no mutable sequence."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(_tuple(v) for v in value)
    return value


def _factor(f: Any) -> Factor:
    f3 = tuple(int(x) for x in (np.broadcast_to(f, 3) if np.ndim(f) == 0 else f))
    if len(f3) != 3 or min(f3) < 1:
        raise ValueError(f"each level must be a factor >= 1 or three per-axis factors, got {f!r}")
    return f3  # type: ignore[return-value]


@dataclass(frozen=True)
class Schedule:
    """How an optimisation proceeds.

    :param levels: pyramid subsampling factors, coarse to fine, e.g. ``(4, 2)``, each a number or a per-axis
        triple such as ``(1, 2, 2)``; ``(1,)`` is a single full-size level.
    :param smoothing: Gaussian sigma (full-size voxels) applied to both images at each level: one value, or
        one per level (each a number or a per-axis triple); None: ``factor / 2`` per axis (0 at factor 1).
    :param learning_rate: Adam's learning rate, one or one per level.
    :param steps: step budget, one or one per level.
    :param decay: ``"constant"`` or ``"cosine"`` (the learning rate decays to 0 over each level).
    :param plateau_tol: stop a level when the mean loss of the last ``plateau_window`` steps improved on the
        window before by less than this fraction of the level's loss range; None runs every step.
    """

    levels: Any = (1,)
    smoothing: Any = None
    learning_rate: Any = 0.01
    steps: Any = 1001
    decay: str = "constant"
    plateau_tol: float | None = None
    plateau_window: int = 25

    def __post_init__(self) -> None:
        for name in ("levels", "smoothing", "learning_rate", "steps"):
            object.__setattr__(self, name, _tuple(getattr(self, name)))
        if isinstance(self.levels, (int, np.integer)) or not len(self.levels):
            raise ValueError(f"levels must be a non-empty sequence of subsampling factors, e.g. (4, 2), "
                             f"got {self.levels!r}")
        n = len(self.levels)
        for f in self.levels:
            _factor(f)
        lrs = per_level(self.learning_rate, n, "learning_rate")
        steps = per_level(self.steps, n, "steps", int)
        if any(s < 1 for s in steps) or any(not lr > 0 for lr in lrs):
            raise ValueError(f"steps must be >= 1 and learning_rate > 0, got {steps} and {lrs}")
        if self.decay not in DECAYS:
            raise ValueError(f"schedule decay must be one of {DECAYS}, got {self.decay!r}")
        if self.plateau_tol is not None:
            number(self.plateau_tol, "plateau_tol", low=0.0)
        number(self.plateau_window, "plateau_window", low=1, integer=True)
        if self.smoothing is not None and np.ndim(self.smoothing) != 0 and len(self.smoothing) != n:
            raise ValueError(f"smoothing must be one value or {n} values (one per level), "
                             f"got {len(self.smoothing)}")

    def resolve(self, shape: tuple[int, ...]) -> list[Level]:
        """The levels for an image of ``shape``; ValueError when a level would be below 4 voxels per axis."""
        factors = [_factor(f) for f in self.levels]
        for f, given in zip(factors, self.levels, strict=True):
            if any(d // fa < 4 for d, fa in zip(shape, f, strict=True)):
                raise ValueError(f"level {given!r} subsamples an image of shape {tuple(shape)} below 4 "
                                 "voxels per axis")
        if self.smoothing is None:
            sigmas = [tuple(fa / 2.0 if fa > 1 else 0.0 for fa in f) for f in factors]
        else:
            smoothing = [self.smoothing] * len(factors) if np.ndim(self.smoothing) == 0 else self.smoothing
            sigmas = [tuple(float(x) for x in np.broadcast_to(sg, 3)) for sg in smoothing]
        if any(x < 0 for sg in sigmas for x in sg):
            raise ValueError(f"smoothing sigmas must be >= 0 voxels, got {sigmas}")
        lrs = per_level(self.learning_rate, len(factors), "learning_rate")
        steps = per_level(self.steps, len(factors), "steps", int)
        return [Level(f, s, lr, n) for f, s, lr, n in zip(factors, sigmas, lrs, steps, strict=True)]  # type: ignore


class _Replace:
    """``replace(**changes)`` for a frozen settings dataclass with a nested ``schedule``."""

    schedule: Schedule

    def replace(self, **changes: Any):
        """A copy with ``changes`` applied; schedule fields (``levels``, ``steps``, ``decay``...) go to the
        schedule. Unknown names raise ValueError listing the valid ones."""
        own = {f.name for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        sched = {f.name for f in dataclasses.fields(Schedule)}
        unknown = sorted(set(changes) - own - sched)
        if unknown:
            raise ValueError(f"unknown setting(s) {unknown}; valid: {sorted(own | sched)}")
        schedule = changes.pop("schedule", self.schedule)
        schedule_changes = {k: changes.pop(k) for k in list(changes) if k in sched}
        if schedule_changes:
            schedule = dataclasses.replace(schedule, **schedule_changes)
        return dataclasses.replace(self, schedule=schedule, **changes)  # type: ignore[type-var]


def _frozen(mapping: Mapping | None) -> Mapping:
    return MappingProxyType(dict(mapping or {}))


def _check_loss(name: str, allowed: tuple[str, ...], kind: str) -> None:
    if name not in allowed:
        raise ValueError(f"unknown {kind} loss {name!r}; expected one of {list(allowed)}")


@dataclass(frozen=True)
class AffineSettings(_Replace):
    """What :func:`~tutorialreg.optimise.register_affine` optimises and how (defaults: the tutorial's).

    :param loss: image loss, ``"ssd"``, ``"ncc"``, ``"lncc"`` or ``"gmi"``; ``loss_kwargs`` its options.
    :param coordinates: ``"voxel"`` optimises theta on raw voxel indices (the tutorial); ``"centred"``
        optimises ``(linear, shift)`` of :func:`tutorialreg.warp.affine_from_centred`, which puts all 12
        gradients on one scale.
    :param mask_outside: average the image loss only over fixed voxels that land inside the moving image.
    :param schedule: the :class:`Schedule` (the tutorial: one level, learning rate 0.01, 1001 steps).
    """

    loss: str = "ssd"
    loss_kwargs: Mapping = field(default_factory=dict)
    coordinates: str = "voxel"
    mask_outside: bool = False
    schedule: Schedule = Schedule(learning_rate=0.01, steps=1001, plateau_window=25)

    def __post_init__(self) -> None:
        _check_loss(self.loss, IMAGE_LOSSES, "image")
        if self.coordinates not in ("voxel", "centred"):
            raise ValueError(f"coordinates must be 'voxel' or 'centred', got {self.coordinates!r}")
        object.__setattr__(self, "loss_kwargs", _frozen(self.loss_kwargs))


@dataclass(frozen=True)
class NonrigidSettings(_Replace):
    """What :func:`~tutorialreg.optimise.register_ddf` optimises and how (defaults: the tutorial's).

    :param image_loss: ``"lncc"`` (the tutorial), ``"ssd"``, ``"ncc"`` or ``"gmi"``; ``image_loss_kwargs``
        its options (e.g. ``{"kernel_size": 9}``).
    :param deform_loss: ``"bending"`` (the tutorial), ``"gradient-l1"`` or ``"gradient-l2"``.
    :param deform_weight: weight of the deformation loss, one or one per level.
    :param parameterisation: ``"ddf"`` optimises a displacement per voxel (the tutorial); ``"dvf"`` a
        stationary velocity field integrated by scaling and squaring (``svf_steps`` squarings).
    :param field_sigma: if > 0, the optimised field is smoothed by a Gaussian of this sigma (voxels of the
        level) before use.
    :param init_std: standard deviation (voxels) of the random normal initial field (the tutorial: 1e-3).
    :param schedule: the :class:`Schedule` (the tutorial: one level, learning rate 0.1, 3001 steps).
    """

    image_loss: str = "lncc"
    image_loss_kwargs: Mapping = field(default_factory=dict)
    deform_loss: str = "bending"
    deform_weight: Any = 1.0
    parameterisation: str = "ddf"
    field_sigma: float = 0.0
    svf_steps: int = 7
    init_std: float = 1e-3
    schedule: Schedule = Schedule(learning_rate=0.1, steps=3001, plateau_window=50)

    def __post_init__(self) -> None:
        _check_loss(self.image_loss, IMAGE_LOSSES, "image")
        _check_loss(self.deform_loss, DEFORM_LOSSES, "deformation")
        if self.parameterisation not in ("ddf", "dvf"):
            raise ValueError(f"parameterisation must be 'ddf' or 'dvf', got {self.parameterisation!r}")
        if self.field_sigma < 0 or self.svf_steps < 0:
            raise ValueError(f"field_sigma and svf_steps must be >= 0, got {self.field_sigma}, "
                             f"{self.svf_steps}")
        object.__setattr__(self, "deform_weight", _tuple(self.deform_weight))
        weights = per_level(self.deform_weight, len(self.schedule.levels), "deform_weight")
        if any(not w >= 0 for w in weights):
            raise ValueError(f"deform_weight must be >= 0, got {self.deform_weight!r}")
        object.__setattr__(self, "image_loss_kwargs", _frozen(self.image_loss_kwargs))

    def weights(self) -> list[float]:
        """The deformation weight of each level."""
        return per_level(self.deform_weight, len(self.schedule.levels), "deform_weight")


#: The tutorial's affine settings (section 4.1): SSD, voxel-index theta, Adam 0.01, 1001 steps.
AFFINE_TUTORIAL = AffineSettings()

#: Chapter 4's settings beyond the tutorial: centred coordinates, the loss only where the moving image is
#: defined, a two-level pyramid (every 4th voxel of images blurred by sigma 2, then every 2nd voxel, sigma
#: 0.7), a cosine-decaying learning rate and a stop once a level's loss improves by less than 1 % of its
#: range over 25 steps.
AFFINE_RECOMMENDED = AffineSettings(
    coordinates="centred", mask_outside=True,
    schedule=Schedule(levels=(4, 2), smoothing=(2.0, 0.7), learning_rate=(0.02, 0.01), steps=(150, 100),
                      decay="cosine", plateau_tol=0.01))

#: The tutorial's nonrigid settings (section 4.2): a DDF, LNCC + bending (weight 1), Adam 0.1, 3001 steps.
NONRIGID_TUTORIAL = NonrigidSettings()

#: Chapter 5's settings beyond the tutorial: a velocity field integrated by scaling and squaring (DVF),
#: smoothed by a Gaussian (sigma 1 voxel of the level), a two-level pyramid that keeps the 32 slices of the
#: prostate MR along axis 0 at the finer level (factors 2, 4, 4 then 1, 2, 2), a cosine-decaying learning
#: rate. Loss, weight and learning rate as the tutorial.
NONRIGID_RECOMMENDED = NonrigidSettings(
    parameterisation="dvf", field_sigma=1.0, deform_weight=1.0,
    schedule=Schedule(levels=((2, 4, 4), (1, 2, 2)), learning_rate=0.1, steps=(150, 150), decay="cosine",
                      plateau_window=50))
