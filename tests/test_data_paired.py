"""tutorialreg.data paired volumes: folders, pairing errors, moving placement, spacing, stand-in lung CT."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tutorialreg import data

DEAD_URL = "http://127.0.0.1:9/unreachable/demo.h5"  # connection refused at once: no hang
MRUS = "paired_mrus_prostate"


def _write_pairs(root: Path, pairs: dict[str, dict], spacing=(1.0, 1.0, 1.0)) -> None:
    """pairs: folder -> {file name: shape or array}; writes small NIfTI volumes."""
    for folder, files in pairs.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name, value in files.items():
            array = value if isinstance(value, np.ndarray) else np.ones(value, np.float32)
            nib.save(nib.Nifti1Image(array, np.diag([*spacing, 1.0])), root / folder / name)


def _pair_folder(root: Path, fixed: np.ndarray, moving: np.ndarray | None = None) -> Path:
    """One unlabelled pair ``p1`` under ``root``."""
    moving = fixed if moving is None else moving
    _write_pairs(root, {"fixed_images": {"p1.nii.gz": fixed}, "moving_images": {"p1.nii.gz": moving}})
    return root


def _minmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return ((x - x.min()) / (x.max() - x.min())).astype(np.float32)


# ---------------------------------------------------------------- the MR-US dataset
def test_mrus_pairs_native_shapes(data_env):
    ds = data.PairedDataset(MRUS, None)
    assert len(ds) == 88 and not ds.is_standin
    item = ds[0]
    assert item["name"] == "obs000"
    assert item["fixed_image"].shape == (47, 63, 44) and item["moving_image"].shape == (69, 69, 64)
    assert item["fixed_label"].shape == (47, 63, 44, 6) and item["moving_label"].shape == (69, 69, 64, 6)
    for key in ("fixed_image", "moving_image", "fixed_label", "moving_label"):
        assert item[key].dtype == np.float32 and item[key].min() >= 0 and item[key].max() <= 1
    assert ds[0] is item and ds[-88] is item  # cached in the instance
    with pytest.raises(IndexError, match="pair index 88 out of range for 88 pairs"):
        ds[88]


def test_split_pairs_seeded(data_env):
    names = data.PairedDataset(MRUS).names
    a, b = data.split_pairs(names, seed=1), data.split_pairs(names[::-1], seed=1)
    assert a == b and [len(a[k]) for k in ("train", "valid", "test")] == [62, 9, 17]
    assert sorted(a["train"] + a["valid"] + a["test"]) == sorted(names)
    assert data.split_pairs(names, seed=2) != a
    with pytest.raises(ValueError, match="fractions"):
        data.split_pairs(names, fractions=(0.5, 0.5, 0.5))


def test_mrus_centre_placement_crops_the_mr_onto_the_us_grid(data_env, mirror_dir):
    """MR 69x69x64 and US 47x63x44 share 1.5 mm voxels: centre placement is a crop by (11, 3, 10)."""
    ds = data.PairedDataset(MRUS, names=["obs000"], moving_placement="centre")
    item = ds[0]
    folder = mirror_dir / MRUS
    mr = np.asarray(nib.load(folder / "moving_images/obs000.nii.gz").dataobj)
    label = np.asarray(nib.load(folder / "moving_labels/obs000.nii.gz").dataobj)
    crop = (slice(11, 58), slice(3, 66), slice(10, 54))  # (69-47)/2, (69-63)/2, (64-44)/2
    np.testing.assert_allclose(item["moving_image"], _minmax(mr[crop]), atol=1e-6)
    np.testing.assert_array_equal(item["moving_label"], label[crop].astype(np.float32))
    assert item["fixed_image"].shape == item["moving_image"].shape == (47, 63, 44)
    small = data.PairedDataset(MRUS, names=["obs000"], image_shape=(16, 16, 16), moving_placement="centre")
    np.testing.assert_allclose(small[0]["moving_image"], _minmax(data.resize(mr[crop].astype(np.float64),
                                                                             (16, 16, 16))), atol=1e-6)
    assert data.PairedDataset(MRUS, names=["obs000"], image_shape=(16, 16, 16))[0]["moving_image"].shape == (
        16, 16, 16)


def test_resize_placement_is_unchanged(data_env, mirror_dir):
    """Default placement: each volume resampled in float32 to image_shape, then min-max scaled (as before)."""
    from scipy.ndimage import zoom

    item = data.PairedDataset(MRUS, names=["obs003"], image_shape=(32, 30, 28))[0]
    for side, kind in (("moving", "moving_images"), ("fixed", "fixed_images")):
        raw = np.asarray(nib.load(mirror_dir / MRUS / kind / "obs003.nii.gz").dataobj, np.float32)
        x = zoom(raw, [t / s for t, s in zip((32, 30, 28), raw.shape, strict=True)], order=1)
        np.testing.assert_array_equal(item[f"{side}_image"], (x - x.min()) / (x.max() - x.min()))


def test_centre_placement_resamples_by_header_voxel_sizes(tmp_path):
    """Moving at 1 mm (8, 6, 4), fixed at 2 mm (4, 5, 2): 2x2x2 block means, padded on axis 1."""
    moving = np.random.default_rng(5).random((8, 6, 4)).astype(np.float32)
    _write_pairs(tmp_path, {"moving_images": {"p.nii": moving}}, spacing=(1.0, 1.0, 1.0))
    _write_pairs(tmp_path, {"fixed_images": {"p.nii": np.ones((4, 5, 2), np.float32)}}, spacing=(2.0,) * 3)
    item = data.PairedDataset(tmp_path, labeled=False, moving_placement="centre")[0]
    blocks = moving.astype(np.float64).reshape(4, 2, 3, 2, 2, 2).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(item["moving_image"], _minmax(np.pad(blocks, ((0, 0), (1, 1), (0, 0)))),
                               atol=1e-6)


def test_moving_placement_arguments(tmp_path):
    root = _pair_folder(tmp_path, np.ones((4, 4, 4), np.float32))
    with pytest.raises(ValueError, match="moving_placement must be one of"):
        data.PairedDataset(root, labeled=False, moving_placement="center")
    with pytest.raises(ValueError, match="leave moving_shape None"):
        data.PairedDataset(root, labeled=False, image_shape=(4, 4, 4), moving_shape=(2, 2, 2),
                           moving_placement="centre")


def test_spacing_of_the_working_grid(data_env, tmp_path):
    native = data.PairedDataset(MRUS, names=["obs000"])
    assert native.spacing("obs000") == (1.5, 1.5, 1.5)
    small = data.PairedDataset(MRUS, names=["obs000"], image_shape=(16, 21, 22))
    assert small.spacing("obs000") == pytest.approx((1.5 * 47 / 16, 1.5 * 63 / 21, 1.5 * 44 / 22), abs=1e-12)
    with pytest.raises(data.PairingError, match="no pair 'obs999'"):
        small.spacing("obs999")
    import h5py

    for folder in ("moving_images", "fixed_images"):
        (tmp_path / folder).mkdir()
        with h5py.File(tmp_path / folder / "p1.h5", "w") as f:
            f["x"] = np.zeros((4, 4, 4))
    assert data.PairedDataset(tmp_path, labeled=False, image_shape=(2, 2, 2)).spacing("p1") == (1.0, 1.0, 1.0)


# ---------------------------------------------------------------- user folders and bad input
def test_user_folder_pairing_errors(tmp_path):
    ok = {"a.nii.gz": (6, 5, 4)}
    _write_pairs(
        tmp_path / "good" / "train",
        {f"{s}_{k}": ok for s in ("moving", "fixed") for k in ("images", "labels")},
    )
    ds = data.PairedDataset(tmp_path / "good", "train", image_shape=(3, 3, 3))
    assert ds[0]["fixed_label"].shape == (3, 3, 3, 1)
    _write_pairs(tmp_path / "good" / "train", {"moving_images": {"b.nii.gz": (6, 5, 4)}})
    with pytest.raises(data.PairingError, match=r"fixed_images/ lacks \['b'\]"):
        data.PairedDataset(tmp_path / "good", "train")
    _write_pairs(
        tmp_path / "shape",
        {
            "moving_images": ok,
            "fixed_images": ok,
            "moving_labels": ok,
            "fixed_labels": {"a.nii.gz": (6, 5, 3)},
        },
    )
    with pytest.raises(data.PairingError, match="label shape"):
        data.PairedDataset(tmp_path / "shape")[0]
    with pytest.raises(FileNotFoundError, match="test"):
        data.PairedDataset(tmp_path / "good", "test")


def test_nii_beside_nii_gz_is_a_pairing_error(tmp_path):
    _pair_folder(tmp_path, np.ones((4, 4, 4), np.float32))
    _write_pairs(tmp_path, {"fixed_images": {"p1.nii": (4, 4, 4)}})
    with pytest.raises(data.PairingError, match=r"fixed_images: both p1\.nii and p1\.nii\.gz are pair 'p1'"):
        data.PairedDataset(tmp_path, labeled=False)


def test_h5_pairs(tmp_path):
    import h5py

    for folder in ("moving_images", "fixed_images"):
        (tmp_path / folder).mkdir()
        with h5py.File(tmp_path / folder / "p1.h5", "w") as f:
            f["x"] = np.arange(64, dtype=np.int16).reshape(4, 4, 4)
    item = data.PairedDataset(tmp_path, labeled=False)[0]
    assert set(item) == {"moving_image", "fixed_image", "name"} and item["fixed_image"].max() == 1


def test_one_nan_voxel_names_file_and_pair(tmp_path):
    fixed = np.random.default_rng(0).random((5, 5, 5)).astype(np.float32)
    fixed[2, 3, 4] = np.nan
    root = _pair_folder(tmp_path, fixed, np.ones((5, 5, 5), np.float32))
    with pytest.raises(data.NonFiniteError, match=r"fixed_images/p1\.nii\.gz, pair 'p1', fixed\).*1 NaN"):
        data.PairedDataset(root, labeled=False)[0]


def test_float64_image_beyond_float32_is_normalised(tmp_path):
    fixed = np.arange(27, dtype=np.float64).reshape(3, 3, 3) * 1e38  # up to 2.6e39: inf in float32
    item = data.PairedDataset(_pair_folder(tmp_path, fixed), labeled=False)[0]
    np.testing.assert_allclose(item["fixed_image"], np.arange(27).reshape(3, 3, 3) / 26, atol=1e-7)


def test_truncated_pair_file_is_named(tmp_path):
    root = _pair_folder(tmp_path, np.random.default_rng(1).random((16, 16, 16)).astype(np.float32))
    path = root / "moving_images" / "p1.nii.gz"
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(data.CorruptFileError, match=rf"{path} is truncated or corrupt"):
        data.PairedDataset(root, labeled=False)[0]


# ---------------------------------------------------------------- stand-in lung CT
@pytest.fixture
def lung_offline(data_env, monkeypatch):
    """The lung CT images' upstream URLs made unreachable (CI may have network)."""
    manifest = data.load_manifest()
    for e in manifest["paired_ct_lung"]["files"]:
        e["url"] = DEAD_URL
    monkeypatch.setattr("tutorialreg.data.manifest.load_manifest", lambda path=None: manifest)


