"""Training of registration networks from a config (:mod:`tutorialreg.config`), shaped like DeepReg's.

:func:`train` reads like the loop it runs: :class:`Trainer` builds the model, its optimiser and the loss
terms from the config; :meth:`Trainer.step` is one compiled gradient step on a batch; :meth:`Trainer.epoch`
runs the steps of one epoch and validates; :meth:`Trainer.finish` writes the final model and history.

Unsupervised training: image weight > 0, label weight 0. Weakly-supervised: label weight > 0, image weight
0 (labels are needed only in training). Combined: both. Label losses (``label``, ``centroid``) are computed
per label channel and averaged over the channels a pair really has, weighted by the term's
``channel_weights``. ``segmentation`` trains the backbone's extra ``seg_channels`` outputs to segment label
0 of the fixed (and the moving) image: an auxiliary task that the registration does not use.

Outputs under ``log_dir``: ``config.yaml`` (the resolved config), ``checkpoints/`` (see
:mod:`tutorialreg.checkpoints`), ``model.keras`` (the final model, loadable by ``keras.models.load_model``),
``history.json``. An interrupted run (Ctrl-C) saves the state at the end of the last completed epoch, so a
resumed run continues exactly as if it had not been interrupted.

Command line: ``python -m tutorialreg.train --config paired_mrus_prostate [--resume] [--epochs N]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from tutorialreg import checkpoints, losses, metrics, networks, warp
from tutorialreg.callbacks import Callback, ProgressBar, check_callbacks, close_all, notify
from tutorialreg.config import LABEL_KINDS, LOSS_KINDS, build_model, datasets, load_config
from tutorialreg.predict import predict

__all__ = ["TrainResult", "Trainer", "load_config", "predict", "train"]


# ------------------------------------------------------------------------------------------ losses
def _loss_fns(config: Mapping) -> dict:
    """``{kind: (weight, fn, kwargs)}`` for the loss terms with a non-zero weight."""
    out = {}
    for kind in LOSS_KINDS:
        term = dict(config["train"]["loss"].get(kind) or {})
        weight = float(term.pop("weight", 0.0))
        name = term.pop("name", None)
        term.pop("channel_weights", None)
        if weight:
            out[kind] = (weight, losses.get(name), term)
    return out


def _channel_weights(config: Mapping, channels: int, kind: str = "label") -> np.ndarray:
    """``train.loss.<kind>.channel_weights`` padded with zeros to ``channels`` (default: all 1)."""
    given = (config["train"]["loss"].get(kind) or {}).get("channel_weights")
    if given is None:
        return np.ones(channels, np.float32)
    w = np.zeros(channels, np.float32)
    w[: min(len(given), channels)] = np.asarray(given, np.float32)[:channels]
    return w


def _label_loss(fn, kwargs: dict, fixed_label, warped_label, weights):
    """Per-channel label loss, weighted mean over channels with ``weights`` ``[batch, c]``: ``[batch]``."""
    c, b = tf.shape(warped_label)[-1], tf.shape(warped_label)[0]

    def channels_first(x):
        x = tf.transpose(x, [0, 4, 1, 2, 3])
        return tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], 0))

    per = tf.reshape(fn(channels_first(fixed_label), channels_first(warped_label), **kwargs), [b, c])
    return tf.reduce_sum(per * weights, -1) / tf.maximum(tf.reduce_sum(weights, -1), 1e-6)


def _loss_terms(fns: dict, batch: dict, out: dict) -> dict:
    """``{kind: [batch] values}`` (unweighted) and ``"total"`` (weighted sum)."""
    terms, total = {}, 0.0
    for kind, (weight, fn, kwargs) in fns.items():
        if kind == "image":
            value = fn(batch["fixed_image"], out["warped_image"], **kwargs)
        elif kind in LABEL_KINDS:
            weights = batch[f"{kind}_weights"]
            value = _label_loss(fn, kwargs, batch["fixed_label"], out["warped_label"], weights)
        elif kind == "segmentation":  # label 0 of the fixed (and the moving) image from the extra outputs
            n = out["seg_logits"].shape[-1]
            target = tf.stack([batch["fixed_label"][..., 0], batch["moving_label"][..., 0]], axis=-1)[..., :n]
            value = fn(target, tf.sigmoid(out["seg_logits"]), **kwargs)
        else:
            value = fn(out["dvf"] if "dvf" in out else out["ddf"], **kwargs)
        terms[kind] = value
        total = total + weight * value
    terms["total"] = total
    return terms


# ------------------------------------------------------------------------------------------ result
@dataclass
class TrainResult:
    """What :func:`train` returns.

    :ivar model: the trained model, registering ``dataset.image_shape`` images.
    :ivar history: per-epoch lists: ``loss``, one per loss term, ``val_dice`` (label channel 0 of the
        validation pairs, when there are any), ``seconds``.
    :ivar stopped: ``"completed"``, ``"nan"`` (a non-finite loss stopped training), ``"interrupted"``
        (Ctrl-C) or ``"save_failed"`` (a checkpoint could not be written, e.g. a full disk).
    :ivar pairs_per_second: training throughput of this call (validation excluded).
    :ivar pairs_per_epoch: pairs seen per epoch (``steps * batch_size``).
    """

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


def _optimizer(settings: Mapping, decay: str, steps: int) -> keras.optimizers.Optimizer:
    """The Keras optimiser of ``train.optimizer``; ``decay="cosine"``: its learning rate falls from the given
    value to 0 along a half cosine over ``steps`` steps (resumed runs continue on the curve: the step
    counter is part of the optimiser's checkpointed state)."""
    opt = dict(settings)
    name = opt.pop("name")
    if decay == "cosine":
        rate = float(opt["learning_rate"])
        opt["learning_rate"] = keras.optimizers.schedules.CosineDecay(rate, max(steps, 1))
    return type(keras.optimizers.get({"class_name": name, "config": {}}))(**opt)


def _strategy(strategy):
    if strategy is not None:
        return strategy
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


# ------------------------------------------------------------------------------------------ trainer
class Trainer:
    """The pieces of one training run: data, model, optimiser, loss terms and the compiled step.

    :param config: a resolved config (:func:`tutorialreg.config.load_config`).
    :param strategy: a ``tf.distribute`` strategy; default: ``MirroredStrategy`` with several GPUs.
    """

    def __init__(self, config: dict, strategy: tf.distribute.Strategy | None = None):
        from tutorialreg import data

        self.config, t = config, config["train"]
        self.log_dir = Path(config["log_dir"])
        self.seed, self.epochs = int(t["seed"]), int(t["epochs"])
        keras.utils.set_random_seed(self.seed)
        channels = config["dataset"]["label_channels"]
        self.shape = tuple(t["train_shape"] or config["dataset"]["image_shape"])
        train_set = datasets(config, ["train"], self.shape)["train"]
        self.train_pairs = data.PairArrays(train_set, channels)
        valid = self._validation_set(config, self.shape)
        self.valid_pairs = None
        if valid is not None and len(valid):
            self.valid_pairs = data.PairArrays(valid, self.train_pairs.channels or None)
        self.fns = _loss_fns(config)
        if set(self.fns) & {*LABEL_KINDS, "segmentation"} and not self.train_pairs.labeled:
            raise ValueError("train.loss label, centroid or segmentation has a weight but dataset.labeled "
                             "is false")
        if "centroid" in self.fns and "spacing" not in self.fns["centroid"][2]:  # mm on the training grid
            self.fns["centroid"][2]["spacing"] = train_set.spacing(self.train_pairs.names[0])
        self.batch_size = self._batch_size(int(t["batch_size"]))
        self.steps = len(self.train_pairs) // self.batch_size
        self.augment = {"augment_scale": float(t["augment_scale"]), "augment_rigid": t["augment_rigid"],
                        "augment_flip": t["augment_flip"]}
        self.strategy = _strategy(strategy)
        with self.strategy.scope():
            self.model = build_model(config, training=True)
            self.optimizer = _optimizer(t["optimizer"], t["lr_decay"], self.epochs * self.steps)
            self.optimizer.build(self.model.trainable_variables)
        self._label_kinds = [k for k in LABEL_KINDS if k in self.fns]
        if "segmentation" in self.fns and "label" not in self._label_kinds:
            self._label_kinds.insert(0, "label")  # label 0 must be gathered: zero weight for the label term
        weights = {k: _channel_weights(config, self.train_pairs.channels, k) for k in self._label_kinds}
        if "segmentation" in self.fns and not any(w[0] for w in weights.values()):
            raise ValueError("train.loss.segmentation segments label 0: keep channel 0 in channel_weights")
        used = np.any([w > 0 for w in weights.values()], axis=0) if weights else np.zeros(0, bool)
        self._used = tf.constant(np.flatnonzero(used), tf.int32)  # channel 0 first when it is used
        self._used_weights = {k: tf.constant(w[used], tf.float32) for k, w in weights.items()}
        self._compiled = tf.function(self._replica_step_all, jit_compile=bool(t["jit_compile"]),
                                     autograph=False)

    @staticmethod
    def _validation_set(config: dict, shape: Sequence[int]):
        """The ``valid`` split of a labelled data set on the ``shape`` grid, or None when it has none
        (training then reports no validation Dice)."""
        if not config["dataset"]["labeled"]:
            return None
        try:
            return datasets(config, ["valid"], shape)["valid"]
        except FileNotFoundError:
            return None

    def _batch_size(self, wanted: int) -> int:
        if wanted > len(self.train_pairs):
            warnings.warn(f"train.batch_size {wanted} is larger than the {len(self.train_pairs)} training "
                          f"pairs; using {len(self.train_pairs)}", stacklevel=3)
        return min(wanted, len(self.train_pairs))

    # -- one step ---------------------------------------------------------------------------------
    @tf.autograph.experimental.do_not_convert  # no tensor-dependent Python control flow inside
    def _replica_step(self, batch: dict) -> dict:
        batch = dict(batch)
        use_labels = bool(self._label_kinds)
        if use_labels:  # only the channels with a weight are augmented, warped and compared
            for key in ("moving_label", "fixed_label"):
                batch[key] = tf.gather(batch[key], self._used, axis=-1)
            mask = tf.gather(batch["label_mask"], self._used, axis=-1)
            for kind in self._label_kinds:
                batch[f"{kind}_weights"] = mask * self._used_weights[kind]
        if "moving_theta" in batch:  # augmentation: one random affine per side, for an image and its label
            for side in ("moving", "fixed"):
                ddf = warp.ddf_from_theta(batch[f"{side}_theta"], batch["fixed_image"].shape[1:4])
                batch[f"{side}_image"] = warp.warp(batch[f"{side}_image"], ddf)
                if use_labels:
                    batch[f"{side}_label"] = warp.warp(batch[f"{side}_label"], ddf)
        inputs = {k: batch[k] for k in ("moving_image", "fixed_image")}
        if use_labels:
            inputs["moving_label"] = batch["moving_label"]
        with tf.GradientTape() as tape:
            out = self.model(inputs, training=True)
            terms = _loss_terms(self.fns, batch, out)
            loss = tf.nn.compute_average_loss(terms["total"], global_batch_size=self.batch_size)
        grads = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables, strict=True))
        return {k: tf.nn.compute_average_loss(v, global_batch_size=self.batch_size) for k, v in terms.items()}

    def _replica_step_all(self, batch: dict) -> dict:
        per_replica = self.strategy.run(self._replica_step, args=(batch,))
        total = tf.distribute.ReduceOp.SUM
        return {k: self.strategy.reduce(total, v, axis=None) for k, v in per_replica.items()}

    def step(self, batch: dict) -> dict[str, float]:
        """One gradient step on ``batch`` (numpy arrays of :meth:`PairArrays.batches`); returns the batch's
        mean loss terms (``total``, ``image``, ``label``, ``regularization`` as configured)."""
        return {k: float(v) for k, v in self._compiled(batch).items()}

    # -- one epoch --------------------------------------------------------------------------------
    def _batches(self, epoch: int):
        def gen():
            return self.train_pairs.batches(self.batch_size, self.seed, epoch, **self.augment)

        if self.strategy is tf.distribute.get_strategy():
            yield from gen()
            return
        first = next(gen())
        spec = {k: tf.TensorSpec(v.shape, tf.float32) for k, v in first.items()}
        ds = tf.data.Dataset.from_generator(gen, output_signature=spec)
        yield from self.strategy.experimental_distribute_dataset(ds)

    def validation_dice(self) -> float:
        """Mean Dice of label channel 0 over the validation pairs (warped label thresholded at 0.5)."""
        scores = []
        for batch in self.valid_pairs.batches(self.batch_size, 0, 0, shuffle=False, drop_remainder=False):
            out = self.model({k: batch[k] for k in ("moving_image", "fixed_image", "moving_label")},
                             training=False)
            for w, f in zip(np.asarray(out["warped_label"]), batch["fixed_label"], strict=True):
                scores.append(metrics.dice(w[..., 0], f[..., 0]))
        return float(np.mean(scores))

    def epoch(self, epoch: int, history: dict, callbacks: Sequence[Callback]) -> float:
        """Run the steps of ``epoch`` (0-based), append its means to ``history``; returns its seconds.

        :raises FloatingPointError: naming the epoch and step when a loss term is not finite.
        """
        tic, sums = time.perf_counter(), {}
        for i, batch in enumerate(self._batches(epoch)):
            values = self.step(batch)
            if not all(math.isfinite(v) for v in values.values()):
                raise FloatingPointError(f"epoch {epoch + 1}, step {i + 1}: loss terms {values}")
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            notify(callbacks, epoch + (i + 1) / self.steps,
                   {("loss" if k == "total" else k): v for k, v in values.items()})
        seconds = time.perf_counter() - tic
        for k, v in sums.items():
            history.setdefault("loss" if k == "total" else k, []).append(v / self.steps)
        history.setdefault("seconds", []).append(seconds)
        if self.valid_pairs is not None:
            history.setdefault("val_dice", []).append(self.validation_dice())
            notify(callbacks, epoch + 1, {"val_dice": history["val_dice"][-1]})
        return seconds

    # -- state ------------------------------------------------------------------------------------
    def snapshot(self) -> tuple[list, list]:
        """Weights and optimiser variables (numpy copies), to return to."""
        return self.model.get_weights(), [np.array(v) for v in self.optimizer.variables]

    def rewind(self, snapshot: tuple[list, list]) -> None:
        """Return the model and the optimiser (step counter included) to a :meth:`snapshot`."""
        weights, opt = snapshot
        self.model.set_weights(weights)
        for var, value in zip(self.optimizer.variables, opt, strict=True):
            var.assign(value)

    def save(self, tag: str, epochs_done: int, history: dict, **extra) -> Path:
        """Checkpoint the current model and optimiser as ``tag`` (see :mod:`tutorialreg.checkpoints`)."""
        state = {"epochs_done": epochs_done, "history": history, **extra}
        return checkpoints.save(self.log_dir, tag, self.model, self.optimizer, state)

    def deployed_model(self) -> networks.RegistrationModel:
        """The trained model itself, or, when it trained on ``train.train_shape``, the model with its
        weights that registers ``dataset.image_shape`` images (see :func:`tutorialreg.config.build_model`)."""
        if self.shape == tuple(self.config["dataset"]["image_shape"]):
            return self.model
        model = build_model(self.config)
        model.set_weights(self.model.get_weights())
        return model

    def finish(self, stopped: str, history: dict) -> list[str]:
        """Write ``model.keras`` (completed runs) and ``history.json``, each atomically; returns messages
        about anything that could not be written (the checkpoints stay)."""
        messages = []
        if stopped == "completed":
            tmp = self.log_dir / ".model.tmp.keras"
            try:
                self.deployed_model().save(tmp)
                os.replace(tmp, self.log_dir / "model.keras")
            except OSError as err:
                messages.append(f"could not write {self.log_dir / 'model.keras'} ({err}); the final "
                                "checkpoint holds the same weights")
            finally:
                tmp.unlink(missing_ok=True)
        try:
            checkpoints.write_atomic(self.log_dir / "history.json", json.dumps(history, indent=1).encode())
        except checkpoints.CheckpointError as err:
            messages.append(str(err))
        return messages


