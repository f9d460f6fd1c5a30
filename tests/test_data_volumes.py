"""tutorialreg.data volumes: h5 loaders, reading, normalising, resampling and moving placement."""

from __future__ import annotations

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tutorialreg import data


def _nifti(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([*spacing, 1.0])), path)
    return path


# ---------------------------------------------------------------- h5 loaders
def test_load_hnct(data_env):
    d = data.load_hnct()
    assert d["image"].shape == (128, 128, 37) and d["image"].dtype == np.float32
    assert d["labels"].shape == (128, 128, 37, 2) and d["labels"].dtype == np.float32
    assert len(d["label_names"]) == 2
    assert d["image"].min() == -1024 and d["image"].max() == 2022  # raw HU kept
    assert set(np.unique(d["labels"])) == {0.0, 1.0}
    n = data.normalise(d["image"])
    assert n.dtype == np.float32 and n.min() == 0 and n.max() == 1


def test_load_promise12(data_env):
    d = data.load_promise12()
    for key in ("image0", "image1", "label0", "label1"):
        assert d[key].shape == (32, 128, 128) and d[key].dtype == np.float32
    assert d["image0"].max() > 1 and set(np.unique(d["label0"])) == {0.0, 1.0}


# ---------------------------------------------------------------- normalise
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_normalise_refuses_non_finite_naming_the_source(bad):
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    x[1, 2, 3] = bad
    with pytest.raises(data.NonFiniteError, match=r"image \(ct\.nii\.gz\) holds .* index \(1, 2, 3\)"):
        data.normalise(x, where="ct.nii.gz")


def test_normalise_in_float64_keeps_values_beyond_float32():
    x = np.array([[[0.0, 1e39], [2e39, 4e39]]])  # float32 overflows to inf here
    np.testing.assert_array_equal(data.normalise(x), np.array([[[0, 0.25], [0.5, 1]]], np.float32))
    wide = data.normalise(np.array([-1e308, 0.0, 1e308]))  # even the range overflows float64
    np.testing.assert_allclose(wide, [0, 0.5, 1])
    assert wide.dtype == np.float32
    assert data.normalise(np.full((2, 2), 7, np.int16)).tolist() == [[0, 0], [0, 0]]
    with pytest.raises(ValueError, match="empty"):
        data.normalise(np.zeros((0, 3)))


# ---------------------------------------------------------------- read_volume
def test_read_volume_non_finite_names_the_file(tmp_path):
    x = np.zeros((4, 4, 4), np.float32)
    x[0, 1, 2] = np.nan
    path = _nifti(tmp_path / "bad.nii.gz", x)
    with pytest.raises(data.NonFiniteError, match=rf"{path}, pair 'p1'.* 1 NaN"):
        data.read_volume(path, where="pair 'p1'")


def test_read_volume_float64_beyond_float32(tmp_path):
    path = _nifti(tmp_path / "big.nii", np.full((3, 3, 3), 1e39))
    with pytest.raises(ValueError, match=r"big\.nii.*overflow float32.*dtype=np.float64"):
        data.read_volume(path)
    assert data.read_volume(path, np.float64).max() == 1e39


