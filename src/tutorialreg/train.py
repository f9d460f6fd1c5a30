"""Training and prediction of registration networks from a config shaped like DeepReg's.

Config (a YAML file or a dict; every key has a default, see :data:`DEFAULTS`)::

    dataset:
      name: paired_mrus_prostate    # a manifest dataset (fetched, verified) or a folder of pairs
      split: {seed: 0, fractions: [0.7, 0.1, 0.2]}   # flat folders only; else {train,valid,test}/ folders
      image_shape: [47, 63, 44]     # both images (and labels) are resampled to this fixed grid
      label_channels: 6             # labels are zero-padded to this many channels (a mask marks real ones)
    train:
      method: ddf                   # ddf | dvf | affine | affine+ddf
      backbone: {name: local, num_channel_initial: 8, extract_levels: [1, 2, 3]}
      global_backbone: {num_channel_initial: 4, depth: 4}   # GlobalNet of the affine methods
      loss:
        image: {name: lncc, weight: 0.0}                      # any tutorialreg.losses name (+ its kwargs)
        label: {name: dice, weight: 1.0, scales: [0, 1, 2, 4, 8, 16]}
        regularization: {name: bending, weight: 0.5}
      optimizer: {name: Adam, learning_rate: 1.0e-3}
      batch_size: 4
      augment_scale: 0.1            # random affine of the tutorial's generator, per side; 0 = off
      epochs: 30
      save_period: 10               # checkpoint every N epochs (and at the end, and when interrupted)
      seed: 0
    log_dir: logs/mrus
    fast: {train: {epochs: 2}}      # merged over the rest when TUTORIALREG_FAST=1

Unsupervised training: image weight > 0, label weight 0. Weakly-supervised: label weight > 0, image
weight 0 (labels are needed only in training). Combined: both. Label losses are computed per label
channel and averaged over the channels a pair really has.

Outputs under ``log_dir``: ``config.yaml`` (the resolved config), ``checkpoints/epoch-NNNN.*`` (model
weights, optimiser state, history) with ``checkpoints/checkpoint.json`` naming the latest,
``model.keras`` (the final model, loadable by ``keras.models.load_model``), ``history.json``.

Command line: ``python -m tutorialreg.train --config configs/paired_mrus_prostate.yaml [--resume]``
and ``python -m tutorialreg.predict --config ... [--checkpoint ...] [--split test]``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tutorialreg import losses, metrics, networks, warp
from tutorialreg.config import fast_mode

__all__ = [
    "DEFAULTS",
    "PredictResult",
    "TrainResult",
    "build_model",
    "latest_checkpoint",
    "load_config",
    "load_model",
    "predict",
    "prediction_figure",
    "train",
]

DEFAULTS: dict[str, Any] = {
    "dataset": {
        "name": None,
        "split": None,
        "image_shape": None,
        "labeled": True,
        "label_channels": None,
    },
    "train": {
        "method": "ddf",
        "backbone": {"name": "local"},
        "global_backbone": {},
        "integration_steps": 7,
        "loss": {
            "image": {"name": "lncc", "weight": 0.0},
            "label": {"name": "dice", "weight": 1.0},
            "regularization": {"name": "bending", "weight": 0.5},
        },
        "optimizer": {"name": "Adam", "learning_rate": 1.0e-3},
        "batch_size": 4,
        "augment_scale": 0.0,
        "epochs": 10,
        "save_period": 5,
        "seed": 0,
        "jit_compile": False,
    },
    "log_dir": "logs/tutorialreg",
    "fast": {},
}
_FREE_KEYS = {"backbone", "global_backbone", "image", "label", "regularization", "optimizer", "split", "fast"}
_LOSS_KINDS = ("image", "label", "regularization")


# ------------------------------------------------------------------------------------------ config
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


def load_config(config: str | os.PathLike | Mapping, overrides: Mapping | None = None) -> dict:
    """Resolved config: :data:`DEFAULTS` <- the YAML file or dict <- ``fast`` (in fast mode) <- ``overrides``.

    A relative ``dataset.name`` that is a folder is taken relative to the YAML file's folder when it
    exists there, else to the current directory. Raises ValueError naming any unknown key or bad value.
    """
    import yaml

    base = None
    if isinstance(config, Mapping):
        raw = copy.deepcopy(dict(config))
    else:
        base = Path(config).resolve().parent
        with open(config) as f:
            raw = yaml.safe_load(f) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{config}: expected a YAML mapping with dataset/train/log_dir keys")
    cfg = _merge(DEFAULTS, raw)
    fast, cfg["fast"] = cfg["fast"], {}  # consumed: a resolved config resolves to itself
    if fast_mode() and fast:
        cfg = _merge(cfg, fast)
    if overrides:
        cfg = _merge(cfg, overrides)
    name = cfg["dataset"]["name"]
    if not name:
        raise ValueError("config needs dataset.name: a manifest dataset name or a folder of paired volumes")
    if base is not None and not Path(name).is_absolute() and (base / name).exists():
        cfg["dataset"]["name"] = str(base / name)
    t = cfg["train"]
    if t["method"] not in networks.METHODS:
        raise ValueError(f"train.method must be one of {networks.METHODS}, got {t['method']!r}")
    for kind in _LOSS_KINDS:
        term = t["loss"].get(kind) or {}
        if float(term.get("weight", 0.0)) and "name" not in term:
            raise ValueError(f"train.loss.{kind} has a weight but no name")
    if int(t["batch_size"]) < 1 or int(t["epochs"]) < 0 or int(t["save_period"]) < 1:
        raise ValueError("train.batch_size and train.save_period must be >= 1 and train.epochs >= 0")
    if cfg["dataset"]["image_shape"] is None:
        raise ValueError("config needs dataset.image_shape: [d1, d2, d3] (the fixed grid the model works on)")
    return cfg


def build_model(config: Mapping) -> networks.RegistrationModel:
    """The :class:`~tutorialreg.networks.RegistrationModel` a resolved config describes."""
    t = config["train"]
    backbone = dict(t["backbone"])
    name = backbone.pop("name", "local")
    if t["method"] == "affine":
        global_kwargs = {**(backbone if name == "global" else {}), **t["global_backbone"]}
        return networks.RegistrationModel(config["dataset"]["image_shape"], "affine",
                                          global_kwargs=global_kwargs)
    return networks.RegistrationModel(
        config["dataset"]["image_shape"], t["method"], backbone=name, backbone_kwargs=backbone,
        global_kwargs=t["global_backbone"], integration_steps=t["integration_steps"],
    )


# ------------------------------------------------------------------------------------------ data
def _datasets(config: Mapping, splits: Sequence[str]) -> dict:
    """``{split: PairedDataset}`` for the config's dataset (flat folders are split with a fixed seed)."""
    from tutorialreg import data

    d = config["dataset"]
    shape = tuple(int(s) for s in d["image_shape"])
    if d["split"]:
        probe = data.PairedDataset(d["name"], None, image_shape=shape, labeled=d["labeled"])
        split = d["split"]
        names = data.split_pairs(probe.names, tuple(split.get("fractions", (0.7, 0.1, 0.2))),
                                 int(split.get("seed", 0)))
        return {s: data.PairedDataset(d["name"], None, image_shape=shape, labeled=d["labeled"],
                                      names=names[s]) for s in splits}
    return {s: data.PairedDataset(d["name"], s, image_shape=shape, labeled=d["labeled"]) for s in splits}