def test_lung_images_missing_raise_without_standin(lung_offline):
    with pytest.raises(data.DataUnavailable) as err:
        data.fetch("paired_ct_lung")
    missing = [p for p, _, _ in err.value.missing]
    assert len(missing) == 38 and all("_images/" in p for p in missing)
    assert "TUTORIALREG_ALLOW_STANDIN" in str(err.value) and len(str(err.value)) < 5000


def test_lung_standin(lung_offline, monkeypatch, mirror_dir):
    monkeypatch.setenv("TUTORIALREG_ALLOW_STANDIN", "1")
    with pytest.warns(UserWarning, match="STAND-IN"):
        ds = data.PairedDataset("paired_ct_lung", "valid", image_shape=(24, 24, 26))
    assert ds.is_standin and len(ds) == 1
    item = ds[0]
    assert item["fixed_image"].shape == (24, 24, 26) and item["moving_label"].shape == (24, 24, 26, 1)
    assert 0 <= item["fixed_image"].min() and item["fixed_image"].max() == 1
    assert ds.spacing("case_008") == pytest.approx((1.75 * 192 / 24, 1.25 * 192 / 24, 1.75 * 208 / 26))
    label = data.read_volume(mirror_dir / "paired_ct_lung/valid/fixed_labels/case_008.nii.gz")
    ct = data.standin_ct(label, seed=0)
    assert ct.shape == label.shape == (192, 192, 208) and ct.dtype == np.float32
    lung = label > 0.5
    assert abs(np.median(ct[lung]) + 850) < 30  # parenchyma
    assert abs(np.median(ct[ct > -500]) - 40) < 10 and (ct < -950).mean() > 0.3  # soft tissue, air outside
    np.testing.assert_array_equal(ct, data.standin_ct(label, seed=0))
