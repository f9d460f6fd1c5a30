"""What a classical registration returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tutorialreg import warp
from tutorialreg.optimise.engine import Trace
from tutorialreg.optimise.pyramid import as_image

__all__ = ["RegistrationResult"]


def _from_trace(name: str, doc: str) -> property:
    """A read-only property that reads ``name`` of the result's :class:`Trace`."""
    return property(lambda self: getattr(self.trace, name), doc=doc)


@dataclass(frozen=True)
class RegistrationResult:
    """The result of :func:`~tutorialreg.optimise.register_affine` or :func:`~.register_ddf`.

    :ivar kind: ``"affine"``, ``"ddf"`` or ``"dvf"``.
    :ivar ddf: ``[1, d1, d2, d3, 3]`` displacement field on the fixed grid, voxels (for an affine, the DDF of
        ``theta``).
    :ivar warped: ``[1, d1, d2, d3]`` moving image warped onto the fixed grid.
    :ivar trace: the optimisation's :class:`~tutorialreg.optimise.Trace` (every loss term of every step,
        steps and time per level), whose fields are also properties here (``result.history``...).
    :ivar total_time: wall-clock seconds of the whole call, compilation included.
    :ivar settings: the settings that ran (an ``AffineSettings`` or ``NonrigidSettings``).
    :ivar theta: ``[1, 4, 3]`` recovered affine (voxel indices, row-vector convention); None for nonrigid.
    :ivar velocity: ``[1, d1, d2, d3, 3]`` stationary velocity field (``kind == "dvf"`` only), voxels.
    """

    kind: str
    ddf: np.ndarray
    warped: np.ndarray
    trace: Trace
    total_time: float
    settings: Any
    theta: np.ndarray | None = None
    velocity: np.ndarray | None = None

    history = _from_trace("history", "``{term: [steps]}`` loss values of every step.")
    level = _from_trace("level", "``[steps]`` pyramid level index of every step.")
    level_steps = _from_trace("level_steps", "Steps run at each level.")
    time_per_step = _from_trace("time_per_step", "Mean seconds per step, compilation excluded.")
    level_time_per_step = _from_trace("level_time_per_step", "Median seconds per step of each level.")
    compile_time = _from_trace("compile_time", "Seconds spent compiling.")
    stopped_early = _from_trace("stopped_early", "True when a plateau stopped a level before its budget.")

    @property
    def steps(self) -> int:
        """Total number of optimisation steps run."""
        return int(sum(self.trace.level_steps))

    @property
    def transform(self) -> np.ndarray:
        """The optimised transformation: ``theta`` for an affine, otherwise the DDF."""
        return self.theta if self.theta is not None else self.ddf

    def warp(self, image, interpolation: str = "linear") -> np.ndarray:
        """Warp another moving-space volume (e.g. labels ``[1, d1, d2, d3(, c)]``) with the result.

        Uses the affine itself for an affine result, so no accuracy is lost to a sampled DDF.
        """
        image = as_image(image, "image", allow_channels=True)
        if self.theta is not None:
            return warp.warp_affine(image, self.theta, self.ddf.shape[1:4], interpolation).numpy()
        return warp.warp(image, self.ddf, interpolation).numpy()

    def __repr__(self) -> str:
        last = {k: float(v[-1]) for k, v in self.trace.history.items() if len(v)}
        terms = ", ".join(f"{k}={v:.4g}" for k, v in last.items())
        per_level = "/".join(f"{1000 * t:.1f}" for t in self.trace.level_time_per_step)
        return (f"RegistrationResult(kind={self.kind!r}, steps={self.steps} {self.trace.level_steps}, "
                f"{per_level} ms/step, compile {self.trace.compile_time:.1f} s, "
                f"total {self.total_time:.1f} s, "
                f"stopped_early={self.trace.stopped_early}, final: {terms})")