class _Pairs:
    """Arrays of one split, labels padded to a common channel count, plus numpy batches.

    Items: ``moving_image``, ``fixed_image`` ``[d1,d2,d3]``; ``moving_label``, ``fixed_label``
    ``[d1,d2,d3,C]`` and ``label_mask`` ``[C]`` (1 for channels the pair has) when labelled.
    """

    def __init__(self, ds, label_channels: int | None):
        self.ds, self.names = ds, list(ds.names)
        self.is_standin = bool(getattr(ds, "is_standin", False))
        self.labeled = bool(ds.labeled)
        self.items = [ds[i] for i in range(len(ds))]
        if not self.items:
            raise ValueError(f"no pairs in {ds.root}")
        self.channels = 0
        if self.labeled:
            found = max(it["fixed_label"].shape[-1] for it in self.items)
            self.channels = int(label_channels or found)

    def __len__(self) -> int:
        return len(self.items)

    def item(self, i: int) -> dict:
        it = self.items[i]
        out = {"moving_image": it["moving_image"], "fixed_image": it["fixed_image"]}
        if self.labeled:
            mask = np.zeros(self.channels, np.float32)
            for side in ("moving", "fixed"):
                lab = it[f"{side}_label"][..., : self.channels]
                n = lab.shape[-1]
                mask[:n] = 1.0
                out[f"{side}_label"] = np.pad(lab, [(0, 0)] * 3 + [(0, self.channels - n)])
            out["label_mask"] = mask
        return out

    def batches(self, batch_size: int, seed: int, epoch: int, shuffle: bool = True,
                augment_scale: float = 0.0, drop_remainder: bool = True) -> Iterator[dict]:
        """Batches of one epoch; order and augmentation depend only on ``(seed, epoch)``."""
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(self)) if shuffle else np.arange(len(self))
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            if drop_remainder and len(idx) < batch_size:
                return
            items = [self.item(int(i)) for i in idx]
            batch = {k: np.stack([it[k] for it in items]) for k in items[0]}
            if augment_scale > 0:
                for side in ("moving", "fixed"):
                    centre = [(s - 1) / 2 for s in batch["fixed_image"].shape[1:4]]
                    theta = warp.random_affine(len(idx), augment_scale, int(rng.integers(2**31)), centre)
                    batch[f"{side}_theta"] = np.asarray(theta)
            yield batch


