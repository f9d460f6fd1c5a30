"""Training and prediction on a few real MR-ultrasound pairs with a tiny model (a few seconds each)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from tutorialreg import train as tr

PAIRS = {"train": ["obs000", "obs001", "obs002", "obs003"], "valid": ["obs004"], "test": ["obs005", "obs006"]}
SHAPE = [16, 20, 16]


@pytest.fixture(scope="module")
def pairs_root(tmp_path_factory) -> Path:
    """``{train,valid,test}/{moving,fixed}_{images,labels}/`` links to a few real pairs of the mirror."""
    mirror = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "paired_mrus_prostate"
    if not mirror.is_dir():
        pytest.skip(f"data mirror not found at {mirror}")
    root = tmp_path_factory.mktemp("mrus")
    for split, names in PAIRS.items():
        for kind in ("moving_images", "fixed_images", "moving_labels", "fixed_labels"):
            (root / split / kind).mkdir(parents=True)
            for name in names:
                (root / split / kind / f"{name}.nii.gz").symlink_to(mirror / kind / f"{name}.nii.gz")
    return root


def _config(root: Path, log_dir: Path, **train) -> dict:
    return {
        "dataset": {"name": str(root), "image_shape": SHAPE, "label_channels": 6},
        "train": {
            "method": "ddf",
            "backbone": {"name": "local", "num_channel_initial": 2, "extract_levels": [0, 1, 2],
                         "norm": "none"},
            "loss": {
                "image": {"name": "ssd", "weight": 0.0},
                "label": {"name": "dice", "weight": 1.0, "scales": [0, 1, 2]},
                "regularization": {"name": "bending", "weight": 0.1},
            },
            "optimizer": {"name": "Adam", "learning_rate": 1e-2},
            "batch_size": 2,
            "epochs": 2,
            "save_period": 1,
            **train,
        },
        "log_dir": str(log_dir),
    }


def _run(cfg, **kwargs) -> tr.TrainResult:
    return tr.train(cfg, plot=False, progress=False, **kwargs)


def test_config_defaults_fast_section_and_errors(tmp_path, monkeypatch, pairs_root):
    raw = {"dataset": {"name": "x", "image_shape": [8, 8, 8]}, "fast": {"train": {"epochs": 1}}}
    monkeypatch.delenv("TUTORIALREG_FAST", raising=False)
    cfg = tr.load_config(raw)
    assert cfg["train"]["epochs"] == tr.DEFAULTS["train"]["epochs"]
    assert cfg["train"]["loss"]["label"]["name"] == "dice"
    monkeypatch.setenv("TUTORIALREG_FAST", "1")
    assert tr.load_config(raw)["train"]["epochs"] == 1
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert tr.load_config(path, {"train": {"epochs": 5}})["train"]["epochs"] == 5
    with pytest.raises(ValueError, match="unknown config key 'train.epoch'"):
        tr.load_config(raw, {"train": {"epoch": 3}})
    with pytest.raises(ValueError, match="train.method"):
        tr.load_config(raw, {"train": {"method": "bspline"}})
    with pytest.raises(ValueError, match="image_shape"):
        tr.load_config({"dataset": {"name": "x"}})


def test_weakly_supervised_training_lowers_the_loss_and_predict_writes_everything(tmp_path, pairs_root):
    cfg = _config(pairs_root, tmp_path / "log", epochs=6, save_period=3)
    result = _run(cfg)
    assert result.stopped == "completed" and result.epochs_done == 6
    loss = result.history["loss"]
    assert loss[-1] < loss[0] - 0.01, loss
    assert len(result.history["val_dice"]) == 6 and result.pairs_per_second > 0
    ckpts = tmp_path / "log" / "checkpoints"
    assert json.loads((ckpts / "checkpoint.json").read_text())["all"] == ["epoch-0003", "epoch-0006"]
    assert (tmp_path / "log" / "model.keras").is_file() and (tmp_path / "log" / "config.yaml").is_file()

    pred = tr.predict(cfg, split="test", return_arrays=True)
    out = tmp_path / "log" / "test"
    assert pred.out_dir == out and not pred.is_standin
    for i, name in enumerate(PAIRS["test"]):
        for f in ("warped_image", "warped_labels", "ddf"):
            assert (out / f"pair_{i}" / f"{f}.nii.gz").is_file()
        n_labels = len([r for r in pred.rows if r["pair"] == i])
        assert n_labels >= 2
        for j in range(n_labels):
            for kind in ("fixed_image", "fixed_label", "moving_image", "moving_label", "pred_fixed_image",
                         "pred_fixed_label"):
                pngs = sorted((out / f"pair_{i}_label_{j}" / kind).glob("*.png"))
                assert len(pngs) == SHAPE[2], (i, j, kind)
                assert (out / f"pair_{i}_label_{j}" / kind / f"depth0_{kind}.png") in pngs
        assert pred.pairs[i]["name"] == name and pred.pairs[i]["ddf"].shape == (*SHAPE, 3)
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"dice", "dice_before", "hd95", "centroid", "folding_fraction"} <= set(rows[0])
    assert [r["pair"] for r in rows if not r["pair"].isdigit()][:2] == ["mean", "mean"]
    assert {r["pair"] for r in rows} >= {"0", "1", "mean", "std"}
    gland = [r for r in rows if r["pair"] == "mean" and r["label"] == "0"][0]
    assert 0.0 <= float(gland["dice"]) <= 1.0 and 0.0 <= float(gland["folding_fraction"]) <= 1.0
    assert "mean" in pred.table(0)
    fig = tr.prediction_figure(out, pair=0, label=0, depths=[4, 8])
    assert len(fig.axes) >= 16  # 2 rows of 8 panels (+ colour bars)
    assert fig.axes[0].get_title() == "fixed label"


def test_resume_continues_exactly(tmp_path, pairs_root):
    straight = _run(_config(pairs_root, tmp_path / "a", epochs=2, augment_scale=0.1))
    first = _run(_config(pairs_root, tmp_path / "b", epochs=1, augment_scale=0.1))
    assert first.epochs_done == 1
    resumed = _run(_config(pairs_root, tmp_path / "b", epochs=2, augment_scale=0.1), resume=True)
    assert resumed.epochs_done == 2 and "resumed from epoch-0001" in resumed.messages[0]
    np.testing.assert_allclose(resumed.history["loss"], straight.history["loss"], rtol=1e-4)
    for a, b in zip(straight.model.get_weights(), resumed.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, pairs_root):
    good = _run(_config(pairs_root, tmp_path / "log", epochs=1))
    weights = [w.copy() for w in good.model.get_weights()]
    cfg = _config(pairs_root, tmp_path / "log", epochs=3)
    cfg["train"]["loss"]["image"]["weight"] = float("nan")
    bad = _run(cfg, resume=True)
    assert bad.stopped == "nan" and bad.epochs_done == 1
    assert any("non-finite loss" in m for m in bad.messages)
    assert tr.latest_checkpoint(tmp_path / "log").name == "epoch-0001.weights.h5"
    for a, b in zip(weights, bad.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_interrupt_saves_a_checkpoint_to_resume_from(tmp_path, pairs_root, monkeypatch):
    calls = {"n": 0}
    original = tr._Pairs.batches

    def interrupted(self, *args, **kwargs):
        for batch in original(self, *args, **kwargs):
            calls["n"] += kwargs.get("shuffle", True)  # training batches only, not validation
            if calls["n"] == 4:  # second step of the second epoch (2 steps per epoch)
                raise KeyboardInterrupt
            yield batch

    monkeypatch.setattr(tr._Pairs, "batches", interrupted)
    cfg = _config(pairs_root, tmp_path / "log", epochs=3, save_period=5)
    result = _run(cfg)
    assert result.stopped == "interrupted" and result.epochs_done == 1
    assert tr.latest_checkpoint(tmp_path / "log").name == "interrupted-epoch-0001.weights.h5"
    monkeypatch.setattr(tr._Pairs, "batches", original)
    resumed = _run(cfg, resume=True)
    assert resumed.stopped == "completed" and resumed.epochs_done == 3


def test_command_line_train_and_predict(tmp_path, pairs_root):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_config(pairs_root, tmp_path / "log", epochs=1)))
    assert tr.main(["--config", str(path)]) == 0
    assert tr.predict_main(["--config", str(path), "--split", "valid"]) == 0
    assert (tmp_path / "log" / "valid" / "metrics.csv").is_file()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for module in ("tutorialreg.train", "tutorialreg.predict"):
        done = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                              env=env, timeout=300)
        assert done.returncode == 0 and "--config" in done.stdout, done.stderr[-2000:]


def test_mirrored_strategy_on_two_logical_cpus(tmp_path, pairs_root):
    """The multi-device code path (MirroredStrategy), on two logical CPU devices in a fresh process."""
    cfg = _config(pairs_root, tmp_path / "log", epochs=1)
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    script = textwrap.dedent(f"""
        import json, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from tutorialreg import train
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        cfg = json.load(open({str(tmp_path / "c.json")!r}))
        r = train.train(cfg, plot=False, progress=False, strategy=strategy)
        assert r.stopped == "completed" and len(r.history["loss"]) == 1, r
        print("OK", r.history["loss"][0])
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0 and "OK" in done.stdout, done.stderr[-3000:]
