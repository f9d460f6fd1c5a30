"""Training and prediction on a few real MR-ultrasound pairs with a tiny model (a few seconds each)."""

from __future__ import annotations

import csv
import json
import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from tutorialreg import checkpoints, data, optimise, predict
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
        "dataset": {"name": str(root), "image_shape": SHAPE, "label_channels": 6,
                    "moving_placement": "centre"},
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
    return tr.train(cfg, progress=False, **kwargs)


def _names(log_dir: Path) -> list[str]:
    return [p.name for p in checkpoints.find(log_dir)]


def test_weakly_supervised_training_lowers_the_loss_and_predict_writes_everything(tmp_path, pairs_root):
    cfg = _config(pairs_root, tmp_path / "log", epochs=6, save_period=3)
    result = _run(cfg)
    assert result.stopped == "completed" and result.epochs_done == 6
    loss = result.history["loss"]
    assert loss[-1] < loss[0] - 0.01, loss
    assert len(result.history["val_dice"]) == 6 and result.pairs_per_second > 0
    assert _names(tmp_path / "log") == ["epoch-0006.ckpt.npz", "epoch-0003.ckpt.npz"]
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
            for kind in predict.PNG_KINDS:
                pngs = sorted((out / f"pair_{i}_label_{j}" / kind).glob("*.png"))
                assert len(pngs) == SHAPE[2], (i, j, kind)
        assert pred.pairs[i]["name"] == name and pred.pairs[i]["ddf"].shape == (*SHAPE, 3)
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert {"dice", "dice_before", "hd95", "centroid", "folding_fraction"} <= set(rows[0])
    assert {r["pair"] for r in rows} >= {"0", "1", "mean", "std"}
    np.testing.assert_allclose(pred.values("dice", 0), [r["dice"] for r in pred.rows if r["label"] == 0])
    assert len(pred.values("centroid", "landmarks")) == sum(r["label"] > 0 for r in pred.rows)
    assert "mean" in pred.table(0)


def test_a_short_training_improves_dice_on_pairs_it_did_not_train_on(tmp_path, pairs_root):
    cfg = _config(pairs_root, tmp_path / "log", epochs=8, save_period=8, augment_scale=0.0)
    result = _run(cfg)
    pred = tr.predict(cfg, result.checkpoint, split="test", write=False)
    before, after = pred.values("dice_before", 0), pred.values("dice", 0)
    assert after.mean() > before.mean() + 0.02, (before, after)