def _spacing(ds, name: str, shape: Sequence[int]) -> tuple[float, float, float]:
    """Voxel size (mm) of the ``shape`` grid that covers the fixed volume of pair ``name``."""
    import nibabel as nib

    kind = "labels" if ("fixed", "labels") in ds.files else "images"
    path = ds.files["fixed", kind][name]
    try:
        img = nib.load(path)
    except Exception:  # noqa: BLE001 - not NIfTI (e.g. h5): unit spacing
        return (1.0, 1.0, 1.0)
    native, zooms = img.shape[:3], img.header.get_zooms()[:3]
    return tuple(float(z) * n / s for z, n, s in zip(zooms, native, shape, strict=True))  # type: ignore


# ------------------------------------------------------------------------------------------ losses
def _loss_fns(config: Mapping) -> dict:
    """``{kind: (weight, fn, kwargs)}`` for the terms with a non-zero weight. The label term's kwargs
    carry ``channel_weights`` (``[C]`` numpy, 0 for unused channels) for :func:`_loss_terms`."""
    out = {}
    for kind in _LOSS_KINDS:
        term = dict(config["train"]["loss"].get(kind) or {})
        weight = float(term.pop("weight", 0.0))
        name = term.pop("name", None)
        if weight != 0.0:  # NaN too: a NaN weight is reported by the first step, not hidden
            out[kind] = (weight, losses.get(name), term)
    return out


def _channel_weights(config: Mapping, channels: int) -> np.ndarray:
    """``train.loss.label.channel_weights`` padded with zeros to ``channels`` (default: all 1)."""
    given = (config["train"]["loss"].get("label") or {}).get("channel_weights")
    if given is None:
        return np.ones(channels, np.float32)
    w = np.zeros(channels, np.float32)
    w[: min(len(given), channels)] = np.asarray(given, np.float32)[:channels]
    if not (w >= 0).all() or not w.any():
        raise ValueError(f"train.loss.label.channel_weights must be >= 0 and not all 0, got {given}")
    return w


def _label_loss(fn, kwargs: dict, fixed_label, warped_label, weights):
    """Per-channel label loss, weighted mean over channels with ``weights`` ``[batch, c]``: ``[batch]``."""
    c = tf.shape(warped_label)[-1]
    b = tf.shape(warped_label)[0]

    def channels_first(x):
        x = tf.transpose(x, [0, 4, 1, 2, 3])
        return tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))

    per = tf.reshape(fn(channels_first(fixed_label), channels_first(warped_label), **kwargs), [b, c])
    return tf.reduce_sum(per * weights, -1) / tf.maximum(tf.reduce_sum(weights, -1), 1e-6)


def _loss_terms(fns: dict, batch: dict, out: dict) -> dict:
    """``{kind: [batch] values}`` (unweighted) and ``"total"`` (weighted sum). The label term uses the
    channels of ``out["warped_label"]``, with ``batch["label_weights"]`` ``[batch, c]`` (mask x weight)."""
    terms, total = {}, 0.0
    for kind, (weight, fn, kwargs) in fns.items():
        if kind == "image":
            value = fn(batch["fixed_image"], out["warped_image"], **kwargs)
        elif kind == "label":
            kwargs = {k: v for k, v in kwargs.items() if k != "channel_weights"}
            value = _label_loss(fn, kwargs, batch["fixed_label"], out["warped_label"], batch["label_weights"])
        else:
            value = fn(out["dvf"] if "dvf" in out else out["ddf"], **kwargs)
        terms[kind] = value
        total = total + weight * value
    terms["total"] = total
    return terms


# ------------------------------------------------------------------------------------------ checkpoints
def _ckpt_dir(log_dir: Path) -> Path:
    return Path(log_dir) / "checkpoints"


def latest_checkpoint(log_dir: str | os.PathLike) -> Path | None:
    """Weights file (``.weights.h5``) of the latest checkpoint in ``log_dir``, or None."""
    index = _ckpt_dir(Path(log_dir)) / "checkpoint.json"
    if not index.is_file():
        return None
    return _ckpt_dir(Path(log_dir)) / f"{json.loads(index.read_text())['latest']}.weights.h5"


def _save_checkpoint(log_dir: Path, tag: str, model, optimizer, state: dict) -> Path:
    folder = _ckpt_dir(log_dir)
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / f"{tag}.weights.h5"
    model.save_weights(weights)
    np.savez(folder / f"{tag}.optimizer.npz", *[np.asarray(v) for v in optimizer.variables])
    (folder / f"{tag}.json").write_text(json.dumps(state, indent=1))
    index = folder / "checkpoint.json"
    tags = json.loads(index.read_text())["all"] if index.is_file() else []
    tmp = index.with_suffix(".tmp")
    tmp.write_text(json.dumps({"latest": tag, "all": [*(t for t in tags if t != tag), tag]}, indent=1))
    os.replace(tmp, index)  # the index names a checkpoint only once all of its files are written
    return weights