@pytest.mark.parametrize("damage", ["truncated", "not_gzip"])
def test_damaged_nii_gz_is_named(tmp_path, damage):
    good = _nifti(tmp_path / "good.nii.gz", np.random.default_rng(0).random((20, 20, 20)).astype(np.float32))
    raw = good.read_bytes()
    bad = tmp_path / "obs007.nii.gz"
    if damage == "truncated":
        bad.write_bytes(raw[: len(raw) // 2])
    else:
        bad.write_bytes(b"not gzip" * 100)
    with pytest.raises(data.CorruptFileError, match=rf"{bad} is truncated or corrupt") as err:
        data.read_volume(bad)
    assert isinstance(err.value, ValueError)


def test_damaged_h5_is_named(tmp_path):
    import h5py

    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["x"] = np.ones((8, 8, 8))
    raw = (tmp_path / "v.h5").read_bytes()
    (tmp_path / "v.h5").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(data.CorruptFileError, match="v.h5 is truncated or corrupt"):
        data.read_volume(tmp_path / "v.h5")
    with pytest.raises(FileNotFoundError):
        data.read_volume(tmp_path / "missing.nii.gz")


# ---------------------------------------------------------------- resize
def test_resize_shapes_and_dtypes():
    vol = np.random.default_rng(1).random((6, 5, 4)).astype(np.float32)
    assert data.resize(vol, None) is vol and data.resize(vol, (6, 5, 4)) is vol
    out = data.resize(vol, (3, 10, 4))
    assert out.shape == (3, 10, 4) and out.dtype == np.float32
    assert data.resize(vol.astype(np.float64), (3, 3, 3)).dtype == np.float64
    assert data.resize(np.ones((4, 4, 4), np.uint8), (2, 2, 2)).dtype == np.float32
    labels = np.stack([vol, 1 - vol], -1)
    np.testing.assert_allclose(data.resize(labels, (3, 10, 4))[..., 1], 1 - out, atol=1e-6)
    with pytest.raises(ValueError, match="shape must be three integers"):
        data.resize(vol, (3, 3))


# ---------------------------------------------------------------- place_moving
def _centre_by_loops(moving: np.ndarray, fixed_shape) -> np.ndarray:
    """Independent reference: moving voxel ``i`` goes to index ``i + ceil((n_fixed - n_moving) / 2)``."""
    out = np.zeros(tuple(fixed_shape) + moving.shape[3:], moving.dtype)
    shift = [math.ceil((f - m) / 2) for f, m in zip(fixed_shape, moving.shape[:3], strict=True)]
    for i in np.ndindex(*moving.shape[:3]):
        j = tuple(a + s for a, s in zip(i, shift, strict=True))
        if all(0 <= a < n for a, n in zip(j, fixed_shape, strict=True)):
            out[j] = moving[i]
    return out


def test_place_moving_centre_hand_worked():
    vol = np.arange(5 * 8 * 3, dtype=np.float32).reshape(5, 8, 3) + 1
    out = data.place_moving(vol, (1.5,) * 3, (8, 4, 3), (1.5,) * 3)
    # axis 0: 5 -> 8 pads 3 voxels, 2 before and 1 after; axis 1: 8 -> 4 crops 2 each side
    np.testing.assert_array_equal(out, np.pad(vol, ((2, 1), (0, 0), (0, 0)))[:, 2:6, :])
    out = data.place_moving(vol, (1,) * 3, (2, 8, 4), (1,) * 3)
    # axis 0: 5 -> 2 crops 3, 1 before and 2 after; axis 2: 3 -> 4 pads 1 before
    np.testing.assert_array_equal(out, np.pad(vol[1:3], ((0, 0), (0, 0), (1, 0))))


@pytest.mark.parametrize(
    ("moving_shape", "fixed_shape"),
    [((69, 69, 64), (47, 63, 44)), ((47, 63, 44), (69, 69, 64)), ((7, 6, 5), (4, 9, 5)),
     ((6, 7, 3), (9, 2, 8)), ((1, 2, 3), (3, 2, 1))],
)
def test_place_moving_centre_matches_index_arithmetic(moving_shape, fixed_shape):
    rng = np.random.default_rng(sum(moving_shape))
    vol = rng.random((*moving_shape, 2)).astype(np.float32)  # labels: channels go along
    out = data.place_moving(vol, (2.0, 2.0, 2.0), fixed_shape, (2.0, 2.0, 2.0), "centre")
    np.testing.assert_array_equal(out, _centre_by_loops(vol, fixed_shape))
    single = data.place_moving(vol[..., 0], (2,) * 3, fixed_shape, (2,) * 3)
    np.testing.assert_array_equal(single, out[..., 0])


def test_place_moving_centre_resamples_to_the_fixed_voxel_size():
    vol = np.random.default_rng(3).random((8, 6, 4))
    blocks = vol.reshape(4, 2, 3, 2, 2, 2).mean(axis=(1, 3, 5))  # 1 mm -> 2 mm: means of 2x2x2 voxels
    out = data.place_moving(vol, (1.0, 1.0, 1.0), (4, 3, 2), (2.0, 2.0, 2.0))
    np.testing.assert_allclose(out, blocks, atol=1e-12)
    out = data.place_moving(vol, (1.0, 1.0, 1.0), (6, 3, 1), (2.0, 2.0, 2.0))  # then pad axis 0, crop axis 2
    np.testing.assert_allclose(out, np.pad(blocks, ((1, 1), (0, 0), (0, 0)))[:, :, :1], atol=1e-12)
    a, b = 10.0, 30.0
    up = data.place_moving(np.array([a, b]).reshape(2, 1, 1), (2.0, 1.0, 1.0), (4, 1, 1), (1.0, 1.0, 1.0))
    np.testing.assert_allclose(up.ravel(), [a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b])


def test_place_moving_resize_mode_and_bad_input():
    vol = np.random.default_rng(4).random((6, 5, 4)).astype(np.float32)
    np.testing.assert_array_equal(data.place_moving(vol, (1,) * 3, (3, 3, 3), (5,) * 3, "resize"),
                                  data.resize(vol, (3, 3, 3)))
    with pytest.raises(ValueError, match="moving placement must be one of"):
        data.place_moving(vol, (1,) * 3, (3, 3, 3), (1,) * 3, "middle")
    with pytest.raises(ValueError, match="fixed_spacing must be three voxel sizes > 0"):
        data.place_moving(vol, (1,) * 3, (3, 3, 3), (1, 0, 1))
    with pytest.raises(ValueError, match="moving volume must have shape"):
        data.place_moving(vol[0], (1,) * 3, (3, 3, 3), (1,) * 3)


def test_volume_grid(tmp_path, mirror_dir):
    shape, spacing = data.volume_grid(mirror_dir / "paired_mrus_prostate/moving_images/obs000.nii.gz")
    assert shape == (69, 69, 64) and spacing == (1.5, 1.5, 1.5)
    import h5py

    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["x"] = np.ones((3, 4, 5))
    assert data.volume_grid(tmp_path / "v.h5") == ((3, 4, 5), (1.0, 1.0, 1.0))
