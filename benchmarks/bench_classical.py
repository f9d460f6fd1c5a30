"""Classical registration with the chapters' settings: time per step, total time and accuracy.

Chapter 4 (affine self-registration of the head-and-neck CT, seed 0) and chapter 5 (nonrigid registration
of the two prostate MR scans), each with the book's recommended settings (``optimise.AFFINE_RECOMMENDED``,
``optimise.NONRIGID_RECOMMENDED``) repeated ``--repeats`` times (medians reported), and optionally the
tutorial's original settings, the DDF variant, a regularisation-weight sweep and more affine seeds.

Targets on a 2-core CPU: affine <= 6 s in total with mean error <= 0.05 voxel; nonrigid <= 4 min in total with
gland Dice >= 0.80 and <= 0.5 % folding voxels. The machine load is printed: on a shared machine, times vary.

    python benchmarks/bench_classical.py                     # recommended settings, 3 repeats
    python benchmarks/bench_classical.py --all               # + tutorial settings, DDF, weight sweep, seeds
    python benchmarks/bench_classical.py --json out.json     # also write every number to a file

Data come from the cache or the mirror (``TUTORIALREG_MIRROR``, set by ``make bench``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from tutorialreg import data, metrics, optimise, warp  # noqa: E402

AFFINE_SEED = 0  # chapter 4's seed
# chapter 5's weight sweep: the coarse level only, 150 steps per run
WEIGHTS = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
SWEEP = dict(levels=((2, 4, 4),), field_sigma=1.0, steps=150, decay="cosine")


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} cores"


def affine_case(seed: int) -> dict:
    hn = data.load_hnct()
    fixed = data.normalise(hn["image"])
    theta_true = warp.random_affine(1, 0.2, seed=seed)
    read_at = warp.affine_grid(warp.reference_grid(fixed.shape), theta_true)
    return dict(fixed=fixed, labels=hn["labels"], theta_true=theta_true.numpy(),
                moving=warp.resample(fixed[None], read_at).numpy()[0],
                moving_labels=warp.resample(hn["labels"][None], read_at).numpy()[0])


def run_affine(case: dict, settings: optimise.AffineSettings) -> dict:
    r = optimise.register_affine(case["moving"], case["fixed"], settings, progress=False)
    err = metrics.affine_error(r.theta, case["theta_true"], case["fixed"].shape)
    dice = metrics.dice(r.warp(case["moving_labels"][None])[0], case["labels"])
    return dict(steps=r.steps, ms_per_step=1000 * r.time_per_step,
                level_ms_per_step=[1000 * t for t in r.level_time_per_step], compile_s=r.compile_time,
                total_s=r.total_time, error_mean=err.mean, error_max=err.max, dice=[float(d) for d in dice])


def nonrigid_case() -> dict:
    pr = data.load_promise12()
    return dict(moving=pr["image0"], fixed=pr["image1"], moving_label=pr["label0"], fixed_label=pr["label1"],
                dice_before=metrics.dice(pr["label0"], pr["label1"]),
                hd95_before=metrics.hausdorff95(pr["label0"], pr["label1"]))


def run_nonrigid(case: dict, settings: optimise.NonrigidSettings) -> dict:
    r = optimise.register_ddf(case["moving"], case["fixed"], settings, progress=False)
    warped_label = r.warp(case["moving_label"][None])[0]
    return dict(steps=r.steps, ms_per_step=1000 * r.time_per_step,
                level_ms_per_step=[1000 * t for t in r.level_time_per_step], compile_s=r.compile_time,
                total_s=r.total_time, dice=metrics.dice(warped_label, case["fixed_label"]),
                hd95=metrics.hausdorff95(warped_label, case["fixed_label"]),
                folding_percent=100 * metrics.folding_fraction(r.ddf),
                max_displacement=float(np.linalg.norm(r.ddf, axis=-1).max()))


def repeat(fn, n: int) -> dict:
    """Run ``fn`` n times; medians of every number (accuracy is deterministic, times are not)."""
    runs = [fn() for _ in range(n)]
    out = {}
    for key, value in runs[0].items():
        if isinstance(value, list):
            out[key] = [statistics.median(r[key][i] for r in runs) for i in range(len(value))]
        else:
            out[key] = statistics.median(r[key] for r in runs)
    out["total_s_all"] = [r["total_s"] for r in runs]
    return out


def show(title: str, res: dict) -> None:
    fields = ", ".join(f"{k} {_fmt(v)}" for k, v in res.items())
    print(f"{title}: {fields}", flush=True)


def _fmt(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs of each recommended setting (median)")
    parser.add_argument("--tutorial", action="store_true", help="also the tutorial's settings (minutes)")
    parser.add_argument("--ddf", action="store_true", help="also the recommended nonrigid settings, DDF")
    parser.add_argument("--sweep", action="store_true", help="also chapter 5's deform_weight sweep")
    parser.add_argument("--seeds", type=int, default=0, help="also the affine with seeds 1..N (accuracy)")
    parser.add_argument("--all", action="store_true", help="--tutorial --ddf --sweep --seeds 4")
    parser.add_argument("--skip-affine", action="store_true")
    parser.add_argument("--skip-nonrigid", action="store_true")
    parser.add_argument("--json", help="write all results to this file")
    args = parser.parse_args(argv)
    if args.all:
        args.tutorial = args.ddf = args.sweep = True
        args.seeds = max(args.seeds, 4)
    results: dict = {"load_start": os.getloadavg()}
    print(f"bench_classical: {_load()}", flush=True)

    if not args.skip_affine:
        case = affine_case(AFFINE_SEED)
        res = repeat(lambda: run_affine(case, optimise.AFFINE_RECOMMENDED), args.repeats)
        show("affine, recommended (chapter 4)", res)
        results["affine_recommended"] = res
        if args.tutorial:
            res = run_affine(case, optimise.AFFINE_TUTORIAL)
            show("affine, tutorial settings (1001 steps)", res)
            results["affine_tutorial"] = res
            res = run_affine(case, optimise.AFFINE_TUTORIAL.replace(mask_outside=True))
            show("affine, tutorial settings + mask_outside", res)
            results["affine_tutorial_mask"] = res
        for seed in range(1, args.seeds + 1):
            res = run_affine(affine_case(seed), optimise.AFFINE_RECOMMENDED)
            show(f"affine, recommended, seed {seed}", res)
            results[f"affine_seed{seed}"] = res
        print(f"  ({_load()})", flush=True)

    if not args.skip_nonrigid:
        case = nonrigid_case()
        print(f"nonrigid: gland Dice before {case['dice_before']:.4f}, "
              f"HD95 before {case['hd95_before']:.2f} voxels", flush=True)
        results["nonrigid_before"] = dict(dice=case["dice_before"], hd95=case["hd95_before"])
        res = repeat(lambda: run_nonrigid(case, optimise.NONRIGID_RECOMMENDED), args.repeats)
        show("nonrigid, recommended (chapter 5, DVF)", res)
        results["nonrigid_recommended"] = res
        if args.ddf:
            res = run_nonrigid(case, optimise.NONRIGID_RECOMMENDED.replace(parameterisation="ddf"))
            show("nonrigid, recommended but DDF", res)
            results["nonrigid_ddf"] = res
        if args.sweep:
            for w in WEIGHTS:
                for par in ("ddf", "dvf"):
                    settings = optimise.NONRIGID_TUTORIAL.replace(**SWEEP, parameterisation=par,
                                                                  deform_weight=w)
                    res = run_nonrigid(case, settings)
                    show(f"nonrigid, {par}, deform_weight {w}", res)
                    results[f"nonrigid_{par}_w{w}"] = res
        if args.tutorial:
            res = run_nonrigid(case, optimise.NONRIGID_TUTORIAL)
            show("nonrigid, tutorial settings (3001 steps, DDF, full size)", res)
            results["nonrigid_tutorial"] = res
        print(f"  ({_load()})", flush=True)

    results["load_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=float)
    return 0


if __name__ == "__main__":
    t0 = time.perf_counter()
    code = main()
    print(f"bench_classical: done in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    sys.exit(code)
