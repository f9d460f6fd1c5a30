"""Configurations of learning-based registration: defaults, loading, validation, and what they build.

A config is a YAML file shaped like DeepReg's (or a dict); every key has a default (:data:`DEFAULTS`)::

    dataset:
      name: paired_mrus_prostate    # a manifest dataset (fetched, verified) or a folder of pairs
      split: {seed: 0, fractions: [0.7, 0.1, 0.2]}   # flat folders only; else {train,valid,test}/ folders
      image_shape: [47, 63, 44]     # the fixed grid the model works on; both images are put on it
      moving_placement: centre      # centre: volume centres aligned (pad/crop); resize: whole extent resized
      label_channels: 6             # labels are zero-padded to this many channels (a mask marks real ones)
    train:
      method: ddf                   # ddf | dvf | affine | affine+ddf
      backbone: {name: local, num_channel_initial: 8, extract_levels: [1, 2, 3]}
      global_backbone: {num_channel_initial: 4, depth: 4}   # GlobalNet of the affine methods
      loss:
        image: {name: lncc, weight: 0.0}                      # any tutorialreg.losses name (+ its options)
        label: {name: dice, weight: 1.0, scales: [0, 1, 2, 4, 8, 16], channel_weights: [1, 1]}
        centroid: {name: centroid, weight: 0.02}              # soft label centroids, mm apart
        segmentation: {name: dice, weight: 1.0}               # auxiliary head: needs seg_channels
        regularization: {name: bending, weight: 0.5}
      train_shape: [24, 32, 22]     # train on this grid (the network always works on it); default image_shape
      seg_channels: 2               # extra backbone outputs that segment the fixed and moving label 0
      optimizer: {name: Adam, learning_rate: 1.0e-3}
      lr_decay: cosine              # none | cosine: the learning rate falls to 0 over all training steps
      batch_size: 4
      augment_scale: 0.1            # random affine of the tutorial's generator, per side; 0 = off
      augment_rigid: [2, 5]         # and a random rigid motion of the moving side: shift (voxels), degrees
      augment_flip: [1]             # axes along which a pair (both sides) is mirrored at random
      epochs: 30
      save_period: 10               # checkpoint every N epochs (and at the end, and when interrupted)
      seed: 0
    log_dir: logs/mrus
    fast: {train: {epochs: 2}}      # merged over the rest when TUTORIALREG_FAST=1

The book's configs ship inside the package and load by name: ``load_config("paired_mrus_prostate")``
(:func:`config_names` lists them; :func:`config_text` prints one, to read or copy). Every value the package
knows is checked when a config loads (types, ranges, names), so a typo fails at once with its key.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from tutorialreg.checks import number, shape3
from tutorialreg.runtime import fast_mode

__all__ = [
    "DEFAULTS",
    "load_pairs",
    "available_memory",
    "build_model",
    "check_preload",
    "config_names",
    "config_text",
    "datasets",
    "load_config",
]

DEFAULTS: dict[str, Any] = {
    "dataset": {
        "name": None,
        "split": None,
        "image_shape": None,
        "labeled": True,
        "label_channels": None,
        "moving_placement": "resize",
    },
    "train": {
        "method": "ddf",
        "backbone": {"name": "local"},
        "global_backbone": {},
        "integration_steps": 7,
        "train_shape": None,
        "seg_channels": 0,
        "loss": {
            "image": {"name": "lncc", "weight": 0.0},
            "label": {"name": "dice", "weight": 1.0},
            "centroid": {"name": "centroid", "weight": 0.0},
            "segmentation": {"name": "dice", "weight": 0.0},
            "regularization": {"name": "bending", "weight": 0.5},
        },
        "optimizer": {"name": "Adam", "learning_rate": 1.0e-3},
        "batch_size": 4,
        "augment_scale": 0.0,
        "augment_rigid": [0.0, 0.0],
        "augment_flip": [],
        "lr_decay": "none",
        "epochs": 10,
        "save_period": 5,
        "seed": 0,
        "jit_compile": False,
    },
    "log_dir": "logs/tutorialreg",
    "fast": {},
}
_FREE_KEYS = {"backbone", "global_backbone", "image", "label", "centroid", "segmentation", "regularization",
              "optimizer", "split", "fast"}
LOSS_KINDS = ("image", "label", "centroid", "segmentation", "regularization")
LABEL_KINDS = ("label", "centroid")  # terms that compare the warped and the fixed labels, channel by channel
_LOSS_NAMES = {"image": ("ssd", "ncc", "lncc", "gmi"), "label": ("dice", "jaccard", "cross-entropy"),
               "centroid": ("centroid",), "segmentation": ("dice", "jaccard", "cross-entropy"),
               "regularization": ("bending", "gradient-l1", "gradient-l2")}


# ------------------------------------------------------------------------------------------ loading
def config_names() -> list[str]:
    """Names of the configs that ship with the package (``load_config(name)`` loads one)."""
    return sorted(p.name.removesuffix(".yaml") for p in resources.files("tutorialreg.configs").iterdir()
                  if p.name.endswith(".yaml"))


def config_text(name: str) -> str:
    """The YAML text of a packaged config, with its comments (print it to read it, or save it to edit it)."""
    if name not in config_names():
        raise ValueError(f"no packaged config {name!r}; packaged: {config_names()} (or give a YAML path)")
    return resources.files("tutorialreg.configs").joinpath(f"{name}.yaml").read_text()


def _merge(base: dict, update: Mapping, path: str = "") -> dict:
    """Deep-merge ``update`` into a copy of ``base``; unknown keys are an error except in free sections."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        where = f"{path}{key}"
        if key not in out and path.rstrip(".").split(".")[-1] not in _FREE_KEYS:
            raise ValueError(f"unknown config key {where!r}; expected one of {sorted(out)}")
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, f"{where}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read(config: str | os.PathLike | Mapping) -> tuple[dict, Path | None]:
    """The raw mapping of a config given as a dict, a packaged name or a YAML path; and the YAML's folder."""
    import yaml

    if isinstance(config, Mapping):
        return copy.deepcopy(dict(config)), None
    text, base = None, None
    if isinstance(config, str) and config in config_names() and not Path(config).exists():
        text = config_text(config)
    else:
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"config {config!r} is neither a packaged config ({config_names()}) "
                                    "nor a YAML file")
        text, base = path.read_text(), path.resolve().parent
    raw = yaml.safe_load(text) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{config}: expected a YAML mapping with dataset/train/log_dir keys")
    return raw, base