def _restore(weights: Path, model, optimizer=None) -> dict:
    """Load weights (and optimiser state, history) of a checkpoint; returns its state dict."""
    model.load_weights(weights)
    stem = str(weights).removesuffix(".weights.h5")
    if optimizer is not None and os.path.isfile(stem + ".optimizer.npz"):
        optimizer.build(model.trainable_variables)
        saved = np.load(stem + ".optimizer.npz")
        values = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        if len(values) != len(optimizer.variables):
            raise ValueError(f"{stem}.optimizer.npz holds {len(values)} variables, the optimiser "
                             f"{len(optimizer.variables)}: the checkpoint is from another model or optimiser")
        for var, value in zip(optimizer.variables, values, strict=True):
            var.assign(value)
    state_file = Path(stem + ".json")
    return json.loads(state_file.read_text()) if state_file.is_file() else {}


def load_model(config: str | os.PathLike | Mapping, checkpoint: str | os.PathLike | None = None):
    """Model of ``config`` with the weights of ``checkpoint``: a ``.weights.h5`` or ``.keras`` file, a
    ``log_dir`` (its latest checkpoint), or None (the latest checkpoint of the config's ``log_dir``)."""
    cfg = load_config(config)
    path = Path(checkpoint) if checkpoint is not None else Path(cfg["log_dir"])
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"no checkpoint in {path} (expected {path}/checkpoints/checkpoint.json)")
        path = found
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found (expected a .weights.h5 or .keras file)")
    if path.name.endswith(".keras"):
        return keras.models.load_model(path)
    model = build_model(cfg)
    model.load_weights(path)
    return model


# ------------------------------------------------------------------------------------------ training
@dataclass
class TrainResult:
    """What :func:`train` returns. ``history``: per-epoch lists (``loss``, one per loss term,
    ``val_dice`` of label channel 0, ``seconds``); ``stopped``: ``"completed"``, ``"nan"`` or
    ``"interrupted"``; ``pairs_per_second``: training throughput of this call (excluding validation);
    ``pairs_per_epoch``: pairs seen per epoch (``steps * batch_size``)."""

    model: networks.RegistrationModel
    config: dict
    history: dict[str, list[float]]
    log_dir: Path
    checkpoint: Path | None
    stopped: str
    epochs_done: int
    seconds: float
    pairs_per_second: float
    pairs_per_epoch: int = 0
    is_standin: bool = False
    messages: list[str] = field(default_factory=list)


def _strategy(strategy):
    if strategy is not None:
        return strategy
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _mean_dice(model, pairs: _Pairs, batch_size: int) -> float:
    """Mean Dice of label channel 0 over the pairs (warped moving label thresholded at 0.5)."""
    scores = []
    for batch in pairs.batches(batch_size, 0, 0, shuffle=False, drop_remainder=False):
        out = model({k: batch[k] for k in ("moving_image", "fixed_image", "moving_label")}, training=False)
        for w, f in zip(np.asarray(out["warped_label"]), batch["fixed_label"], strict=True):
            scores.append(metrics.dice(w[..., 0], f[..., 0]))
    return float(np.mean(scores))


