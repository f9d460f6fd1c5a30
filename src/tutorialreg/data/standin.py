"""Stand-in lung CT: CT-like volumes synthesised from the real lung masks (offline use only)."""

from __future__ import annotations

import numpy as np

__all__ = ["standin_ct"]


def standin_ct(lung_mask: np.ndarray, seed: int = 0) -> np.ndarray:
    """A CT-like volume in HU built from a lung mask.

    Lung parenchyma near -850 HU with smooth seeded texture (and a few vessels), soft tissue ~40 HU in a
    body grown ~24 voxels from the lungs, air -1000 HU outside, plus acquisition noise.

    :param lung_mask: ``[d1,d2,d3]``, lungs > 0.5.
    :param seed: seed of a local generator (same seed, same volume).
    :return: float32 ``[d1,d2,d3]`` in HU.
    """
    from scipy import ndimage

    mask = np.asarray(lung_mask) > 0.5
    if mask.ndim != 3:
        raise ValueError(f"lung_mask must have shape [d1,d2,d3], got {mask.shape}")
    rng = np.random.default_rng(seed)
    f = 4  # body and texture are built on a 4x coarser grid, then interpolated up
    coarse = mask[::f, ::f, ::f]
    up = [s / c for s, c in zip(mask.shape, coarse.shape, strict=True)]
    distance = ndimage.distance_transform_edt(~coarse)  # to the lungs, in coarse voxels
    body = (ndimage.zoom(distance.astype(np.float32), up, order=1) <= 6) | mask  # dilated by ~24 voxels
    texture = ndimage.gaussian_filter(rng.standard_normal(coarse.shape).astype(np.float32), 1.0)
    texture = ndimage.zoom(texture / texture.std(), up, order=1)
    lung = -850 + 50 * texture + 150 * np.clip(texture - 1.5, 0, None)  # texture and a few vessels
    image = np.where(mask, lung, np.where(body, 40 + 15 * texture, np.float32(-1000)))
    return image + 8 * rng.standard_normal(mask.shape, dtype=np.float32)  # acquisition noise
