"""Speed of the core tensor routines at the chapters' sizes: ms per call, median of repeats.

Prints forward and forward+backward times of resample, warp, LNCC and bending energy in eager mode,
under ``tf.function`` and under ``tf.function(jit_compile=True)``, with scipy's ``map_coordinates`` and
a dense 9x9x9-convolution LNCC (how the original tutorial computed it) as yardsticks, then the two
optimisation steps the classical chapters repeat (affine: resample + SSD + gradient, through the fused
``warp_affine`` and through ``resample(affine_grid(...))``, and with an Adam update; nonrigid: warp + LNCC +
bending + gradient + Adam update).

    python benchmarks/bench_core.py              # all sizes
    python benchmarks/bench_core.py --quick      # chapter sizes only, fewer repeats
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from scipy import ndimage  # noqa: E402

from tutorialreg import losses, warp  # noqa: E402

SIZES = {
    "hnct 128x128x37": (128, 128, 37),
    "promise12 32x128x128": (32, 128, 128),
    "lung small 96x96x104": (96, 96, 104),
    "lung full 192x192x208": (192, 192, 208),
}


def median_ms(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        _block(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _block(fn())
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _block(out):
    """Force evaluation (results may be tensors, tuples of tensors or numpy arrays)."""
    for t in out if isinstance(out, tuple | list) else (out,):
        np.asarray(t)


def dense_lncc(y_true, y_pred, k: int = 9):
    """The tutorial-era LNCC: windowed sums by a dense k^3 convolution (a yardstick, not used elsewhere)."""
    kernel = tf.ones([k, k, k, 1, 1])
    t, p = y_true[..., None], y_pred[..., None]

    def box(x):
        return tf.nn.conv3d(x, kernel, [1] * 5, "SAME")

    n = float(k**3)
    t_sum, p_sum = box(t), box(p)
    cross = box(t * p) - t_sum * p_sum / n
    t_var = box(t * t) - t_sum**2 / n
    p_var = box(p * p) - p_sum**2 / n
    return -tf.reduce_mean(cross * cross / (t_var * p_var + 1e-5), axis=[1, 2, 3, 4])


def modes(fn):
    return {"eager": fn, "function": tf.function(fn), "jit": tf.function(fn, jit_compile=True)}


def bench_size(name: str, shape: tuple[int, int, int], repeats: int, rng: np.random.Generator) -> list[str]:
    rows = []
    vol_np = ndimage.gaussian_filter(rng.random(shape), 2).astype(np.float32)
    vol = tf.constant(vol_np[None])
    fixed = tf.constant(np.roll(vol_np, 2, axis=1)[None])
    ddf_np = ndimage.gaussian_filter(rng.normal(0, 2, (1, *shape, 3)), (0, 4, 4, 4, 0)).astype(np.float32)
    ddf = tf.Variable(ddf_np)
    loc = warp.reference_grid(shape)[None] + ddf_np
    big = np.prod(shape) > 5e6
    reps = max(3, repeats // 4) if big else repeats

    def fwd_bwd(f):
        def run():
            with tf.GradientTape() as tape:
                y = tf.reduce_sum(f())
            return y, tape.gradient(y, ddf)

        return run

    cases = {
        "resample": lambda: warp.resample(vol, warp.reference_grid(shape)[None] + ddf),
        "warp": lambda: warp.warp(vol, ddf),
        "lncc": lambda: losses.lncc(fixed, warp.warp(vol, ddf)),
        "bending": lambda: losses.bending_energy(ddf),
    }
    for case, f in cases.items():
        for mode, g in modes(f).items():
            if big and mode == "eager":
                continue
            fwd = median_ms(g, reps)
            both = median_ms(modes(fwd_bwd(f))[mode], reps)
            rows.append(f"{name:24s} {case:10s} {mode:9s} fwd {fwd:9.1f} ms   fwd+bwd {both:9.1f} ms")
    scipy_ms = median_ms(
        lambda: ndimage.map_coordinates(vol_np, np.moveaxis(loc[0], -1, 0), order=1, mode="nearest"), reps
    )
    rows.append(f"{name:24s} {'resample':10s} {'scipy':9s} fwd {scipy_ms:9.1f} ms   (map_coordinates)")
    if not big:
        dense = median_ms(tf.function(lambda: dense_lncc(fixed, vol)), reps)
        ours = median_ms(tf.function(lambda: losses.lncc(fixed, vol)), reps)
        label = f"{name:24s} {'lncc':10s} {'dense 9^3':9s}"
        rows.append(f"{label} fwd {dense:9.1f} ms   ours (separable) is {dense / ours:5.1f}x faster")
    return rows


def affine_step_ms(repeats: int) -> dict[str, float]:
    """ms per affine step at 128x128x37: the fused ``warp_affine`` path (what ``register_affine`` runs), the
    generic ``resample(affine_grid(...))`` path, and the fused path with a Keras Adam update."""
    shape = SIZES["hnct 128x128x37"]
    rng = np.random.default_rng(0)
    fixed = tf.constant(ndimage.gaussian_filter(rng.random(shape), 2).astype(np.float32)[None])
    grid = warp.reference_grid(shape)
    moving = warp.warp_affine(fixed, warp.random_affine(1, 0.2, seed=1))
    theta = tf.Variable(warp.IDENTITY_THETA[None])
    opt = keras.optimizers.Adam(0.01)

    def gradient_of(warped_fn):
        @tf.function(jit_compile=True)
        def gradient():
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(losses.ssd(fixed, warped_fn()))
            return loss, tape.gradient(loss, theta)

        return gradient

    fused = gradient_of(lambda: warp.warp_affine(moving, theta))
    generic = gradient_of(lambda: warp.resample(moving, warp.affine_grid(grid, theta)))

    @tf.function(jit_compile=True)
    def step():
        loss, grad = fused()
        opt.apply_gradients([(grad, theta)])
        return loss

    return {
        "fused": median_ms(fused, repeats, warmup=3),
        "generic": median_ms(generic, repeats, warmup=3),
        "adam": median_ms(step, repeats, warmup=3),
    }


def nonrigid_step_ms(repeats: int) -> float:
    shape = SIZES["promise12 32x128x128"]
    rng = np.random.default_rng(0)
    fixed = tf.constant(ndimage.gaussian_filter(rng.random(shape), 2).astype(np.float32)[None])
    moving = tf.constant(np.roll(fixed.numpy(), 3, axis=2))
    ddf = tf.Variable(np.zeros((1, *shape, 3), np.float32))
    opt = keras.optimizers.Adam(0.1)

    @tf.function(jit_compile=True)
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(losses.lncc(fixed, warp.warp(moving, ddf)) + losses.bending_energy(ddf))
        opt.apply_gradients([(tape.gradient(loss, ddf), ddf)])
        return loss

    return median_ms(step, repeats, warmup=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="chapter sizes only, fewer repeats")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    repeats = 5 if args.quick else args.repeats
    rng = np.random.default_rng(0)
    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPUs visible, load average {os.getloadavg()}")
    affine = affine_step_ms(max(repeats, 30))
    nonrigid = nonrigid_step_ms(max(repeats, 10))
    rows = [
        ("affine step   (warp_affine+SSD+grad, 128x128x37, jit)", affine["fused"], " (target <= 15)"),
        ("affine step   (resample(affine_grid)+SSD+grad, same)", affine["generic"], " (target <= 15)"),
        ("affine step   (warp_affine+SSD+grad+Adam, same)", affine["adam"], ""),
        ("nonrigid step (warp+LNCC+bending+grad+Adam, 32x128x128, jit)", nonrigid, " (target <= 80)"),
    ]
    for label, ms, target in rows:
        print(f"{label:62s} {ms:7.1f} ms{target}")
    sizes = list(SIZES.items())[:2] if args.quick else SIZES.items()
    for name, shape in sizes:
        for row in bench_size(name, shape, repeats, rng):
            print(row, flush=True)


if __name__ == "__main__":
    main()
