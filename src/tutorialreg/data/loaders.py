"""Loaders of the single-file h5 datasets (head-and-neck CT, PROMISE12 prostate MR)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tutorialreg.data.download import fetch

__all__ = ["load_hnct", "load_promise12"]


def _read_h5(path: str | Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """``{key: array}`` of an h5 file; KeyError naming the file and the keys found when one is missing."""
    import h5py

    with h5py.File(path, "r") as f:
        if missing := [k for k in keys if k not in f]:
            raise KeyError(f"{path}: datasets {missing} not found; the file has {list(f)}")
        return {k: f[k][()] for k in keys}


def load_hnct() -> dict:
    """Head-and-neck CT.

    :return: dict with ``image`` ``[128,128,37]`` float32 HU, ``labels`` ``[128,128,37,2]`` float32 {0,1}
        and ``label_names`` (one per label channel).
    """
    raw = _read_h5(fetch("hnct")[0], ("image", "label"))
    return {
        "image": raw["image"].astype(np.float32),
        "labels": raw["label"].astype(np.float32),
        "label_names": ("brainstem", "spinal cord"),
    }


def load_promise12() -> dict:
    """Prostate MR of two patients.

    :return: dict with ``image0``, ``image1`` ``[32,128,128]`` float32 raw intensities and ``label0``,
        ``label1`` ``[32,128,128]`` float32 {0,1} gland masks.
    """
    raw = _read_h5(fetch("promise12")[0], ("image0", "image1", "label0", "label1"))
    return {k: v.astype(np.float32) for k, v in raw.items()}
