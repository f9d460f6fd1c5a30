"""Prediction with a trained registration network: register every pair of a split, score it, write it.

:func:`predict` loads the model of a config (:func:`load_model`), registers each pair in one forward pass,
optionally refines each field with a few classical steps (``refine_steps``, see
:func:`tutorialreg.optimise.refine_ddf`), scores it (:mod:`tutorialreg.evaluate`) and writes, per pair,
``pair_<i>/{warped_image, warped_labels, ddf}.nii.gz`` (ddf in voxels, last axis (i, j, k)), the tutorial's
PNG slices ``pair_<i>_label_<j>/<kind>/depth<k>_<kind>.png`` for the kinds ``fixed_image, fixed_label,
moving_image, moving_label, pred_fixed_image, pred_fixed_label`` (slices along axis 2), and
``metrics.csv`` (one row per pair and label, then ``mean`` and ``std`` rows per label).

Command line: ``python -m tutorialreg.predict --config paired_mrus_prostate [--checkpoint P] [--split test]``.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tutorialreg import checkpoints, evaluate
from tutorialreg.checks import check_finite
from tutorialreg.config import build_model, datasets, load_config

__all__ = ["PredictResult", "load_model", "predict", "write_csv", "write_nifti", "write_pngs"]

METRIC_KEYS = ("dice_before", "dice", "hd95_before", "hd95", "centroid_before", "centroid",
               "folding_fraction", "seconds", "refine_seconds")
PNG_KINDS = ("fixed_image", "fixed_label", "moving_image", "moving_label", "pred_fixed_image",
             "pred_fixed_label")


# ------------------------------------------------------------------------------------------ result
@dataclass
class PredictResult:
    """What :func:`predict` returns.

    :ivar rows: one dict per pair and label, as in ``metrics.csv``.
    :ivar summary: ``{label: {metric: (mean, std)}}``, NaN ignored.
    :ivar seconds_per_pair: median network time per pair (the first call, which builds the graph, excluded).
    :ivar pairs: with ``return_arrays``, one dict of numpy arrays per pair: the inputs, the model's outputs
        (``ddf``, ``warped_image``, ``warped_label``), ``spacing`` (mm), ``name`` and ``seconds`` (network and
        refinement time).
    """

    rows: list[dict]
    summary: dict[int, dict[str, tuple[float, float]]]
    out_dir: Path | None
    is_standin: bool
    seconds_per_pair: float
    pairs: list[dict] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """The pairs' names, in order."""
        return list(dict.fromkeys(r["name"] for r in self.rows))

    def values(self, key: str, label: int | str = 0, per_pair: bool = False) -> np.ndarray:
        """One metric: of label channel ``label`` (one value per pair), or of every landmark
        (``label="landmarks"``: all channels >= 1, pooled over pairs; with ``per_pair``, their mean per
        pair, NaN for a pair without landmarks)."""
        if label == "landmarks":
            rows = [r for r in self.rows if r["label"] > 0]
        else:
            rows = [r for r in self.rows if r["label"] == label]
        if rows and key not in rows[0]:
            raise KeyError(f"no metric {key!r}; the rows hold {sorted(rows[0])}")
        if not per_pair:
            return np.array([r[key] for r in rows], dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a pair without landmarks gives NaN
            return np.array([np.nanmean([r[key] for r in rows if r["name"] == n] or [np.nan])
                             for n in self.names], dtype=float)

    def table(self, label: int = 0) -> str:
        """A plain-text table of the per-pair metrics of one label (before -> after)."""
        lines = [f"{'pair':>10s} {'Dice':>13s} {'HD95 mm':>15s} {'centroid mm':>15s} {'folding %':>9s}"]

        def line(name, r):
            return (f"{name:>10s} {r['dice_before']:5.3f}->{r['dice']:5.3f} "
                    f"{r['hd95_before']:6.1f}->{r['hd95']:6.1f} "
                    f"{r['centroid_before']:6.1f}->{r['centroid']:6.1f} {100 * r['folding_fraction']:9.3f}")

        lines += [line(r["name"], r) for r in self.rows if r["label"] == label]
        lines.append(line("mean", {k: v[0] for k, v in self.summary[label].items()}))
        return "\n".join(lines)


def _summarise(rows: list[dict]) -> dict[int, dict[str, tuple[float, float]]]:
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, which is the answer
        for label in sorted({r["label"] for r in rows}):
            sel = [r for r in rows if r["label"] == label]
            out[label] = {k: (float(np.nanmean([r[k] for r in sel])), float(np.nanstd([r[k] for r in sel])))
                          for k in METRIC_KEYS if k in sel[0]}
    return out


# ------------------------------------------------------------------------------------------ writers
def write_nifti(path: Path, array: np.ndarray, spacing: Sequence[float]) -> None:
    """Save ``array`` as NIfTI with a diagonal affine of ``spacing`` (mm), float32."""
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.asarray(array, np.float32), np.diag([*spacing, 1.0])), path)