def train(
    config: str | os.PathLike | Mapping,
    resume: bool = False,
    log_dir: str | os.PathLike | None = None,
    overrides: Mapping | None = None,
    plot: bool = True,
    progress: bool = True,
    strategy: tf.distribute.Strategy | None = None,
    max_seconds: float | None = None,
) -> TrainResult:
    """Train a registration network; returns a :class:`TrainResult`.

    :param config: YAML path or dict (see the module docstring); ``overrides`` are merged over it.
    :param resume: continue from the latest checkpoint in ``log_dir`` (weights, optimiser state, epoch
        and history), so that training 2 + 2 epochs gives the same weights as 4 (up to float round-off).
    :param log_dir: overrides ``config["log_dir"]``.
    :param plot: a live loss plot (:class:`tutorialreg.viz.LiveLossPlot`; draws only inside a notebook).
    :param progress: a tqdm progress bar over all steps, with the running loss and validation Dice.
    :param strategy: a ``tf.distribute`` strategy; default: ``MirroredStrategy`` with several GPUs.
    :param max_seconds: stop (and checkpoint) after the first epoch that ends past this time budget.

    Validation (the ``valid`` split, when it has pairs and labels) reports the Dice of label channel 0
    each epoch. A checkpoint is written every ``save_period`` epochs, at the end, and on KeyboardInterrupt
    (the interrupted epoch is redone on resume). A non-finite loss stops training, restores the weights
    of the last completed epoch and keeps the last good checkpoint.
    """
    cfg = load_config(config, overrides)
    if log_dir is not None:
        cfg["log_dir"] = str(log_dir)
    log_dir = Path(cfg["log_dir"])
    t = cfg["train"]
    seed = int(t["seed"])
    keras.utils.set_random_seed(seed)
    sets = _datasets(cfg, ["train", "valid"] if cfg["dataset"]["labeled"] else ["train"])
    label_channels = cfg["dataset"]["label_channels"]
    train_pairs = _Pairs(sets["train"], label_channels)
    valid_pairs = None
    if "valid" in sets and len(sets["valid"]):
        valid_pairs = _Pairs(sets["valid"], train_pairs.channels or None)
    fns = _loss_fns(cfg)
    if "label" in fns and not train_pairs.labeled:
        raise ValueError("train.loss.label has a weight but dataset.labeled is false")
    batch_size = min(int(t["batch_size"]), len(train_pairs))
    steps = len(train_pairs) // batch_size
    strategy = _strategy(strategy)
    with strategy.scope():
        model = build_model(cfg)
        opt_cfg = dict(t["optimizer"])
        optimizer = keras.optimizers.get({"class_name": opt_cfg.pop("name"), "config": opt_cfg})
        optimizer.build(model.trainable_variables)

    start_epoch, history, messages = 0, {}, []
    if resume:
        found = latest_checkpoint(log_dir)
        if found is None:
            messages.append(f"resume: no checkpoint in {log_dir}; starting from scratch")
        else:
            state = _restore(found, model, optimizer)
            start_epoch, history = int(state.get("epochs_done", 0)), state.get("history", {})
            messages.append(f"resumed from {found.name} (epoch {start_epoch})")
    log_dir.mkdir(parents=True, exist_ok=True)
    import yaml

    (log_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    augment = float(t["augment_scale"])
    with_labels = train_pairs.labeled
    channel_weights = _channel_weights(cfg, train_pairs.channels) if with_labels else np.ones(0)
    used = tf.constant(np.flatnonzero(channel_weights), tf.int32)
    used_weights = tf.constant(channel_weights[channel_weights > 0], tf.float32)

    @tf.autograph.experimental.do_not_convert  # no tensor-dependent Python control flow inside
    def step_fn(batch):
        batch = dict(batch)
        use_labels = "label" in fns
        if use_labels:  # only the channels with a weight are augmented, warped and compared
            for key in ("moving_label", "fixed_label"):
                batch[key] = tf.gather(batch[key], used, axis=-1)
            batch["label_weights"] = tf.gather(batch["label_mask"], used, axis=-1) * used_weights
        if augment > 0:  # the same random affine for an image and its label, drawn per side
            for side in ("moving", "fixed"):
                ddf = warp.ddf_from_theta(batch[f"{side}_theta"], batch["fixed_image"].shape[1:4])
                batch[f"{side}_image"] = warp.warp(batch[f"{side}_image"], ddf)
                if use_labels:
                    batch[f"{side}_label"] = warp.warp(batch[f"{side}_label"], ddf)
        inputs = {k: batch[k] for k in ("moving_image", "fixed_image")}
        if use_labels:
            inputs["moving_label"] = batch["moving_label"]
        with tf.GradientTape() as tape:
            out = model(inputs, training=True)
            terms = _loss_terms(fns, batch, out)
            loss = tf.nn.compute_average_loss(terms["total"], global_batch_size=batch_size)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return {k: tf.nn.compute_average_loss(v, global_batch_size=batch_size) for k, v in terms.items()}

    @tf.function(jit_compile=bool(t["jit_compile"]), autograph=False)
    def train_step(batch):
        per_replica = strategy.run(step_fn, args=(batch,))
        return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}

    def data_for(epoch: int):
        gen = train_pairs.batches(batch_size, seed, epoch, augment_scale=augment)
        if strategy is tf.distribute.get_strategy():
            yield from gen
            return
        first = next(train_pairs.batches(batch_size, seed, epoch, augment_scale=augment))
        spec = {k: tf.TensorSpec(v.shape, tf.float32) for k, v in first.items()}
        ds = tf.data.Dataset.from_generator(
            lambda: train_pairs.batches(batch_size, seed, epoch, augment_scale=augment),
            output_signature=spec)
        yield from strategy.experimental_distribute_dataset(ds)

    live = None
    if plot:
        from tutorialreg import viz

        live = viz.LiveLossPlot(every=max(1, steps), log=True, title=f"training loss ({log_dir.name})")
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(t["epochs"]) * steps, initial=start_epoch * steps, unit="step",
                   desc="training", dynamic_ncols=True)
    stopped, last_ckpt = "completed", latest_checkpoint(log_dir) if resume else None
    train_seconds, pairs_seen, t_start = 0.0, 0, time.perf_counter()
    epoch = done = start_epoch
    good_weights = model.get_weights()
    try:
        for epoch in range(start_epoch, int(t["epochs"])):
            good_weights = model.get_weights()
            t_epoch = time.perf_counter()
            sums: dict[str, float] = {}
            for i, batch in enumerate(data_for(epoch)):
                values = {k: float(v) for k, v in train_step(batch).items()}
                if not all(math.isfinite(v) for v in values.values()):
                    raise FloatingPointError(f"epoch {epoch + 1}, step {i + 1}: loss terms {values}")
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                if live is not None:
                    live.update(epoch + (i + 1) / steps, **{("loss" if k == "total" else k): v
                                                           for k, v in values.items()})
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{values['total']:.4f}", refresh=False)
            seconds = time.perf_counter() - t_epoch
            train_seconds += seconds
            pairs_seen += steps * batch_size
            for k, v in sums.items():
                history.setdefault("loss" if k == "total" else k, []).append(v / steps)
            history.setdefault("seconds", []).append(seconds)
            if valid_pairs is not None:
                dice = _mean_dice(model, valid_pairs, batch_size)
                history.setdefault("val_dice", []).append(dice)
                if live is not None:
                    live.update(epoch + 1, val_dice=dice)
                if bar is not None:
                    bar.set_postfix(loss=f"{history['loss'][-1]:.4f}", val_dice=f"{dice:.3f}")
            done = epoch + 1
            out_of_time = max_seconds is not None and time.perf_counter() - t_start > max_seconds
            if done % int(t["save_period"]) == 0 or done == int(t["epochs"]) or out_of_time:
                last_ckpt = _save_checkpoint(log_dir, f"epoch-{done:04d}", model, optimizer,
                                             {"epochs_done": done, "history": history})
            if out_of_time:
                messages.append(f"stopped after epoch {done}: time budget of {max_seconds:.0f} s used")
                break
    except FloatingPointError as err:
        stopped, done = "nan", epoch
        model.set_weights(good_weights)
        messages.append(f"non-finite loss, training stopped ({err}); weights restored to the end of epoch "
                        f"{epoch}; last good checkpoint: {last_ckpt}")
    except KeyboardInterrupt:
        stopped, done = "interrupted", epoch
        last_ckpt = _save_checkpoint(log_dir, f"interrupted-epoch-{epoch:04d}", model, optimizer,
                                     {"epochs_done": epoch, "history": history, "interrupted": True})
        messages.append(f"interrupted in epoch {epoch + 1}; saved {last_ckpt.name} (resume redoes epoch "
                        f"{epoch + 1})")
    finally:
        if bar is not None:
            bar.close()
        if live is not None:
            live.close()
    if stopped == "completed":
        model.save(log_dir / "model.keras")
    (log_dir / "history.json").write_text(json.dumps(history, indent=1))
    for m in messages:
        print(m, file=sys.stderr if stopped == "nan" else sys.stdout)
    return TrainResult(
        model=model, config=cfg, history=history, log_dir=log_dir, checkpoint=last_ckpt, stopped=stopped,
        epochs_done=done, seconds=time.perf_counter() - t_start,
        pairs_per_second=pairs_seen / train_seconds if train_seconds else float("nan"),
        pairs_per_epoch=steps * batch_size,
        is_standin=train_pairs.is_standin, messages=messages,
    )