def load_config(config: str | os.PathLike | Mapping, overrides: Mapping | None = None) -> dict:
    """Resolved, checked config: :data:`DEFAULTS` <- the config <- ``fast`` (in fast mode) <- ``overrides``.

    :param config: a packaged config's name (e.g. ``"paired_mrus_prostate"``), a YAML path, or a dict. A
        relative ``dataset.name`` that is a folder is taken relative to the YAML file's folder when it exists
        there, else to the current directory.
    :raises ValueError: naming the key of any unknown key or bad value (type, range, name), and when
        preloading the data set would need more memory than the machine has.
    """
    raw, base = _read(config)
    cfg = _merge(DEFAULTS, raw)
    fast, cfg["fast"] = cfg["fast"], {}  # consumed: a resolved config resolves to itself
    if fast_mode() and fast:
        cfg = _merge(cfg, fast)
    if overrides:
        cfg = _merge(cfg, overrides)
    name = cfg["dataset"]["name"]
    if base is not None and isinstance(name, str) and not Path(name).is_absolute() and (base / name).exists():
        cfg["dataset"]["name"] = str(base / name)
    _validate(cfg)
    count = _pair_count(cfg["dataset"]["name"])
    if count:
        check_preload(cfg, count)
    return cfg


# ------------------------------------------------------------------------------------------ validation
def _boolean(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r}")
    return value