def write_pngs(folder: Path, kind: str, volume: np.ndarray) -> None:
    """``folder/kind/depth<k>_<kind>.png`` for every slice ``k`` along axis 2, 8-bit grey, [0, 1] -> 0-255."""
    from PIL import Image

    out = folder / kind
    out.mkdir(parents=True, exist_ok=True)
    vol = np.clip(np.asarray(volume, np.float32), 0.0, 1.0)
    for k in range(vol.shape[2]):
        Image.fromarray(np.round(vol[:, :, k] * 255).astype(np.uint8)).save(out / f"depth{k}_{kind}.png")


def write_csv(path: Path, rows: list[dict], summary: Mapping) -> None:
    """``metrics.csv``: the rows, then ``mean`` and ``std`` rows per label (written atomically)."""
    keys = ["pair", "name", "label", *[k for k in METRIC_KEYS if rows and k in rows[0]]]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, restval="", extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    for stat, idx in (("mean", 0), ("std", 1)):
        for label, values in summary.items():
            writer.writerow({"pair": stat, "name": stat, "label": label,
                             **{k: f"{v[idx]:.6g}" for k, v in values.items()}})
    checkpoints.write_atomic(path, buf.getvalue().encode())


def _write_pair(folder: Path, i: int, item: dict, out: dict, spacing, png_labels) -> None:
    sub = folder / f"pair_{i}"
    sub.mkdir(parents=True, exist_ok=True)
    write_nifti(sub / "warped_image.nii.gz", out["warped_image"], spacing)
    write_nifti(sub / "ddf.nii.gz", out["ddf"], spacing)
    if "warped_label" not in out:
        return
    write_nifti(sub / "warped_labels.nii.gz", out["warped_label"], spacing)
    n = item["fixed_label"].shape[-1]
    for j in range(n) if png_labels == "all" else [j for j in png_labels if j < n]:
        vols = {"fixed_image": item["fixed_image"], "moving_image": item["moving_image"],
                "pred_fixed_image": out["warped_image"], "fixed_label": item["fixed_label"][..., j],
                "moving_label": item["moving_label"][..., j], "pred_fixed_label": out["warped_label"][..., j]}
        for kind in PNG_KINDS:
            write_pngs(folder / f"pair_{i}_label_{j}", kind, vols[kind])


# ------------------------------------------------------------------------------------------ model
def load_model(config: str | os.PathLike | Mapping, checkpoint: str | os.PathLike | None = None):
    """Model of ``config`` with the weights of ``checkpoint``: a checkpoint file (``*.ckpt.npz``), a
    ``.keras`` file, a ``log_dir`` (its newest checkpoint that loads), or None (the config's ``log_dir``).

    :raises FileNotFoundError: when there is no such file or no checkpoint in the folder.
    :raises tutorialreg.checkpoints.CheckpointError: for a damaged checkpoint or one of another architecture.
    """
    import keras

    cfg = load_config(config)
    path = Path(checkpoint) if checkpoint is not None else Path(cfg["log_dir"])
    if path.is_file() and path.name.endswith(".keras"):
        return keras.models.load_model(path)
    model = build_model(cfg)
    if path.is_dir():
        if not checkpoints.find(path):
            raise FileNotFoundError(f"no checkpoint in {path} (expected {checkpoints.checkpoint_dir(path)}/"
                                    f"*{checkpoints.SUFFIX})")
        checkpoints.restore_latest(path, model)
    elif path.is_file():
        checkpoints.restore(path, model)
    else:
        raise FileNotFoundError(f"checkpoint {path} not found (expected a *{checkpoints.SUFFIX} or .keras "
                                "file, or a log folder)")
    return model


# ------------------------------------------------------------------------------------------ predict
def _register(model, item: dict, labeled: bool, first: bool) -> tuple[dict, float]:
    inputs = {"moving_image": item["moving_image"][None], "fixed_image": item["fixed_image"][None]}
    if labeled:
        inputs["moving_label"] = item["moving_label"][None]
    if first:
        model(inputs, training=False)  # warm-up: graph building is not inference time
    tic = time.perf_counter()
    out = {k: np.asarray(v)[0] for k, v in model(inputs, training=False).items()}
    return out, time.perf_counter() - tic