def test_interrupted_and_resumed_training_ends_exactly_where_an_uninterrupted_one_does(tmp_path, pairs_root):
    """Ctrl-C in the middle of epoch 2, then resume: bit-identical weights and history on the CPU.

    In a fresh process with TensorFlow's deterministic ops, so that two uninterrupted runs are bit-identical
    too (multi-threaded reductions may otherwise add up in a different order from run to run).
    """
    cfg = {name: _config(pairs_root, tmp_path / name, epochs=3, augment_scale=0.1, save_period=5)
           for name in ("a", "b")}
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    script = textwrap.dedent(f"""
        import json, signal
        import numpy as np, tensorflow as tf
        tf.config.experimental.enable_op_determinism()
        from tutorialreg import checkpoints, data, train
        cfg = json.load(open({str(tmp_path / "c.json")!r}))
        straight = train.train(cfg["a"], progress=False)
        original, calls = data.PairArrays.batches, {{"n": 0}}
        def interrupted(self, *args, **kwargs):
            for batch in original(self, *args, **kwargs):
                calls["n"] += kwargs.get("shuffle", True)  # training batches only, not validation
                if calls["n"] == 4:  # second step of the second epoch (2 steps per epoch)
                    signal.raise_signal(signal.SIGINT)
                yield batch
        data.PairArrays.batches = interrupted
        first = train.train(cfg["b"], progress=False)
        assert first.stopped == "interrupted" and first.epochs_done == 1, first
        names = [p.name for p in checkpoints.find({str(tmp_path / "b")!r})]
        assert names == ["interrupted-epoch-0001.ckpt.npz"], names
        data.PairArrays.batches = original
        resumed = train.train(cfg["b"], resume=True, progress=False)
        assert resumed.stopped == "completed" and resumed.epochs_done == 3
        assert "resumed from interrupted-epoch-0001 (epoch 1)" in resumed.messages, resumed.messages
        assert resumed.history["loss"] == straight.history["loss"], (resumed.history, straight.history)
        for a, b in zip(straight.model.get_weights(), resumed.model.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
        print("OK")
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=900)
    assert done.returncode == 0 and "OK" in done.stdout, done.stderr[-4000:]


def test_a_huge_learning_rate_never_crashes(tmp_path, pairs_root):
    """Learning rates of 1 and above used to send NaN displacements into the gather and crash TensorFlow."""
    cfg = _config(pairs_root, tmp_path / "log", epochs=2, optimizer={"name": "Adam", "learning_rate": 1e3})
    assert _run(cfg).stopped in ("completed", "nan")


def test_a_non_finite_loss_stops_training_and_keeps_the_last_good_state(tmp_path, pairs_root, monkeypatch):
    good = _run(_config(pairs_root, tmp_path / "log", epochs=1))
    weights = [w.copy() for w in good.model.get_weights()]
    original = data.PairArrays.batches

    def poisoned(self, *args, **kwargs):
        for batch in original(self, *args, **kwargs):
            batch["fixed_label"][0, 3, 3, 3, 0] = np.nan
            yield batch

    monkeypatch.setattr(data.PairArrays, "batches", poisoned)
    bad = _run(_config(pairs_root, tmp_path / "log", epochs=4), resume=True)
    assert bad.stopped == "nan" and bad.epochs_done == 1
    assert any("non-finite loss" in m and "epoch 2, step 1" in m for m in bad.messages), bad.messages
    assert _names(tmp_path / "log")[0] == "epoch-0001.ckpt.npz"
    for a, b in zip(weights, bad.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_full_disk_stops_training_with_a_message_and_keeps_the_checkpoints(tmp_path, pairs_root):
    """A file-size limit makes every write past it fail, as a full disk does; no crash, nothing lost."""
    cfg = _config(pairs_root, tmp_path / "log", epochs=3)
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    first = _run({**cfg, "train": {**cfg["train"], "epochs": 1}})
    assert first.stopped == "completed"
    size = (tmp_path / "log" / "checkpoints" / "epoch-0001.ckpt.npz").stat().st_size
    script = textwrap.dedent(f"""
        import json, resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, ({size // 2}, {size // 2}))
        from tutorialreg import train
        r = train.train(json.load(open({str(tmp_path / "c.json")!r})), resume=True, progress=False)
        print("STOPPED", r.stopped, r.epochs_done)
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "STOPPED save_failed 2" in done.stdout
    assert "could not write" in done.stderr and "earlier checkpoints are kept" in done.stderr
    assert _names(tmp_path / "log") == ["epoch-0001.ckpt.npz"]
    path, state, _ = checkpoints.restore_latest(tmp_path / "log", tr.Trainer(tr.load_config(cfg)).model)
    assert state["epochs_done"] == 1
    assert resource.getrlimit(resource.RLIMIT_FSIZE)[0] == resource.RLIM_INFINITY  # this process untouched


def test_predict_refuses_unknown_splits_and_other_architectures(tmp_path, pairs_root):
    cfg = _config(pairs_root, tmp_path / "log", epochs=1)
    _run(cfg)
    with pytest.raises(FileNotFoundError, match="tset"):
        tr.predict(cfg, split="tset")
    other = _config(pairs_root, tmp_path / "log", epochs=1)
    other["train"]["backbone"]["num_channel_initial"] = 3
    with pytest.raises(checkpoints.CheckpointError, match="another architecture"):
        tr.predict(other, split="test")


def test_prediction_with_refinement_never_raises_the_refined_loss(tmp_path, pairs_root):
    cfg = _config(pairs_root, tmp_path / "log", epochs=2)
    _run(cfg)
    plain = tr.predict(cfg, split="test", write=False, return_arrays=True)
    one_level = optimise.REFINE_DEFAULT.replace(levels=(1,), steps=10)
    refined = tr.predict(cfg, split="test", write=False, return_arrays=True, refine_steps=10,
                         refine_settings=one_level)
    assert all(r["refine_seconds"] > 0 for r in refined.rows)
    assert np.all(np.isfinite(refined.values("dice", 0)))
    assert [p["ddf"].shape for p in refined.pairs] == [p["ddf"].shape for p in plain.pairs]


def test_command_line_train_and_predict(tmp_path, pairs_root):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_config(pairs_root, tmp_path / "log", epochs=1)))
    assert tr.main(["--config", str(path)]) == 0
    assert predict.main(["--config", str(path), "--split", "valid"]) == 0
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
        r = train.train(cfg, progress=False, strategy=strategy)
        assert r.stopped == "completed" and len(r.history["loss"]) == 1, r
        print("OK", r.history["loss"][0])
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0 and "OK" in done.stdout, done.stderr[-3000:]


def test_predict_result_values_per_pair_and_pooled():
    rows = [{"name": "a", "label": 0, "dice": 0.5}, {"name": "a", "label": 1, "dice": 0.2},
            {"name": "a", "label": 2, "dice": 0.4}, {"name": "b", "label": 0, "dice": 0.7}]
    result = predict.PredictResult(rows, {}, None, False, 0.1)
    assert result.names == ["a", "b"]
    np.testing.assert_allclose(result.values("dice", 0), [0.5, 0.7])
    np.testing.assert_allclose(result.values("dice", "landmarks"), [0.2, 0.4])
    np.testing.assert_allclose(result.values("dice", "landmarks", per_pair=True), [0.3, np.nan])
    with pytest.raises(KeyError, match="no metric 'hd95'"):
        result.values("hd95", 0)


def test_the_chapter_recipe_trains_on_a_coarse_grid_and_registers_the_full_grid(tmp_path, pairs_root):
    """train_shape, centroid and segmentation terms, rigid and flip augmentation together (chapter 6b)."""
    cfg = _config(pairs_root, tmp_path / "log", epochs=30, save_period=30, train_shape=[8, 10, 8],
                  seg_channels=2,
                  augment_scale=0.1, augment_rigid=[1, 5], augment_flip=[1])
    cfg["train"]["loss"]["label"] = {"name": "dice", "weight": 1.0, "pools": [1, 2], "channel_weights": [1]}
    cfg["train"]["loss"]["centroid"] = {"name": "centroid", "weight": 0.02}
    cfg["train"]["loss"]["segmentation"] = {"name": "dice", "weight": 1.0}
    result = _run(cfg)
    assert result.stopped == "completed"
    assert {"label", "centroid", "segmentation", "regularization"} <= set(result.history)
    seg = result.history["segmentation"]
    assert np.mean(seg[-5:]) < np.mean(seg[:5]) - 0.02, seg  # the auxiliary outputs learn to segment
    assert result.model.image_size == tuple(SHAPE) and result.model.field_size == (8, 10, 8)
    pred = tr.predict(cfg, result.checkpoint, split="test", write=False, return_arrays=True)
    assert pred.pairs[0]["ddf"].shape == (*SHAPE, 3) and np.isfinite(pred.values("dice", 0)).all()
    saved = predict.load_model(cfg, tmp_path / "log" / "model.keras")
    inputs = {k: pred.pairs[0][k][None] for k in ("moving_image", "fixed_image")}
    np.testing.assert_allclose(np.asarray(saved(inputs)["ddf"])[0], pred.pairs[0]["ddf"], atol=1e-5)


def test_segmentation_needs_its_outputs_and_label_zero(tmp_path, pairs_root):
    cfg = _config(pairs_root, tmp_path / "log")
    cfg["train"]["loss"]["segmentation"] = {"name": "dice", "weight": 1.0}
    with pytest.raises(ValueError, match="seg_channels"):
        tr.load_config(cfg)
    cfg["train"]["seg_channels"] = 1
    cfg["train"]["loss"]["label"]["channel_weights"] = [0, 1]
    with pytest.raises(ValueError, match="label 0"):
        tr.Trainer(tr.load_config(cfg))


def test_cosine_decay_falls_from_the_learning_rate_to_zero_along_the_training_steps():
    opt = tr._optimizer({"name": "Adam", "learning_rate": 0.01}, "cosine", 100)
    assert type(opt).__name__ == "Adam"
    for step, expected in ((0, 0.01), (50, 0.005), (100, 0.0)):
        opt.iterations.assign(step)
        np.testing.assert_allclose(float(opt.learning_rate), expected, atol=1e-7)
    constant = tr._optimizer({"name": "SGD", "learning_rate": 0.1, "momentum": 0.5}, "none", 100)
    constant.iterations.assign(99)
    assert float(constant.learning_rate) == pytest.approx(0.1) and constant.momentum == 0.5