def _choice(value: Any, choices: Sequence[str], key: str) -> str:
    if value not in choices:
        raise ValueError(f"{key} must be one of {list(choices)}, got {value!r}")
    return value


def _numbers(values: Any, key: str, low: float = 0.0) -> list[float]:
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(f"{key} must be a non-empty list of numbers, got {values!r}")
    return [number(v, f"{key}[{i}]", low=low) for i, v in enumerate(values)]


def _validate_dataset(d: dict) -> None:
    if not isinstance(d["name"], str) or not d["name"]:
        raise ValueError("config needs dataset.name: a manifest dataset name or a folder of paired volumes")
    if d["image_shape"] is None:
        raise ValueError("config needs dataset.image_shape: [d1, d2, d3] (the fixed grid the model works on)")
    d["image_shape"] = list(shape3(d["image_shape"], "dataset.image_shape", minimum=2))
    _boolean(d["labeled"], "dataset.labeled")
    from tutorialreg.data import PLACEMENTS

    _choice(d["moving_placement"], PLACEMENTS, "dataset.moving_placement")
    if d["label_channels"] is not None:
        d["label_channels"] = number(d["label_channels"], "dataset.label_channels", low=1, integer=True)
    if d["split"] is not None:
        split = d["split"]
        if not isinstance(split, Mapping) or set(split) - {"seed", "fractions"}:
            raise ValueError("dataset.split must be {seed: int, fractions: [train, valid, test]}, "
                             f"got {split!r}")
        number(split.get("seed", 0), "dataset.split.seed", integer=True)
        fractions = _numbers(split.get("fractions", [0.7, 0.1, 0.2]), "dataset.split.fractions")
        if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-6:
            raise ValueError(f"dataset.split.fractions must be 3 numbers >= 0 summing to 1, got {fractions}")


def _validate_loss(kind: str, term: Any) -> None:
    key = f"train.loss.{kind}"
    if term is None:
        return
    if not isinstance(term, dict):
        raise ValueError(f"{key} must be a mapping with name and weight, got {term!r}")
    term["weight"] = number(term.get("weight", 0.0), f"{key}.weight", low=0.0)
    if term["weight"] and "name" not in term:
        raise ValueError(f"{key} has a weight but no name")
    if "name" in term:
        _choice(str(term["name"]).strip().lower().replace("_", "-"), _LOSS_NAMES[kind], f"{key}.name")
    if "scales" in term:
        term["scales"] = _numbers(term["scales"], f"{key}.scales")
    if "pools" in term:
        term["pools"] = [number(v, f"{key}.pools", low=1, integer=True) for v in _numbers(term["pools"],
                                                                                          f"{key}.pools")]
        if "scales" in term:
            raise ValueError(f"{key}: give scales or pools, not both")
    if "channel_weights" in term:
        weights = _numbers(term["channel_weights"], f"{key}.channel_weights")
        if not any(weights):
            raise ValueError(f"{key}.channel_weights must not all be 0, got {weights}")
        term["channel_weights"] = weights


def _validate_backbone(key: str, kwargs: dict, builder) -> None:
    """Unknown keys and the types of the common ones of a backbone section."""
    import inspect

    known = set(inspect.signature(builder).parameters) - {"image_size", "name"}
    unknown = sorted(set(kwargs) - known - {"name"})
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {key}; {builder.__name__} takes {sorted(known)}")
    for name in ("num_channel_initial", "depth", "out_channels"):
        if name in kwargs:
            kwargs[name] = number(kwargs[name], f"{key}.{name}", low=1, integer=True)
    if "extract_levels" in kwargs:
        levels = kwargs["extract_levels"]
        if not isinstance(levels, (list, tuple)) or not levels:
            raise ValueError(f"{key}.extract_levels must be a non-empty list of levels, got {levels!r}")
        kwargs["extract_levels"] = [number(v, f"{key}.extract_levels", low=0, integer=True) for v in levels]
    if "norm" in kwargs:
        _choice(kwargs["norm"], ("batch", "none"), f"{key}.norm")