# ------------------------------------------------------------------------------------------ prediction
@dataclass
class PredictResult:
    """What :func:`predict` returns: ``rows`` (one dict per pair and label, as in ``metrics.csv``),
    ``summary`` (``{label: {metric: (mean, std)}}``), ``out_dir``, ``is_standin``, ``seconds_per_pair``
    (median model time per pair, excluding the first call) and, with ``return_arrays``, ``pairs``:
    one dict of numpy arrays per pair."""

    rows: list[dict]
    summary: dict[int, dict[str, tuple[float, float]]]
    out_dir: Path
    is_standin: bool
    seconds_per_pair: float
    pairs: list[dict] = field(default_factory=list)

    def table(self, label: int = 0) -> str:
        """A plain-text table of the per-pair metrics of one label (before -> after)."""
        head = f"{'pair':>10s} {'Dice':>13s} {'HD95 mm':>15s} {'centroid mm':>15s} {'folding %':>9s}"
        lines = [head]
        for r in self.rows:
            if r["label"] == label:
                lines.append(
                    f"{r['name']:>10s} {r['dice_before']:5.3f}->{r['dice']:5.3f} "
                    f"{r['hd95_before']:6.1f}->{r['hd95']:6.1f} "
                    f"{r['centroid_before']:6.1f}->{r['centroid']:6.1f} {100 * r['folding_fraction']:9.3f}"
                )
        s = self.summary[label]
        lines.append(
            f"{'mean':>10s} {s['dice_before'][0]:5.3f}->{s['dice'][0]:5.3f} "
            f"{s['hd95_before'][0]:6.1f}->{s['hd95'][0]:6.1f} "
            f"{s['centroid_before'][0]:6.1f}->{s['centroid'][0]:6.1f} {100 * s['folding_fraction'][0]:9.3f}"
        )
        return "\n".join(lines)


_METRIC_KEYS = ("dice_before", "dice", "hd95_before", "hd95", "centroid_before", "centroid",
                "folding_fraction", "seconds")
_PNG_KINDS = ("fixed_image", "fixed_label", "moving_image", "moving_label", "pred_fixed_image",
              "pred_fixed_label")


def _save_nifti(path: Path, array: np.ndarray, spacing: Sequence[float]) -> None:
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.asarray(array, np.float32), np.diag([*spacing, 1.0])), path)


def _save_pngs(folder: Path, kind: str, volume: np.ndarray) -> None:
    """``folder/kind/depth<k>_<kind>.png`` for every slice ``k`` along axis 2, 8-bit grey, [0, 1] -> 0-255."""
    from PIL import Image

    out = folder / kind
    out.mkdir(parents=True, exist_ok=True)
    vol = np.clip(np.asarray(volume, np.float32), 0.0, 1.0)
    for k in range(vol.shape[2]):
        Image.fromarray(np.round(vol[:, :, k] * 255).astype(np.uint8)).save(out / f"depth{k}_{kind}.png")


