"""Benchmark of learning-based registration on the CPU (a script, not a timed test).

Trains chapter 6b's network (``configs/paired_mrus_prostate.yaml``: MR-to-ultrasound prostate pairs,
weakly supervised) from scratch, then registers the held-out test pairs and prints

- training throughput (pairs/s, from the median epoch time, so the first epoch's graph building and
  other processes' bursts count less) and the total training time;
- inference time per pair on the CPU (median, graph already built);
- held-out gland Dice (label channel 0) and landmark centroid distance (channels 1+, mm) before and
  after registration, and the share of folding voxels (Jacobian determinant <= 0).

The target: with about 10 minutes of CPU training, held-out gland Dice rises by at least 0.20 over no
registration (the moving label resampled onto the fixed grid).

    python benchmarks/bench_train.py                 # full settings (~10 min on 2 cores)
    TUTORIALREG_FAST=1 python benchmarks/bench_train.py   # the chapter's fast setting (~2 min)

Options: ``--log-dir`` (default ``outputs/bench_train``), ``--epochs N``, ``--config PATH``.
Needs the data (``TUTORIALREG_MIRROR=../shared/data`` offline).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from tutorialreg import mode_banner, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "paired_mrus_prostate.yaml"))
    parser.add_argument("--log-dir", default=str(ROOT / "outputs" / "bench_train"))
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    print(mode_banner())
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    overrides = {"train": {"epochs": args.epochs}} if args.epochs else None
    tic = time.perf_counter()
    result = train.train(args.config, log_dir=args.log_dir, overrides=overrides, plot=False)
    train_s = time.perf_counter() - tic
    cfg = result.config
    epoch_s = np.asarray(result.history["seconds"])
    pred = train.predict(cfg, result.checkpoint, split="test", png_labels=(0,))
    gland = [r for r in pred.rows if r["label"] == 0]
    marks = [r for r in pred.rows if r["label"] > 0]

    def stat(rows, key):
        v = np.array([r[key] for r in rows], float)
        return f"{np.nanmean(v):.3f} mean / {np.nanmedian(v):.3f} median"

    t = cfg["train"]
    print(f"\nconfig: {args.config}  method {t['method']}, backbone {t['backbone']}, "
          f"{t['epochs']} epochs of batch {t['batch_size']}, image_shape {cfg['dataset']['image_shape']}")
    print(f"training: {train_s:.0f} s in all (data loading included), {result.epochs_done} epochs, "
          f"median epoch {np.median(epoch_s):.1f} s -> "
          f"{result.pairs_per_epoch / np.median(epoch_s):.2f} pairs/s "
          f"(mean over epochs {result.pairs_per_second:.2f} pairs/s)")
    print(f"inference: {pred.seconds_per_pair:.3f} s per pair (median, CPU)")
    print(f"held-out test pairs: {len(gland)} ({pred.out_dir / 'metrics.csv'})")
    print(f"  gland Dice     before {stat(gland, 'dice_before')}   after {stat(gland, 'dice')}")
    rise = np.mean([r["dice"] - r["dice_before"] for r in gland])
    print(f"  gland Dice rise {rise:+.3f} (target >= +0.20 with ~10 min CPU training)")
    print(f"  landmark centroid distance (mm, {len(marks)} landmarks)  before "
          f"{stat(marks, 'centroid_before')}   after {stat(marks, 'centroid')}")
    print(f"  gland centroid distance (mm)  before {stat(gland, 'centroid_before')}   after "
          f"{stat(gland, 'centroid')}")
    print(f"  gland HD95 (mm)  before {stat(gland, 'hd95_before')}   after {stat(gland, 'hd95')}")
    fold = np.array([r["folding_fraction"] for r in gland])
    print(f"  folding voxels: {100 * fold.mean():.3f} % mean, {100 * fold.max():.3f} % worst pair")
    print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
