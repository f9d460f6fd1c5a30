"""tutorialreg.data.PairArrays (the one batcher) and preload_bytes."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from tutorialreg import data

MRUS = "paired_mrus_prostate"
SHAPE = (12, 10, 8)


@pytest.fixture
def mrus_small(data_env):
    """Five MR-US pairs at SHAPE whose label channel counts differ (3 to 6)."""
    names = ["obs000", "obs001", "obs002", "obs003", "obs004"]
    return data.PairedDataset(MRUS, image_shape=SHAPE, names=names)


def test_items_pad_labels_and_mask(mrus_small):
    arrays = data.PairArrays(mrus_small)
    counts = [mrus_small[i]["fixed_label"].shape[-1] for i in range(len(mrus_small))]
    assert len(set(counts)) > 1 and arrays.channels == max(counts)
    assert arrays.names == mrus_small.names and arrays.labeled and not arrays.is_standin and len(arrays) == 5
    for i, n in enumerate(counts):
        it, raw = arrays.item(i), mrus_small[i]
        assert set(it) == {"moving_image", "fixed_image", "moving_label", "fixed_label", "label_mask"}
        assert it["moving_image"].shape == SHAPE and it["moving_image"].dtype == np.float32
        assert it["fixed_label"].shape == (*SHAPE, arrays.channels) and it["fixed_label"].dtype == np.float32
        np.testing.assert_array_equal(it["fixed_label"][..., :n], raw["fixed_label"])
        assert not it["moving_label"][..., n:].any()
        assert it["label_mask"].tolist() == [1.0] * n + [0.0] * (arrays.channels - n)
    cut = data.PairArrays(mrus_small, label_channels=2)
    assert cut.item(0)["moving_label"].shape[-1] == 2 and cut.item(0)["label_mask"].tolist() == [1, 1]
    with pytest.raises(ValueError, match="label_channels must be >= 1"):
        data.PairArrays(mrus_small, label_channels=0)


def test_batches_seeded_by_seed_and_epoch(mrus_small):
    arrays = data.PairArrays(mrus_small)
    first = list(arrays.batches(2, seed=3, epoch=0))
    assert [b["moving_image"].shape for b in first] == [(2, *SHAPE)] * 2  # 5 pairs: the remainder dropped
    again = list(arrays.batches(2, seed=3, epoch=0))
    assert all(np.array_equal(a[k], b[k]) for a, b in zip(first, again, strict=True) for k in a)
    orders = {tuple(np.random.default_rng([3, e]).permutation(5)) for e in range(4)}
    assert len(orders) > 1  # epochs reshuffle
    plain = list(arrays.batches(2, seed=3, epoch=0, shuffle=False, drop_remainder=False))
    assert [len(b["fixed_image"]) for b in plain] == [2, 2, 1]
    np.testing.assert_array_equal(plain[2]["fixed_label"][0], arrays.item(4)["fixed_label"])
    order = np.random.default_rng([3, 1]).permutation(5)
    batch = next(arrays.batches(3, seed=3, epoch=1))
    np.testing.assert_array_equal(batch["fixed_image"], np.stack([arrays.item(int(i))["fixed_image"]
                                                                  for i in order[:3]]))


def test_augmentation_thetas_drawn_as_before(mrus_small):
    """Thetas as train._Pairs drew them: permutation, then per batch one seed for moving, one for fixed."""
    pytest.importorskip("tensorflow")
    from tutorialreg import warp

    arrays = data.PairArrays(mrus_small)
    batches = list(arrays.batches(2, seed=7, epoch=2, augment_scale=0.2))
    rng = np.random.default_rng([7, 2])
    rng.permutation(5)
    centre = [(s - 1) / 2 for s in SHAPE]
    for batch in batches:
        for side in ("moving", "fixed"):
            expected = np.asarray(warp.random_affine(2, 0.2, int(rng.integers(2**31)), centre))
            assert batch[f"{side}_theta"].shape == (2, 4, 3) and batch[f"{side}_theta"].dtype == np.float32
            np.testing.assert_array_equal(batch[f"{side}_theta"], expected)
    assert not np.array_equal(batches[0]["moving_theta"], batches[0]["fixed_theta"])
    assert "moving_theta" not in next(arrays.batches(2, seed=7, epoch=2))


def test_pairs_on_different_grids_are_refused(tmp_path):
    for name, shape in (("a", (4, 4, 4)), ("b", (5, 4, 4))):
        for folder in ("moving_images", "fixed_images"):
            (tmp_path / folder).mkdir(exist_ok=True)
            image = nib.Nifti1Image(np.ones(shape, np.float32), np.eye(4))
            nib.save(image, tmp_path / folder / f"{name}.nii")
    ds = data.PairedDataset(tmp_path, labeled=False)
    with pytest.raises(ValueError, match=r"pair 'b': \['moving_image', 'fixed_image'\] shapes .*image_shape"):
        data.PairArrays(ds)
    arrays = data.PairArrays(data.PairedDataset(tmp_path, labeled=False, image_shape=(4, 4, 4)))
    assert arrays.channels == 0 and set(arrays.item(1)) == {"moving_image", "fixed_image"}
    with pytest.raises(ValueError, match="no pairs in"):
        data.PairArrays(data.PairedDataset(tmp_path, labeled=False, names=[]))


def test_preload_bytes_matches_the_arrays(mrus_small):
    arrays = data.PairArrays(mrus_small)
    assert data.preload_bytes(5, SHAPE, arrays.channels) == arrays.nbytes
    assert data.preload_bytes(62, (128, 128, 128), 6) == 4 * 62 * (2 * 128**3 * 7 + 6)
    assert data.preload_bytes(3, (2, 2, 2), 0) == 4 * 3 * 2 * 8
    with pytest.raises(ValueError, match="image_shape must be three integers"):
        data.preload_bytes(3, (2, 2), 1)
    with pytest.raises(ValueError, match="n_pairs must be >= 0"):
        data.preload_bytes(-1, (2, 2, 2), 1)


def test_flip_mirrors_whole_pairs_and_rigid_motion_moves_the_moving_side_only(mrus_small):
    pytest.importorskip("tensorflow")
    from tutorialreg import warp

    arrays = data.PairArrays(mrus_small)
    order = np.random.default_rng([5, 0]).permutation(5)
    batch = next(arrays.batches(4, seed=5, epoch=0, augment_flip=[1], augment_rigid=[2, 10]))
    flipped = []
    for j, i in enumerate(order[:4]):
        item = arrays.item(int(i))
        same = all(np.array_equal(batch[k][j], item[k])
                   for k in ("moving_image", "fixed_image", "moving_label", "fixed_label"))
        mirrored = all(np.array_equal(batch[k][j], np.flip(item[k], axis=1))
                       for k in ("moving_image", "fixed_image", "moving_label", "fixed_label"))
        assert same != mirrored, "each pair is mirrored as a whole, or not at all"
        flipped.append(mirrored)
    assert len(set(flipped)) == 2  # with this seed, some pairs are mirrored and some are not
    np.testing.assert_allclose(batch["fixed_theta"], np.tile(np.eye(4, 3), (4, 1, 1)), atol=1e-6)
    for theta in batch["moving_theta"]:
        rot, shift = theta[:3].astype(np.float64), theta[3]
        np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-6)
        assert np.linalg.det(rot) > 0
        centre = np.array([(s - 1) / 2 for s in SHAPE])
        assert np.all(np.abs(centre @ rot + shift - centre) <= 2 + 1e-4)  # the centre moves by the shift
    # random_rigid alone: the identity at zero, and the rotation angles bounded
    np.testing.assert_allclose(warp.random_rigid(3, 0.0, 0.0, seed=1), np.tile(np.eye(4, 3), (3, 1, 1)))
    small = warp.random_rigid(50, 0.0, 3.0, seed=2)[:, :3]
    angles = np.degrees(np.arccos(np.clip((np.trace(small, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    assert angles.max() <= 3 * np.sqrt(3) + 1e-6 and angles.max() > 1