# ------------------------------------------------------------------------------------------ the loop
def _resume(trainer: Trainer, messages: list[str]) -> tuple[int, dict, Path | None]:
    try:
        path, state, skipped = checkpoints.restore_latest(trainer.log_dir, trainer.model, trainer.optimizer)
    except checkpoints.CheckpointError as err:
        messages.append(f"resume: {err}; starting from scratch")
        return 0, {}, None
    messages.extend(f"resume: skipped {s}" for s in skipped)
    start = int(state.get("epochs_done", 0))
    messages.append(f"resumed from {path.name.removesuffix(checkpoints.SUFFIX)} (epoch {start})")
    return start, state.get("history", {}), path


def train(config, resume: bool = False, log_dir: str | os.PathLike | None = None,
          overrides: Mapping | None = None, callbacks: Sequence[Callback] = (), progress: bool = True,
          strategy: tf.distribute.Strategy | None = None, max_seconds: float | None = None) -> TrainResult:
    """Train a registration network; returns a :class:`TrainResult`.

    :param config: a packaged config's name, a YAML path or a dict (:func:`tutorialreg.config.load_config`);
        ``overrides`` are merged over it, ``log_dir`` overrides its ``log_dir``.
    :param resume: continue from the newest checkpoint in ``log_dir`` that loads (weights, optimiser
        state, epoch and history): an interrupted-and-resumed run ends with the same weights as an
        uninterrupted one.
    :param callbacks: objects with ``on_step(step, terms)`` and ``close()`` (e.g.
        ``viz.LiveLossPlot(xlabel="epoch", secondary=("val_dice",))``): ``step`` is a fractional epoch;
        ``terms`` the step's loss terms, and ``val_dice`` at the end of each epoch.
    :param progress: a progress bar over all steps.
    :param max_seconds: stop (and checkpoint) after the first epoch that ends past this time budget.

    A checkpoint is written every ``save_period`` epochs, at the end, and when interrupted (the state of
    the last completed epoch). A non-finite loss stops training with the weights of the last completed
    epoch and keeps the last good checkpoint.
    """
    cfg = load_config(config, overrides)
    if log_dir is not None:
        cfg["log_dir"] = str(log_dir)
    callbacks = check_callbacks(callbacks)
    trainer = Trainer(cfg, strategy)
    messages: list[str] = []
    start, history, last_ckpt = _resume(trainer, messages) if resume else (0, {}, None)
    trainer.log_dir.mkdir(parents=True, exist_ok=True)
    import yaml

    checkpoints.write_atomic(trainer.log_dir / "config.yaml", yaml.safe_dump(cfg, sort_keys=False).encode())
    bar = ProgressBar(trainer.epochs * trainer.steps, "training", initial=start * trainer.steps) \
        if progress else None
    step_callbacks = [*callbacks, *([_EpochBar(bar, trainer.steps)] if bar is not None else [])]
    stopped, done, train_seconds, t_start = "completed", start, 0.0, time.perf_counter()
    snapshot = trainer.snapshot()  # always the state after `done` epochs
    try:
        for epoch in range(start, trainer.epochs):
            train_seconds += trainer.epoch(epoch, history, step_callbacks)
            done, snapshot = epoch + 1, trainer.snapshot()
            out_of_time = max_seconds is not None and time.perf_counter() - t_start > max_seconds
            if done % int(cfg["train"]["save_period"]) == 0 or done == trainer.epochs or out_of_time:
                last_ckpt = trainer.save(f"epoch-{done:04d}", done, history)
            if out_of_time:
                messages.append(f"stopped after epoch {done}: time budget of {max_seconds:.0f} s used")
                break
    except FloatingPointError as err:
        stopped = "nan"
        trainer.rewind(snapshot)
        messages.append(f"non-finite loss, training stopped ({err}); weights restored to the end of epoch "
                        f"{done}; last good checkpoint: {last_ckpt}")
    except checkpoints.CheckpointError as err:
        stopped = "save_failed"
        messages.append(f"training stopped after epoch {done}: {err}")
    except KeyboardInterrupt:
        stopped = "interrupted"
        trainer.rewind(snapshot)  # the state after the last completed epoch: resume continues exactly
        history = {k: v[:done] for k, v in history.items()}
        last_ckpt = trainer.save(f"interrupted-epoch-{done:04d}", done, history, interrupted=True)
        messages.append(f"interrupted in epoch {done + 1}; saved {last_ckpt.name} with the state of epoch "
                        f"{done} (resume continues with epoch {done + 1})")
    finally:
        close_all([*callbacks, *([bar] if bar is not None else [])])
    messages += trainer.finish(stopped, history)
    for m in messages:
        print(m, file=sys.stderr if stopped in ("nan", "save_failed") else sys.stdout)
    return TrainResult(
        model=trainer.deployed_model(), config=cfg, history=history, log_dir=trainer.log_dir,
        checkpoint=last_ckpt,
        stopped=stopped, epochs_done=done, seconds=time.perf_counter() - t_start,
        pairs_per_second=(done - start) * trainer.steps * trainer.batch_size / train_seconds if train_seconds
        else float("nan"),
        pairs_per_epoch=trainer.steps * trainer.batch_size, is_standin=trainer.train_pairs.is_standin,
        messages=messages)