def _validate_optimizer(opt: Any) -> None:
    import keras

    if not isinstance(opt, dict) or "name" not in opt:
        raise ValueError(f"train.optimizer must be a mapping with a name (e.g. Adam), got {opt!r}")
    opt["learning_rate"] = number(opt.get("learning_rate", 1e-3), "train.optimizer.learning_rate", low=0.0,
                                  low_open=True)
    settings = {k: v for k, v in opt.items() if k != "name"}
    try:
        keras.optimizers.get({"class_name": opt["name"], "config": settings})
    except (ValueError, TypeError) as err:
        raise ValueError(f"train.optimizer {opt!r} is not a Keras optimizer with these settings: "
                         f"{err}") from None


def _validate_train(t: dict) -> None:
    from tutorialreg import networks

    _choice(t["method"], networks.METHODS, "train.method")
    _choice(t["backbone"].get("name", "local"), networks.BACKBONES, "train.backbone.name")
    builders = {"local": networks.local_net, "unet": networks.unet, "global": networks.global_net}
    _validate_backbone("train.backbone", t["backbone"], builders[t["backbone"].get("name", "local")])
    _validate_backbone("train.global_backbone", t["global_backbone"], networks.global_net)
    for key in ("batch_size", "epochs", "save_period"):
        t[key] = number(t[key], f"train.{key}", low=1, integer=True)
    t["seed"] = number(t["seed"], "train.seed", integer=True)
    t["integration_steps"] = number(t["integration_steps"], "train.integration_steps", low=0, integer=True)
    t["augment_scale"] = number(t["augment_scale"], "train.augment_scale", low=0.0, high=1.0)
    rigid = _numbers(t["augment_rigid"], "train.augment_rigid")
    if len(rigid) != 2 or rigid[1] > 45:
        raise ValueError("train.augment_rigid must be [shift in voxels, rotation in degrees <= 45], got "
                         f"{t['augment_rigid']!r}")
    t["augment_rigid"] = rigid
    if not isinstance(t["augment_flip"], (list, tuple)) or any(a not in (0, 1, 2) for a in t["augment_flip"]):
        raise ValueError(f"train.augment_flip must be a list of axes 0, 1, 2, got {t['augment_flip']!r}")
    t["seg_channels"] = number(t["seg_channels"], "train.seg_channels", low=0, integer=True)
    _choice(t["lr_decay"], ("none", "cosine"), "train.lr_decay")
    if t["train_shape"] is not None:
        t["train_shape"] = list(shape3(t["train_shape"], "train.train_shape", minimum=2))
        if t["method"] not in ("ddf", "dvf"):
            raise ValueError(f"train.train_shape needs train.method ddf or dvf, got {t['method']!r}")
    _boolean(t["jit_compile"], "train.jit_compile")
    for kind in LOSS_KINDS:
        _validate_loss(kind, t["loss"].get(kind))
    segmentation = (t["loss"].get("segmentation") or {}).get("weight", 0)
    if segmentation and t["seg_channels"] not in (1, 2):
        raise ValueError("train.loss.segmentation needs train.seg_channels 1 (the fixed gland) or 2 (fixed "
                         f"and moving), got {t['seg_channels']}")
    _validate_optimizer(t["optimizer"])


def _validate(cfg: dict) -> None:
    _validate_dataset(cfg["dataset"])
    _validate_train(cfg["train"])
    if not isinstance(cfg["log_dir"], (str, os.PathLike)) or not str(cfg["log_dir"]):
        raise ValueError(f"log_dir must be a folder path, got {cfg['log_dir']!r}")


# ------------------------------------------------------------------------------------------ memory
def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux ``MemAvailable``; physical pages elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _pair_count(name: str) -> int:
    """Number of pairs of a manifest dataset or a folder of pairs (0 when neither)."""
    folder = Path(name)
    if folder.is_dir():
        paths = [p.relative_to(folder) for p in folder.glob("**/fixed_*/*") if p.is_file()]
    else:
        from tutorialreg import data

        paths = [Path(e["path"]) for e in data.load_manifest().get(name, {}).get("files", [])]
    return len({(p.parent.parent, p.name.split(".")[0]) for p in paths if p.parent.name.startswith("fixed_")})