def predict(
    config: str | os.PathLike | Mapping,
    checkpoint: str | os.PathLike | None = None,
    split: str = "test",
    out_dir: str | os.PathLike | None = None,
    overrides: Mapping | None = None,
    png_labels: str | Sequence[int] = "all",
    return_arrays: bool = False,
) -> PredictResult:
    """Register every pair of a split with a trained model and write the results.

    :param checkpoint: see :func:`load_model` (default: the latest checkpoint in the config's ``log_dir``).
    :param out_dir: default ``<log_dir>/<split>``.
    :param png_labels: label channels to write PNG slices for (``"all"``, a list of ints, or ``()``).

    Writes per pair ``pair_<i>/{warped_image, warped_labels, ddf}.nii.gz`` (ddf in voxels, last axis
    (i, j, k)), per pair and label ``pair_<i>_label_<j>/<kind>/depth<k>_<kind>.png`` for the kinds
    ``fixed_image, fixed_label, moving_image, moving_label, pred_fixed_image, pred_fixed_label`` (slices
    along axis 2), and ``metrics.csv``: Dice, HD95 (mm), centroid distance (mm) before and after
    registration, folding fraction and model seconds, one row per pair and label, then ``mean`` and
    ``std`` rows per label. Labels are compared after thresholding at 0.5 on the fixed grid.
    """
    cfg = load_config(config, overrides)
    model = load_model(cfg, checkpoint)
    ds = _datasets(cfg, [split])[split]
    pairs = _Pairs(ds, cfg["dataset"]["label_channels"])
    out_dir = Path(out_dir) if out_dir is not None else Path(cfg["log_dir"]) / split
    out_dir.mkdir(parents=True, exist_ok=True)
    shape = tuple(cfg["dataset"]["image_shape"])
    rows, kept, times = [], [], []
    for i, name in enumerate(pairs.names):
        it = pairs.items[i]
        inputs = {"moving_image": it["moving_image"][None], "fixed_image": it["fixed_image"][None]}
        if pairs.labeled:
            inputs["moving_label"] = it["moving_label"][None]
        model(inputs, training=False) if i == 0 else None  # warm-up: graph building is not inference time
        tic = time.perf_counter()
        out = {k: np.asarray(v)[0] for k, v in model(inputs, training=False).items()}
        seconds = time.perf_counter() - tic
        times.append(seconds)
        spacing = _spacing(ds, name, shape)
        folder = out_dir / f"pair_{i}"
        folder.mkdir(exist_ok=True)
        _save_nifti(folder / "warped_image.nii.gz", out["warped_image"], spacing)
        _save_nifti(folder / "ddf.nii.gz", out["ddf"], spacing)
        folding = metrics.folding_fraction(out["ddf"])
        if pairs.labeled:
            warped = out["warped_label"]
            _save_nifti(folder / "warped_labels.nii.gz", warped, spacing)
            fixed, moving = it["fixed_label"], it["moving_label"]
            n = fixed.shape[-1]
            before = (metrics.dice(moving, fixed), metrics.hausdorff95(moving, fixed, spacing),
                      metrics.centroid_distance(moving, fixed, spacing))
            after = (metrics.dice(warped, fixed), metrics.hausdorff95(warped, fixed, spacing),
                     metrics.centroid_distance(warped, fixed, spacing))
            for j in range(n):
                rows.append({
                    "pair": i, "name": name, "label": j,
                    "dice_before": float(before[0][j]), "dice": float(after[0][j]),
                    "hd95_before": float(before[1][j]), "hd95": float(after[1][j]),
                    "centroid_before": float(before[2][j]), "centroid": float(after[2][j]),
                    "folding_fraction": folding, "seconds": seconds,
                })
            labels = range(n) if png_labels == "all" else [j for j in png_labels if j < n]
            for j in labels:
                sub = out_dir / f"pair_{i}_label_{j}"
                vols = {"fixed_image": it["fixed_image"], "moving_image": it["moving_image"],
                        "pred_fixed_image": out["warped_image"], "fixed_label": fixed[..., j],
                        "moving_label": moving[..., j], "pred_fixed_label": warped[..., j]}
                for kind in _PNG_KINDS:
                    _save_pngs(sub, kind, vols[kind])
        else:
            rows.append({"pair": i, "name": name, "label": -1, "folding_fraction": folding,
                         "seconds": seconds})
        if return_arrays:
            kept.append({"name": name, **{k: v for k, v in it.items()}, **out, "spacing": spacing})
    summary = _summarise(rows)
    _write_csv(out_dir / "metrics.csv", rows, summary)
    return PredictResult(rows, summary, out_dir, pairs.is_standin,
                         float(np.median(times[1:] if len(times) > 1 else times)), kept)


