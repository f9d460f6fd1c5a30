"""Comparison tables and the classical baselines of the learned chapters, on small real MR-US pairs."""

from __future__ import annotations

import numpy as np
import pytest

from tutorialreg import baselines, data, evaluate, metrics, warp

SHAPE = (24, 32, 22)


@pytest.fixture(scope="module")
def pairs(mirror_dir, tmp_path_factory):
    import os

    cache = tmp_path_factory.mktemp("cache")
    old = {k: os.environ.get(k) for k in ("TUTORIALREG_MIRROR", "TUTORIALREG_DATA_DIR")}
    os.environ.update(TUTORIALREG_MIRROR=str(mirror_dir), TUTORIALREG_DATA_DIR=str(cache))
    try:
        ds = data.PairedDataset("paired_mrus_prostate", image_shape=SHAPE, moving_placement="centre",
                                names=["obs000", "obs005"])
        arrays = data.PairArrays(ds, 6)
        return [{**arrays.item(i), "spacing": ds.spacing(n), "name": n} for i, n in enumerate(arrays.names)]
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def test_pair_scores_match_the_metrics_and_pool_landmarks(pairs):
    p = pairs[0]
    row = evaluate.pair_scores(p["moving_label"], p["fixed_label"], None, p["spacing"], 1.5, p["label_mask"])
    assert row["dice"] == pytest.approx(metrics.dice(p["moving_label"][..., 0], p["fixed_label"][..., 0]))
    distances = metrics.centroid_distance(p["moving_label"], p["fixed_label"], p["spacing"])[1:]
    present = p["label_mask"][1:] > 0
    assert row["landmark"] == pytest.approx(np.nanmean(distances[present]))
    assert row["landmarks"] == present.sum() and row["folding"] == 0.0 and row["seconds"] == 1.5
    table = baselines.compare(pairs, {"none": lambda p: None})
    marks = [d for r in table.rows["none"] for d in r["_landmark_distances"]]
    assert table.summary("none")["landmark"] == pytest.approx(np.nanmean(marks))  # every landmark, pooled
    assert table.summary("none")["pairs"] == 2 and "none" in table.table()


def test_label_driven_registration_is_an_upper_bound_and_label_free_runs(pairs):
    settings = baselines.LABEL_DRIVEN.replace(levels=(2,), steps=80)  # one level: one compilation
    methods = {
        "none": lambda p: None,
        "labels": lambda p: baselines.label_driven(p["moving_label"], p["fixed_label"], settings),
        "images": lambda p: baselines.label_free(
            p["moving_image"], p["fixed_image"], baselines.LABEL_FREE_AFFINE.replace(
                levels=(2,), steps=20, smoothing=1.0, learning_rate=0.02),
            baselines.LABEL_FREE_NONRIGID.replace(levels=(2,), steps=20)),
    }
    table = baselines.compare(pairs, methods, notes={"labels": "needs labels at test time"})
    none, labels = table.summary("none"), table.summary("labels")
    assert labels["dice"] > none["dice"] + 0.2 and labels["landmark"] < none["landmark"]
    assert labels["folding"] < 0.1 and labels["seconds"] > 0
    assert np.isfinite(table.summary("images")["dice"])
    assert "* labels: needs labels at test time" in table.table()


def test_label_map_weights_landmarks():
    label = np.zeros((9, 9, 9, 3), np.float32)
    label[4, 4, 4, 0] = label[2, 2, 2, 1] = 1.0
    m = baselines.label_map(label, sigma=0.0, landmark_weight=2.0)
    assert m[4, 4, 4] == 1.0 and m[2, 2, 2] == 2.0 and m.sum() == 3.0


def test_compare_warps_labels_with_the_method_field(pairs):
    p = pairs[0]
    shift = np.zeros((1, *SHAPE, 3), np.float32)
    shift[..., 0] = 1.0
    table = baselines.compare([p], {"shift": lambda q: baselines.Registered(shift, 0.1)})
    expected = warp.warp(p["moving_label"][None], shift).numpy()[0]
    dice = metrics.dice(expected[..., 0], p["fixed_label"][..., 0])
    assert table.rows["shift"][0]["dice"] == pytest.approx(dice)


def test_shared_labels_finds_pairs_that_reuse_an_outline():
    rng = np.random.default_rng(0)
    masks = [(rng.random((6, 5, 4, 2)) > 0.5).astype(np.float32) for _ in range(4)]
    reference = [{"moving_label": masks[0]}, {"moving_label": masks[1]}]
    other_channel = masks[2].copy()
    other_channel[..., 0] = masks[0][..., 0]  # channel 0 as the first reference pair's, channel 1 not
    pairs = [{"moving_label": masks[1] * 0.9}, {"moving_label": masks[3]}, {"moving_label": other_channel}]
    assert evaluate.shared_labels(pairs, reference).tolist() == [True, False, True]
    assert evaluate.shared_labels(pairs, reference, channel=1).tolist() == [True, False, False]
    assert not evaluate.shared_labels(pairs, reference, key="moving_label", channel=0)[1]
