"""Benchmark of learning-based registration on the CPU (a script that prints figures, not a timed test).

Trains chapter 6b's network (the packaged config ``paired_mrus_prostate``: simulated MR-to-ultrasound
prostate pairs of DeepReg's demo, weakly supervised) from scratch, ``--runs`` times with different training
seeds, and scores each run's model on the held-out test pairs:

- training time (data loading and validation included) and throughput (pairs/s, from the median epoch);
- inference time per pair on the CPU (median, graph already built);
- gland Dice and HD95 (mm), landmark centroid distance (mm, every landmark of every test pair), landmarks
  that vanish when warped (unmeasurable), folding (% of voxels with det J <= 0), before and after;
- the gland Dice and landmark distance separately on the test pairs whose MR gland outline also occurs in a
  training pair (the data set reuses some outlines with other images) and on the rest;
- optionally (``--refine N``) the same after N steps of label-free refinement on each pair.

Then the mean, min and max over runs, against the goals: gland Dice >= 0.78, landmarks <= 8 mm, folding
<= 0.1 %, training <= 10 min, inference <= 0.2 s per pair.

    python benchmarks/bench_train.py                        # one full run (~10 min on 2 cores)
    python benchmarks/bench_train.py --runs 3               # three training seeds: the spread
    python benchmarks/bench_train.py --split-seed 1         # another train/valid/test split
    TUTORIALREG_FAST=1 python benchmarks/bench_train.py     # the chapter's fast setting

Needs the data (``TUTORIALREG_MIRROR=../shared/data`` offline).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from tutorialreg import config, evaluate, mode_banner, train  # noqa: E402

GOALS = {"dice": (">=", 0.78), "landmark": ("<=", 8.0), "folding": ("<=", 0.1), "train_s": ("<=", 600.0),
         "infer_s": ("<=", 0.2)}


def _load() -> str:
    return "load average " + " / ".join(f"{x:.1f}" for x in os.getloadavg())


def score(pred, key_suffix: str = "") -> dict:
    """Gland, landmark and folding figures of a :class:`~tutorialreg.predict.PredictResult`."""
    marks = pred.values("centroid" + key_suffix, "landmarks")
    out = {"dice": float(np.mean(pred.values("dice" + key_suffix, 0))),
           "hd95": float(np.nanmean(pred.values("hd95" + key_suffix, 0))),
           "landmark": float(np.nanmean(marks)), "landmarks": int(marks.size),
           "vanished": int(np.isnan(marks).sum())}
    if not key_suffix:
        out["folding"] = 100 * float(np.mean(pred.values("folding_fraction", 0)))
        out["folding_max"] = 100 * float(np.max(pred.values("folding_fraction", 0)))
    return out


def by_outline(pred, cfg) -> dict:
    """Gland Dice and landmark distance (mean per pair) on the test pairs whose MR gland outline also occurs
    in a training pair (the data set reuses outlines with other images) and on the others."""
    shared = evaluate.shared_labels(pred.pairs, config.load_pairs(cfg, "train"))
    dice = pred.values("dice", 0)
    marks = pred.values("centroid", "landmarks", per_pair=True)
    out = {"shared_outline_pairs": int(shared.sum())}
    for name, where in (("shared", shared), ("new", ~shared)):
        out[f"dice_{name}"] = float(np.mean(dice[where])) if where.any() else float("nan")
        out[f"landmark_{name}"] = float(np.nanmean(marks[where])) if where.any() else float("nan")
    return out


def one_run(config: str, seed: int, split_seed: int | None, log_dir: str, refine: int) -> dict:
    overrides: dict = {"train": {"seed": seed}}
    if split_seed is not None:
        overrides["dataset"] = {"split": {"seed": split_seed, "fractions": [0.7, 0.1, 0.2]}}
    tic = time.perf_counter()
    result = train.train(config, log_dir=log_dir, overrides=overrides)
    train_s = time.perf_counter() - tic
    cfg = result.config
    pred = train.predict(cfg, result.checkpoint, split="test", png_labels=(0,), return_arrays=True)
    out = {"seed": seed, "train_s": train_s, "epochs": result.epochs_done,
           "pairs_per_s": result.pairs_per_epoch / float(np.median(result.history["seconds"])),
           "infer_s": pred.seconds_per_pair, "pairs": len(pred.values("dice", 0)),
           "before": score(pred, "_before"), **score(pred), **by_outline(pred, cfg)}
    if refine:
        refined = train.predict(cfg, result.checkpoint, split="test", write=False, refine_steps=refine)
        out["refined"] = {**score(refined), "refine_s": float(np.median(refined.values("refine_seconds", 0)))}
    print(json.dumps(out), flush=True)
    return out


def spread(runs: list[dict], key: str) -> str:
    values = [r[key] for r in runs]
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} (min {min(values):.3f}, max {max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="paired_mrus_prostate", help="a packaged config or a YAML file")
    parser.add_argument("--log-dir", default="outputs/bench_train")
    parser.add_argument("--runs", type=int, default=1, help="training runs with seeds 0, 1, ...")
    parser.add_argument("--split-seed", type=int, default=None, help="another train/valid/test split")
    parser.add_argument("--refine", type=int, default=0, help="also refine each test pair with N steps")
    args = parser.parse_args()
    print(mode_banner())
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {_load()}")
    runs = [one_run(args.config, seed, args.split_seed, f"{args.log_dir}/seed{seed}", args.refine)
            for seed in range(args.runs)]
    before = runs[0]["before"]
    print(f"\n{args.config}: {len(runs)} run(s), {runs[0]['pairs']} test pairs, {runs[0]['epochs']} epochs; "
          f"{_load()}")
    print(f"no registration: gland Dice {before['dice']:.3f}, HD95 {before['hd95']:.1f} mm, landmarks "
          f"{before['landmark']:.1f} mm ({before['landmarks']} landmarks)")
    rows = (("dice", "gland Dice"), ("hd95", "gland HD95 mm"), ("landmark", "landmarks mm"),
            ("folding", "folding %"), ("train_s", "training s"), ("pairs_per_s", "training pairs/s"),
            ("infer_s", "inference s/pair"))
    for key, title in rows:
        goal = f"   goal {GOALS[key][0]} {GOALS[key][1]:g}" if key in GOALS else ""
        print(f"  {title:18s} {spread(runs, key)}{goal}")
    print(f"  vanished landmarks: {[r['vanished'] for r in runs]} of {runs[0]['landmarks']}")
    n = runs[0]["shared_outline_pairs"]
    rest = runs[0]["pairs"] - n
    print(f"  {n} test pairs reuse the MR gland outline of a training pair; the other {rest}:")
    for key, title in (("dice", "gland Dice"), ("landmark", "landmarks mm")):
        print(f"    {title:16s} reused outline {spread(runs, key + '_shared')}; "
              f"new outline {spread(runs, key + '_new')}")
    if args.refine:
        refined = [r["refined"] for r in runs]
        for key in ("dice", "hd95", "landmark", "folding", "refine_s"):
            print(f"  + refinement ({args.refine} steps) {key:10s} {spread(refined, key)}")


if __name__ == "__main__":
    main()