def _summarise(rows: list[dict]) -> dict[int, dict[str, tuple[float, float]]]:
    """``{label: {metric: (mean, std)}}`` ignoring NaN (distances to a label that is empty)."""
    import warnings

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, which is the answer
        for label in sorted({r["label"] for r in rows}):
            sel = [r for r in rows if r["label"] == label]
            out[label] = {
                k: (float(np.nanmean([r[k] for r in sel])), float(np.nanstd([r[k] for r in sel])))
                for k in _METRIC_KEYS if k in sel[0]
            }
    return out


def _write_csv(path: Path, rows: list[dict], summary: dict) -> None:
    keys = ["pair", "name", "label", *_METRIC_KEYS]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys, restval="")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
        for stat, idx in (("mean", 0), ("std", 1)):
            for label, values in summary.items():
                writer.writerow({"pair": stat, "name": stat, "label": label,
                                 **{k: f"{v[idx]:.6g}" for k, v in values.items()}})


def prediction_figure(out_dir: str | os.PathLike, pair: int = 0, label: int = 0,
                      depths: Sequence[int] | None = None, title: str | None = None):
    """The tutorial's 8-panel rows from :func:`predict`'s PNGs: fixed label, fixed image, moving label,
    moving image, warped label, warped image, comparison (warped vs fixed label: light grey both, orange
    only warped, blue only fixed; :func:`tutorialreg.viz.label_comparison`) and warped minus fixed image,
    one row per depth (slice along axis 2). Returns a matplotlib Figure (no pyplot state)."""
    import matplotlib.image as mpimg
    from matplotlib.figure import Figure

    from tutorialreg import viz

    folder = Path(out_dir) / f"pair_{pair}_label_{label}"
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} not found: run predict() with this pair and label first")

    def png(kind: str, k: int) -> np.ndarray:
        return mpimg.imread(folder / kind / f"depth{k}_{kind}.png")

    n = len(list((folder / "fixed_image").glob("*.png")))
    depths = list(depths) if depths is not None else [int(round(n * q)) for q in (0.3, 0.5, 0.7)]
    titles = ["fixed label", "fixed image", "moving label", "moving image", "warped moving label",
              "warped moving image", "comparison", "warped - fixed"]
    fig = Figure(figsize=(16, 2.2 * len(depths) + 0.6), layout="constrained")
    axes = fig.subplots(len(depths), 8, squeeze=False)
    for row, k in zip(axes, depths, strict=True):
        panels = [png(kind, k) for kind in ("fixed_label", "fixed_image", "moving_label", "moving_image",
                                            "pred_fixed_label", "pred_fixed_image")]
        for ax, img in zip(row, panels, strict=False):
            ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        row[6].imshow(viz.label_comparison(panels[4], panels[0]), interpolation="nearest")
        viz.difference(panels[5], panels[1], ax=row[7])
        row[7].set(title="", xlabel="", ylabel="")
        row[0].set_ylabel(f"depth {k}")
    for ax, t in zip(axes[0], titles, strict=True):
        ax.set_title(t, fontsize=10)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title or f"{folder.name}: slices along axis 2")
    return fig


# ------------------------------------------------------------------------------------------ command line
def _parser(prog: str, doc: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=doc)
    parser.add_argument("--config", required=True, help="YAML config (see tutorialreg.train)")
    parser.add_argument("--log-dir", default=None, help="overrides the config's log_dir")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tutorialreg.train --config C [--resume] [--epochs N] [--log-dir D]``."""
    parser = _parser("python -m tutorialreg.train", "Train a registration network from a YAML config.")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    parser.add_argument("--epochs", type=int, default=None, help="overrides train.epochs")
    args = parser.parse_args(argv)
    overrides = {"train": {"epochs": args.epochs}} if args.epochs is not None else None
    result = train(args.config, resume=args.resume, log_dir=args.log_dir, overrides=overrides, plot=False)
    print(f"{result.stopped}: {result.epochs_done} epochs, {result.pairs_per_second:.2f} pairs/s, "
          f"checkpoint {result.checkpoint}")
    return {"completed": 0, "nan": 1, "interrupted": 130}[result.stopped]


def predict_main(argv: Sequence[str] | None = None) -> int:
    """``python -m tutorialreg.predict --config C [--checkpoint P] [--split test] [--out D]``."""
    parser = _parser("python -m tutorialreg.predict", "Register a split's pairs with a trained network.")
    parser.add_argument("--checkpoint", default=None, help=".weights.h5 / .keras file or a log dir")
    parser.add_argument("--split", default="test", help="train, valid or test (default test)")
    parser.add_argument("--out", default=None, help="output folder (default <log_dir>/<split>)")
    args = parser.parse_args(argv)
    overrides = {"log_dir": args.log_dir} if args.log_dir else None
    result = predict(args.config, args.checkpoint, args.split, args.out, overrides=overrides)
    for label in result.summary:
        if label >= 0:
            print(result.table(label))
    print(f"wrote {result.out_dir} ({result.seconds_per_pair:.3f} s per pair)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