def check_preload(config: Mapping, n_pairs: int) -> None:
    """ValueError, with the figures, when preloading ``n_pairs`` pairs at the config's ``image_shape`` needs
    more memory than is available."""
    from tutorialreg import data

    d = config["dataset"]
    need = data.preload_bytes(n_pairs, d["image_shape"], int(d["label_channels"] or 6) if d["labeled"] else 0)
    have = available_memory()
    if have is not None and need > have:
        raise ValueError(
            f"dataset.image_shape {d['image_shape']} with {n_pairs} pairs needs about {need / 2**30:.1f} GiB "
            f"to preload, but only {have / 2**30:.1f} GiB of memory is available: choose a smaller "
            "image_shape")


# ------------------------------------------------------------------------------------------ building
def build_model(config: Mapping, training: bool = False):
    """The :class:`~tutorialreg.networks.RegistrationModel` a resolved config describes.

    :param training: True: the model that is trained, on ``train.train_shape`` images when that is set;
        False: the model that registers ``dataset.image_shape`` images. Both run their networks on the
        ``train.train_shape`` grid, so they have the same weights (one checkpoint serves both).
    """
    from tutorialreg import networks

    t = config["train"]
    image_shape = tuple(config["dataset"]["image_shape"])
    field = tuple(t["train_shape"] or image_shape)
    backbone = dict(t["backbone"])
    name = backbone.pop("name", "local")
    if t["method"] == "affine":
        global_kwargs = {**(backbone if name == "global" else {}), **t["global_backbone"]}
        return networks.RegistrationModel(image_shape, "affine", global_kwargs=global_kwargs)
    return networks.RegistrationModel(
        field if training else image_shape, t["method"], backbone=name, backbone_kwargs=backbone,
        global_kwargs=t["global_backbone"], integration_steps=t["integration_steps"], field_size=field,
        seg_channels=t["seg_channels"],
    )


def datasets(config: Mapping, splits: Sequence[str], image_shape: Sequence[int] | None = None) -> dict:
    """``{split: PairedDataset}`` of a resolved config (flat folders are split with the config's seed).

    :param image_shape: the grid to resample to; default ``dataset.image_shape`` (training uses
        ``train.train_shape``).
    :raises ValueError: for a split the data set does not have, naming the ones it has.
    """
    from tutorialreg import data

    d = config["dataset"]
    options = dict(image_shape=tuple(image_shape or d["image_shape"]), labeled=d["labeled"],
                   moving_placement=d["moving_placement"])
    if d["split"]:
        probe = data.PairedDataset(d["name"], None, **options)
        split = d["split"]
        names = data.split_pairs(probe.names, tuple(split.get("fractions", (0.7, 0.1, 0.2))),
                                 int(split.get("seed", 0)))
        unknown = [s for s in splits if s not in names]
        if unknown:
            raise ValueError(f"unknown split(s) {unknown}; this data set has {sorted(names)}")
        return {s: data.PairedDataset(d["name"], None, names=names[s], **options) for s in splits}
    return {s: data.PairedDataset(d["name"], s, **options) for s in splits}


def load_pairs(config: Mapping, split: str) -> list[dict]:
    """Every pair of a split as numpy arrays on the config's grid: the items of
    :class:`~tutorialreg.data.PairArrays` (images, labels padded to ``label_channels``, ``label_mask``) plus
    ``name`` and ``spacing`` (mm per voxel of the grid)."""
    from tutorialreg import data

    ds = datasets(config, [split])[split]
    arrays = data.PairArrays(ds, config["dataset"]["label_channels"])
    return [{**arrays.item(i), "name": name, "spacing": ds.spacing(name)}
            for i, name in enumerate(arrays.names)]
