"""Configs: packaged by name, merged, and every known value checked when it loads."""

from __future__ import annotations

import pytest
import yaml

from tutorialreg import config

RAW = {"dataset": {"name": "x", "image_shape": [8, 8, 8]}, "fast": {"train": {"epochs": 1}}}


def _with(section: str, **values) -> dict:
    raw = {"dataset": dict(RAW["dataset"]), "train": {}}
    raw[section].update(values)
    return raw


def test_defaults_fast_section_overrides_and_unknown_keys(tmp_path, monkeypatch):
    monkeypatch.delenv("TUTORIALREG_FAST", raising=False)
    cfg = config.load_config(RAW)
    assert cfg["train"]["epochs"] == config.DEFAULTS["train"]["epochs"]
    assert cfg["train"]["loss"]["label"]["name"] == "dice" and cfg["dataset"]["moving_placement"] == "resize"
    monkeypatch.setenv("TUTORIALREG_FAST", "1")
    assert config.load_config(RAW)["train"]["epochs"] == 1
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(RAW))
    assert config.load_config(path, {"train": {"epochs": 5}})["train"]["epochs"] == 5
    with pytest.raises(ValueError, match="unknown config key 'train.epoch'"):
        config.load_config(RAW, {"train": {"epoch": 3}})
    with pytest.raises(ValueError, match="image_shape"):
        config.load_config({"dataset": {"name": "x"}})
    with pytest.raises(FileNotFoundError, match="neither a packaged config"):
        config.load_config("no_such_config")


def test_packaged_configs_load_by_name_and_print():
    assert {"paired_mrus_prostate", "paired_ct_lung"} <= set(config.config_names())
    for name in config.config_names():
        cfg = config.load_config(name)
        assert cfg["dataset"]["name"] == name
        assert "dataset:" in config.config_text(name)


@pytest.mark.parametrize(("section", "values", "match"), [
    ("train", {"optimizer": {"name": "Adam", "learning_rate": -1e-3}}, "learning_rate must be > 0"),
    ("train", {"optimizer": {"name": "Adam", "learning_rate": "fast"}}, "learning_rate must be a number"),
    ("train", {"jit_compile": "no"}, "jit_compile must be true or false"),
    ("train", {"epochs": 0}, "epochs must be >= 1"),
    ("train", {"epochs": 2.5}, "epochs must be a whole number"),
    ("train", {"batch_size": 0}, "batch_size must be >= 1"),
    ("train", {"method": "bspline"}, "train.method must be one of"),
    ("train", {"augment_scale": 2}, "augment_scale must be <= 1"),
    ("train", {"loss": {"label": {"name": "dice", "weight": float("nan")}}}, "weight must be finite"),
    ("train", {"loss": {"label": {"name": "ssd", "weight": 1}}}, "label.name must be one of"),
    ("train", {"loss": {"label": {"name": "dice", "weight": 1, "channel_weights": [0, 0]}}}, "not all be 0"),
    ("dataset", {"image_shape": [8, 8]}, "dataset.image_shape must be three integers"),
    ("dataset", {"image_shape": [8, -8, 8]}, "dataset.image_shape must be three integers >= 2"),
    ("dataset", {"moving_placement": "physical"}, "moving_placement must be one of"),
    ("dataset", {"labeled": "yes"}, "dataset.labeled must be true or false"),
    ("dataset", {"split": {"seed": 0, "fractions": [0.5, 0.5, 0.5]}}, "summing to 1"),
    ("train", {"backbone": {"name": "local", "num_channel_initail": 8}}, r"unknown key\(s\) \['num_chan"),
    ("train", {"backbone": {"name": "local", "num_channel_initial": -8}}, "num_channel_initial must be >= 1"),
    ("train", {"backbone": {"name": "local", "extract_levels": "0,1"}}, "extract_levels must be a non-empty"),
    ("train", {"backbone": {"name": "local", "norm": "group"}}, "norm must be one of"),
    ("train", {"optimizer": {"name": "Adm", "learning_rate": 1e-3}}, "not a Keras optimizer"),
    ("train", {"augment_rigid": [2]}, "augment_rigid must be"),
    ("train", {"augment_flip": [3]}, "augment_flip must be a list of axes"),
    ("train", {"train_shape": [8, 8]}, "train.train_shape must be three integers"),
    ("train", {"method": "affine", "train_shape": [8, 8, 8]}, "train_shape needs train.method"),
    ("train", {"seg_channels": -1}, "seg_channels must be >= 0"),
    ("train", {"lr_decay": "linear"}, "lr_decay must be one of"),
    ("train", {"loss": {"segmentation": {"name": "dice", "weight": 1}}}, "needs train.seg_channels"),
    ("train", {"loss": {"label": {"name": "dice", "weight": 1, "pools": [1, 2], "scales": [0]}}}, "not both"),
    ("train", {"loss": {"centroid": {"name": "dice", "weight": 1}}}, "centroid.name must be one of"),
])
def test_bad_values_are_refused_naming_the_key(section, values, match):
    with pytest.raises(ValueError, match=match):
        config.load_config(_with(section, **values))


def test_yaml_exponent_without_a_dot_is_read_as_a_number(tmp_path):
    """PyYAML reads ``1e-3`` as the string "1e-3"; the config reads it as the number it means."""
    path = tmp_path / "c.yaml"
    path.write_text("dataset: {name: x, image_shape: [8, 8, 8]}\ntrain: {optimizer: {name: Adam, "
                    "learning_rate: 1e-3}}\n")
    assert yaml.safe_load(path.read_text())["train"]["optimizer"]["learning_rate"] == "1e-3"
    assert config.load_config(path)["train"]["optimizer"]["learning_rate"] == pytest.approx(1e-3)


def test_a_preload_larger_than_memory_is_refused_with_the_figures(data_env):
    with pytest.raises(ValueError, match=r"needs about \d+\.\d GiB to preload, but only .* GiB"):
        config.load_config("paired_mrus_prostate", {"dataset": {"image_shape": [256, 256, 256]}})
    config.load_config("paired_mrus_prostate")  # the real one fits


def test_unknown_split_names_the_ones_there_are(data_env):
    cfg = config.load_config("paired_mrus_prostate")
    with pytest.raises(ValueError, match=r"unknown split\(s\) \['tset'\]; this data set has"):
        config.datasets(cfg, ["tset"])


def test_a_batch_larger_than_the_training_set_is_reduced_with_a_warning(tmp_path, mirror_dir):
    from tutorialreg import train

    root = tmp_path / "pairs"
    for kind in ("moving_images", "fixed_images", "moving_labels", "fixed_labels"):
        (root / "train" / kind).mkdir(parents=True)
        for name in ("obs000", "obs001"):
            (root / "train" / kind / f"{name}.nii.gz").symlink_to(mirror_dir / "paired_mrus_prostate" / kind /
                                                                  f"{name}.nii.gz")
    backbone = {"name": "local", "num_channel_initial": 2, "extract_levels": [1]}
    cfg = config.load_config({"dataset": {"name": str(root), "image_shape": [8, 8, 8], "label_channels": 6},
                              "train": {"batch_size": 50, "backbone": backbone},
                              "log_dir": str(tmp_path / "log")})
    with pytest.warns(UserWarning, match="batch_size 50 is larger than the 2 training pairs; using 2"):
        trainer = train.Trainer(cfg)
    assert trainer.batch_size == 2 and trainer.steps == 1
    assert trainer.valid_pairs is None  # no valid/ folder: no validation