def _refine(item: dict, out: dict, steps: int, settings) -> float:
    """Refine ``out["ddf"]`` in place (and the warped volumes); returns the seconds it took."""
    from tutorialreg import optimise, warp

    tic = time.perf_counter()
    settings = settings or optimise.REFINE_DEFAULT
    n = len(settings.schedule.levels)
    steps_per_level = tuple(steps // n + (1 if k < steps % n else 0) for k in range(n))
    ref = optimise.refine_ddf(item["moving_image"], item["fixed_image"], out["ddf"][None], settings,
                              steps=steps_per_level)
    out["ddf"], out["warped_image"] = ref.ddf[0], ref.warped[0]
    if "warped_label" in out:
        out["warped_label"] = warp.warp(item["moving_label"][None], ref.ddf).numpy()[0]
    return time.perf_counter() - tic - ref.residual.compile_time  # one-time compilation is not per pair


def _rows(i: int, name: str, item: dict, out: dict, spacing, seconds: float, refine_seconds: float) -> list:
    base = {"pair": i, "name": name, "seconds": seconds}
    if refine_seconds:
        base["refine_seconds"] = refine_seconds
    from tutorialreg import metrics

    folding = metrics.folding_fraction(out["ddf"])
    if "warped_label" not in out:
        return [{**base, "label": -1, "folding_fraction": folding}]
    before = evaluate.label_scores(item["moving_label"], item["fixed_label"], spacing)
    after = evaluate.label_scores(out["warped_label"], item["fixed_label"], spacing)
    mask = item.get("label_mask", np.ones(item["fixed_label"].shape[-1]))
    return [{**base, "label": j, "folding_fraction": folding,
             **{f"{k}_before": float(before[k][j]) for k in before}, **{k: float(after[k][j]) for k in after}}
            for j in range(item["fixed_label"].shape[-1]) if mask[j] > 0]


def predict(config, checkpoint: str | os.PathLike | None = None, split: str = "test",
            out_dir: str | os.PathLike | None = None, overrides: Mapping | None = None,
            png_labels: str | Sequence[int] = "all", return_arrays: bool = False, refine_steps: int = 0,
            refine_settings=None, write: bool = True) -> PredictResult:
    """Register every pair of a split with a trained model, score it and write the results.

    :param config: a packaged config's name, a YAML path or a dict; ``overrides`` are merged over it.
    :param checkpoint: see :func:`load_model` (default: the newest checkpoint in the config's ``log_dir``).
    :param split: ``train``, ``valid`` or ``test``.
    :param out_dir: default ``<log_dir>/<split>``; ``write=False`` writes nothing.
    :param png_labels: label channels to write PNG slices for (``"all"``, a list of ints, or ``()``).
    :param refine_steps: if > 0, refine each predicted field with this many classical steps on the pair's
        images (label-free; :func:`tutorialreg.optimise.refine_ddf`, ``refine_settings`` or its defaults).
    :raises tutorialreg.checks.NonFiniteError: naming the pair when the model outputs NaN or infinity.
    """
    from tutorialreg import data

    cfg = load_config(config, overrides)
    model = load_model(cfg, checkpoint)
    ds = datasets(cfg, [split])[split]
    pairs = data.PairArrays(ds, cfg["dataset"]["label_channels"])
    folder = (Path(out_dir) if out_dir is not None else Path(cfg["log_dir"]) / split) if write else None
    rows, kept, times = [], [], []
    for i, name in enumerate(pairs.names):
        item = pairs.item(i)
        out, seconds = _register(model, item, pairs.labeled, i == 0)
        for key in ("ddf", "warped_image"):
            check_finite(out[key], f"the network's {key}", f"pair {name!r}")
        refine_seconds = _refine(item, out, refine_steps, refine_settings) if refine_steps > 0 else 0.0
        times.append(seconds)
        spacing = ds.spacing(name)
        rows += _rows(i, name, item, out, spacing, seconds, refine_seconds)
        if folder is not None:
            _write_pair(folder, i, item, out, spacing, png_labels)
        if return_arrays:
            kept.append({"name": name, **item, **out, "spacing": spacing,
                         "seconds": seconds + refine_seconds})
    summary = _summarise(rows)
    if folder is not None:
        write_csv(folder / "metrics.csv", rows, summary)
    return PredictResult(rows, summary, folder, pairs.is_standin,
                         float(np.median(times[1:] if len(times) > 1 else times)), kept)


# ------------------------------------------------------------------------------------------ command line
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tutorialreg.predict --config C [--checkpoint P] [--split test] [--out D] [--refine N]``."""
    parser = argparse.ArgumentParser(prog="python -m tutorialreg.predict",
                                     description="Register a split's pairs with a trained network.")
    parser.add_argument("--config", required=True, help="a packaged config's name or a YAML file")
    parser.add_argument("--log-dir", default=None, help="overrides the config's log_dir")
    parser.add_argument("--checkpoint", default=None, help="checkpoint file, .keras file or log folder")
    parser.add_argument("--split", default="test", help="train, valid or test (default test)")
    parser.add_argument("--out", default=None, help="output folder (default <log_dir>/<split>)")
    parser.add_argument("--refine", type=int, default=0, help="refine each field with N classical steps")
    args = parser.parse_args(argv)
    overrides = {"log_dir": args.log_dir} if args.log_dir else None
    result = predict(args.config, args.checkpoint, args.split, args.out, overrides=overrides,
                     refine_steps=args.refine)
    for label in result.summary:
        if label >= 0:
            print(result.table(label))
    print(f"wrote {result.out_dir} ({result.seconds_per_pair:.3f} s per pair)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