class _EpochBar:
    """Adapts the progress bar to a fractional-epoch callback (it counts steps)."""

    def __init__(self, bar: ProgressBar, steps: int):
        self.bar, self.steps = bar, steps

    def on_step(self, step: float, terms: Mapping[str, float]) -> None:
        shown = {k: v for k, v in terms.items() if k in ("loss", "val_dice")}
        self.bar.on_step(round(step * self.steps), shown)

    def close(self) -> None:  # the loop closes the bar itself
        pass



# ------------------------------------------------------------------------------------------ command line
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tutorialreg.train --config C [--resume] [--epochs N] [--log-dir D]``."""
    parser = argparse.ArgumentParser(prog="python -m tutorialreg.train",
                                     description="Train a registration network from a config.")
    parser.add_argument("--config", required=True, help="a packaged config's name or a YAML file")
    parser.add_argument("--log-dir", default=None, help="overrides the config's log_dir")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    parser.add_argument("--epochs", type=int, default=None, help="overrides train.epochs")
    args = parser.parse_args(argv)
    overrides = {"train": {"epochs": args.epochs}} if args.epochs is not None else None
    result = train(args.config, resume=args.resume, log_dir=args.log_dir, overrides=overrides)
    print(f"{result.stopped}: {result.epochs_done} epochs, {result.pairs_per_second:.2f} pairs/s, "
          f"checkpoint {result.checkpoint}")
    return {"completed": 0, "nan": 1, "save_failed": 1, "interrupted": 130}[result.stopped]


if __name__ == "__main__":
    sys.exit(main())
