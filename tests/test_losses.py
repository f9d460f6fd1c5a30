"""Tests for tutorialreg.losses: each loss against an independent numpy/scipy reference."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from tutorialreg import losses

SHAPE = (2, 9, 10, 11)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def smooth_image(rng: np.random.Generator, shape=SHAPE, channels: int | None = None) -> np.ndarray:
    """Random smooth image in about [0.1, 0.9], float64, ``shape`` (+ channels)."""
    full = shape + ((channels,) if channels else ())
    x = rng.random(full)
    sigma = (0, 1.5, 1.5, 1.5) + ((0,) if channels else ())
    x = ndimage.gaussian_filter(x, sigma)
    x = (x - x.min()) / (x.max() - x.min())
    return 0.1 + 0.8 * x


def blob_labels(rng: np.random.Generator, shape=SHAPE, channels: int = 2) -> np.ndarray:
    """Binary labels ``shape + (channels,)``: thresholded smooth noise."""
    return (smooth_image(rng, shape, channels) > 0.5).astype(np.float64)


# ---------------------------------------------------------------------------------------------
# numpy references (written from the formulas, independent of the implementation)
# ---------------------------------------------------------------------------------------------


def np_ssd(t, p):
    return ((t - p) ** 2).reshape(len(t), -1).mean(axis=1)


def np_ncc(t, p):
    t = t if t.ndim == 5 else t[..., None]
    p = p if p.ndim == 5 else p[..., None]
    out = np.zeros(len(t))
    for b in range(len(t)):
        out[b] = 1 - np.mean(
            [np.corrcoef(t[b, ..., c].ravel(), p[b, ..., c].ravel())[0, 1] for c in range(t.shape[-1])]
        )
    return out


def window_1d(kernel: str, k: int) -> np.ndarray:
    i = np.arange(k)
    if kernel == "rectangular":
        return np.ones(k)
    if kernel == "triangular":
        return np.minimum(i + 1, k - i).astype(float)  # 1, 2, ..., (k+1)/2, ..., 2, 1
    return np.exp(-0.5 * ((i - k // 2) / (k / 3.0)) ** 2)


def np_lncc(t, p, k, kernel, eps=1e-5):
    w = window_1d(kernel, k)
    dense = w[:, None, None] * w[None, :, None] * w[None, None, :]  # dense 3-D window
    out = np.zeros(len(t))
    for b in range(len(t)):
        norm = ndimage.correlate(np.ones(t.shape[1:]), dense, mode="constant", cval=0.0)

        def mean(v):
            return ndimage.correlate(v, dense, mode="constant", cval=0.0) / norm  # noqa: B023

        tb, pb = t[b], p[b]
        mt, mp = mean(tb), mean(pb)
        cov = mean(tb * pb) - mt * mp
        vt = mean(tb * tb) - mt**2
        vp = mean(pb * pb) - mp**2
        out[b] = 1 - np.mean((cov**2 + eps) / (vt * vp + eps))
    return out


def np_parzen_mi(a, b, bins=23, sigma_ratio=0.5, eps=1e-7):
    centres = np.linspace(0, 1, bins)
    s = sigma_ratio / (bins - 1)

    def weights(v):
        w = np.exp(-((np.clip(v.ravel(), 0, 1)[:, None] - centres) ** 2) / (2 * s * s))
        return w / w.sum(axis=1, keepdims=True)

    wa, wb = weights(a), weights(b)
    pab = wa.T @ wb / len(wa)
    papb = np.outer(wa.mean(0), wb.mean(0))
    return np.sum(pab * np.log((pab + eps) / (papb + eps)))


def np_histogram_mi(a, b, bins=23):
    half = 0.5 / (bins - 1)
    edges = np.linspace(-half, 1 + half, bins + 1)
    pab, _, _ = np.histogram2d(np.clip(a.ravel(), 0, 1), np.clip(b.ravel(), 0, 1), bins=[edges, edges])
    pab /= pab.sum()
    papb = np.outer(pab.sum(1), pab.sum(0))
    nz = pab > 0
    return np.sum(pab[nz] * np.log(pab[nz] / papb[nz]))


def np_smooth(v, sigma):
    """Normalised Gaussian local mean of each [d1,d2,d3] block of v [b,d1,d2,d3,c], zero padding."""
    if sigma == 0:
        return v
    r = int(np.ceil(3 * sigma))
    g = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    out = np.empty_like(v)
    for b in range(v.shape[0]):
        for c in range(v.shape[-1]):
            x, one = v[b, ..., c], np.ones(v.shape[1:4])
            for ax in range(3):
                x = ndimage.correlate1d(x, g, axis=ax, mode="constant")
                one = ndimage.correlate1d(one, g, axis=ax, mode="constant")
            out[b, ..., c] = x / one
    return out


def np_overlap(t, p, kind, scales=(0,), eps=1e-5):
    losses_ = []
    for s in scales:
        ts, ps = np_smooth(t, s), np_smooth(p, s)
        inter = (ts * ps).sum(axis=(1, 2, 3))
        sq = (ts**2).sum(axis=(1, 2, 3)) + (ps**2).sum(axis=(1, 2, 3))
        score = (2 * inter + eps) / (sq + eps) if kind == "dice" else (inter + eps) / (sq - inter + eps)
        losses_.append(1 - score.mean(axis=-1))
    return np.mean(losses_, axis=0)


def np_cross_entropy(t, p, scales=(0,), eps=1e-6):
    out = []
    for s in scales:
        ts, ps = np_smooth(t, s), np.clip(np_smooth(p, s), eps, 1 - eps)
        ce = -(ts * np.log(ps) + (1 - ts) * np.log(1 - ps))
        out.append(ce.reshape(len(t), -1).mean(axis=1))
    return np.mean(out, axis=0)


def np_bending(u):
    """Pure terms by np.diff(n=2), mixed by np.gradient twice, on interior voxels."""
    inner = (slice(None), slice(1, -1), slice(1, -1), slice(1, -1))
    total = 0.0
    for a in range(3):
        d2 = np.diff(u, n=2, axis=a + 1)
        idx = [slice(None), slice(1, -1), slice(1, -1), slice(1, -1), slice(None)]
        idx[a + 1] = slice(None)
        total = total + (d2[tuple(idx)] ** 2).sum(axis=-1)
    for a, b in ((0, 1), (0, 2), (1, 2)):
        mixed = np.gradient(np.gradient(u, axis=a + 1), axis=b + 1)[inner]
        total = total + 2 * (mixed**2).sum(axis=-1)
    return total.reshape(len(u), -1).mean(axis=1)


def np_gradient_norm(u, l1):
    inner = (slice(None), slice(1, -1), slice(1, -1), slice(1, -1))
    total = 0.0
    for a in range(3):
        g = np.gradient(u, axis=a + 1)[inner]
        total = total + (np.abs(g) if l1 else g**2).sum(axis=-1)
    return total.reshape(len(u), -1).mean(axis=1)


# ---------------------------------------------------------------------------------------------
# image losses vs numpy
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [None, 2])
def test_ssd_ncc_match_numpy(rng, channels):
    t, p = smooth_image(rng, channels=channels), smooth_image(rng, channels=channels)
    np.testing.assert_allclose(losses.ssd(t, p).numpy(), np_ssd(t, p), rtol=1e-12)
    np.testing.assert_allclose(losses.ncc(t, p).numpy(), np_ncc(t, p), rtol=1e-6)
    # float32 in -> float32 out, shape [batch]
    out = losses.ncc(t.astype(np.float32), p.astype(np.float32))
    assert out.dtype == tf.float32 and out.shape == (2,)
    np.testing.assert_allclose(out.numpy(), np_ncc(t, p), rtol=1e-4)


@pytest.mark.parametrize("kernel", ["rectangular", "triangular", "gaussian"])
@pytest.mark.parametrize("k", [5, 9])
def test_lncc_matches_windowed_numpy(rng, kernel, k):
    t = smooth_image(rng)
    p = np.clip(t + 0.2 * rng.standard_normal(t.shape) * (rng.random(t.shape) > 0.5), 0, 1)
    p[:, :3, :4] = 0.5  # a flat region, where eps matters
    out = losses.lncc(t, p, kernel_size=k, kernel=kernel)
    np.testing.assert_allclose(out.numpy(), np_lncc(t, p, k, kernel), rtol=1e-8)
    out32 = losses.lncc(t.astype(np.float32), p.astype(np.float32), kernel_size=k, kernel=kernel)
    np.testing.assert_allclose(out32.numpy(), np_lncc(t, p, k, kernel), rtol=2e-3, atol=2e-4)


def test_lncc_multichannel_and_bad_arguments(rng):
    t, p = smooth_image(rng, channels=2), smooth_image(rng, channels=2)
    ref = (
        np_lncc(t[..., 0], p[..., 0], 3, "rectangular") + np_lncc(t[..., 1], p[..., 1], 3, "rectangular")
    ) / 2
    np.testing.assert_allclose(losses.lncc(t, p, kernel_size=3).numpy(), ref, rtol=1e-6)
    with pytest.raises(ValueError, match="odd"):
        losses.lncc(t, p, kernel_size=4)
    with pytest.raises(ValueError, match="gaussian"):
        losses.lncc(t, p, kernel="box")


def test_gmi_matches_parzen_numpy_and_histogram(rng):
    t = smooth_image(rng)
    p = np.clip(t + 0.1 * rng.standard_normal(t.shape), -0.2, 1.2)  # some values need clipping
    out = losses.gmi(t, p).numpy()
    assert out.shape == (2,)
    parzen = np.array([np_parzen_mi(t[b], p[b]) for b in range(2)])
    np.testing.assert_allclose(-out, parzen, rtol=1e-8)

    # Parzen MI vs a plain 23-bin histogram MI on correlated data: within 10 %
    # (Parzen smoothing lowers MI; measured about 5 % low at this noise level).
    x = rng.uniform(0, 1, (2, 16, 16, 16))
    y = np.clip(x + 0.1 * rng.standard_normal(x.shape), 0, 1)
    mi = -losses.gmi(x, y).numpy()
    hist = np.array([np_histogram_mi(x[b], y[b]) for b in range(2)])
    np.testing.assert_allclose(mi, hist, rtol=0.10)
    assert np.all(mi < hist)  # the blur only removes information
    # MI(x, x) > MI(x, y) > MI(x, independent noise) ~ 0
    noise = rng.uniform(0, 1, x.shape)
    mi_self = -losses.gmi(x, x).numpy()
    mi_noise = -losses.gmi(x, noise).numpy()
    assert np.all(mi_self > mi) and np.all(mi > mi_noise + 0.5) and np.all(mi_noise < 0.05)


def test_image_losses_are_minimal_at_identical_images(rng):
    t = smooth_image(rng, channels=1)
    perturbed = {
        "noise": np.clip(t + 0.05 * rng.standard_normal(t.shape), 0, 1),
        "shift": np.roll(t, 2, axis=2),
        "blur": ndimage.gaussian_filter(t, (0, 1, 1, 1, 0)),
    }
    for name in ("ssd", "ncc", "lncc", "gmi"):
        fn = losses.get(name)
        same = fn(t, t).numpy()
        if name != "gmi":
            np.testing.assert_allclose(same, 0.0, atol=1e-8, err_msg=name)
        for what, q in perturbed.items():
            assert np.all(fn(t, q).numpy() > same + 1e-4), (name, what)


# ---------------------------------------------------------------------------------------------
# label losses vs numpy
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scales", [None, [0, 1.0, 2.0]])
def test_label_losses_match_numpy(rng, scales):
    t = blob_labels(rng)
    p = np.clip(blob_labels(rng) * 0.9 + 0.05 * rng.random(t.shape), 0, 1)  # soft prediction
    sc = (0,) if scales is None else scales
    np.testing.assert_allclose(
        losses.dice_loss(t, p, scales).numpy(), np_overlap(t, p, "dice", sc), rtol=1e-8
    )
    np.testing.assert_allclose(
        losses.jaccard_loss(t, p, scales).numpy(), np_overlap(t, p, "jaccard", sc), rtol=1e-8
    )
    np.testing.assert_allclose(
        losses.cross_entropy(t, p, scales).numpy(), np_cross_entropy(t, p, sc), rtol=1e-8
    )


def np_block_mean(x, k):
    """Means over k-cubed blocks of ``[b, d1, d2, d3, c]``; partial blocks at the far ends average the
    voxels they have (TensorFlow's 'SAME' average pooling)."""
    b, *dims, c = x.shape
    out_dims = [-(-d // k) for d in dims]
    pad = [(0, 0)] + [(0, o * k - d) for o, d in zip(out_dims, dims, strict=True)] + [(0, 0)]
    sums = np.pad(x, pad).reshape(b, out_dims[0], k, out_dims[1], k, out_dims[2], k, c).sum(axis=(2, 4, 6))
    ones = np.pad(np.ones([1, *dims, 1]), pad).reshape(1, out_dims[0], k, out_dims[1], k, out_dims[2], k, 1)
    return sums / ones.sum(axis=(2, 4, 6))


def test_dice_with_pooling_factors_matches_numpy(rng):
    t = blob_labels(rng)  # 9 x 10 x 11: partial blocks at every factor
    p = np.clip(blob_labels(rng) * 0.9 + 0.05 * rng.random(t.shape), 0, 1)
    expected = np.mean([np_overlap(np_block_mean(t, k), np_block_mean(p, k), "dice") for k in (1, 2, 4)], 0)
    np.testing.assert_allclose(losses.dice_loss(t, p, pools=[1, 2, 4]).numpy(), expected, rtol=1e-8)
    np.testing.assert_allclose(losses.dice_loss(t, t, pools=[1, 2, 4, 8]).numpy(), 0.0, atol=1e-7)
    with pytest.raises(ValueError, match="scales or pools"):
        losses.dice_loss(t, p, scales=[0, 1], pools=[1, 2])
    with pytest.raises(ValueError, match="integers >= 1"):
        losses.dice_loss(t, p, pools=[0, 2])


def test_centroid_distance_matches_numpy(rng):
    t = smooth_image(rng, channels=3)
    p = smooth_image(rng, channels=3) ** 3
    spacing = (1.5, 2.0, 0.5)
    idx = np.meshgrid(*[np.arange(n) * h for n, h in zip(SHAPE[1:], spacing, strict=True)], indexing="ij")

    def centres(x):  # [b, c, 3]
        mass = x.sum(axis=(1, 2, 3)) + 1e-3
        return np.stack([(x * g[None, ..., None]).sum(axis=(1, 2, 3)) / mass for g in idx], -1)

    d = np.linalg.norm(centres(t) - centres(p), axis=-1)
    expected = (np.sqrt(d**2 + 4.0) - 2.0).mean(-1)
    actual = losses.centroid_distance(t, p, spacing, smooth=2.0).numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-8)
    # two small blobs 3 voxels apart along axis 1 (2 mm voxels): about 6 mm, and 0 for identical labels
    blob = np.zeros((1, 9, 10, 11, 1))
    blob[0, 2:4, 2:4, 5:7] = 1
    far = losses.centroid_distance(blob, np.roll(blob, 3, axis=2), spacing, smooth=1e-6).numpy()
    np.testing.assert_allclose(far, 6.0, rtol=1e-3)
    np.testing.assert_allclose(losses.centroid_distance(blob, blob, spacing).numpy(), 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="spacing"):
        losses.centroid_distance(t, p, (1.0, 0.0, 1.0))


def test_dice_binary_formula_and_identical_labels(rng):
    t = blob_labels(rng)
    p = blob_labels(rng)
    inter = (t * p).sum(axis=(1, 2, 3))
    set_dice = 2 * inter / (t.sum(axis=(1, 2, 3)) + p.sum(axis=(1, 2, 3)))
    set_jacc = inter / (t.sum(axis=(1, 2, 3)) + p.sum(axis=(1, 2, 3)) - inter)
    np.testing.assert_allclose(losses.dice_loss(t, p).numpy(), 1 - set_dice.mean(-1), rtol=1e-6)
    np.testing.assert_allclose(losses.jaccard_loss(t, p).numpy(), 1 - set_jacc.mean(-1), rtol=1e-6)
    # uint8 masks are accepted; identical labels give 0 at one scale and at several
    masks = t.astype(np.uint8)
    for fn in (losses.dice_loss, losses.jaccard_loss):
        np.testing.assert_allclose(fn(masks, masks).numpy(), 0.0, atol=1e-6)
        np.testing.assert_allclose(fn(t, t, scales=[0, 1, 2, 4]).numpy(), 0.0, atol=1e-6)
        assert np.all(fn(t, np.roll(t, 1, axis=1), scales=[0, 1, 2]).numpy() > 1e-3)
    # both empty -> 0; cross-entropy of identical hard labels ~ 0 and below a perturbed one
    empty = np.zeros_like(t)
    np.testing.assert_allclose(losses.dice_loss(empty, empty).numpy(), 0.0, atol=1e-12)
    assert np.all(losses.cross_entropy(t, t).numpy() < 1e-5)
    assert np.all(losses.cross_entropy(t, np.roll(t, 1, axis=1)).numpy() > 1e-2)


# ---------------------------------------------------------------------------------------------
# deformation losses
# ---------------------------------------------------------------------------------------------


def grid(shape=SHAPE[1:]) -> np.ndarray:
    return np.stack(np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij"), axis=-1)


def test_deformation_losses_match_numpy(rng):
    u = rng.standard_normal((2, 6, 7, 8, 3))
    np.testing.assert_allclose(losses.bending_energy(u).numpy(), np_bending(u), rtol=1e-10)
    for l1 in (False, True):
        np.testing.assert_allclose(
            losses.gradient_norm(u, l1=l1).numpy(), np_gradient_norm(u, l1), rtol=1e-10
        )


def test_bending_energy_affine_and_quadratic(rng):
    x = grid()
    a = rng.standard_normal((3, 3))
    affine = (x @ a.T + rng.standard_normal(3))[None]
    assert losses.bending_energy(affine).numpy()[0] < 1e-20
    # u_k = 1/2 x^T H_k x: all second derivatives constant; energy = sum_k |H_k|_F^2 (mixed terms twice)
    hs = [(m + m.T) / 2 for m in rng.standard_normal((3, 3, 3))]
    quad = np.stack([0.5 * np.einsum("...i,ij,...j->...", x, h, x) for h in hs], axis=-1)[None]
    expected = sum((h**2).sum() for h in hs)
    np.testing.assert_allclose(losses.bending_energy(quad).numpy(), [expected], rtol=1e-10)
    np.testing.assert_allclose(losses.bending_energy(quad.astype(np.float32)).numpy(), [expected], rtol=1e-4)


def test_gradient_norm_linear_field(rng):
    a = rng.standard_normal((3, 3))
    u = np.stack([grid() @ a.T, grid() @ (2 * a).T], axis=0)  # batch of two linear fields
    np.testing.assert_allclose(losses.gradient_norm(u).numpy(), [(a**2).sum(), 4 * (a**2).sum()], rtol=1e-10)
    np.testing.assert_allclose(
        losses.gradient_norm(u, l1=True).numpy(), [np.abs(a).sum(), 2 * np.abs(a).sum()], rtol=1e-10
    )
    zero = np.zeros((1, 4, 4, 4, 3), np.float32)
    assert losses.gradient_norm(zero).numpy()[0] == 0 and losses.bending_energy(zero).numpy()[0] == 0


# ---------------------------------------------------------------------------------------------
# gradients vs finite differences (float64)
# ---------------------------------------------------------------------------------------------

SMALL = (2, 6, 7, 8)
GRADIENT_CASES = {
    "ssd": (losses.ssd, "image"),
    "ncc": (losses.ncc, "image"),
    "lncc-rectangular": (lambda t, p: losses.lncc(t, p, 5, "rectangular"), "image"),
    "lncc-triangular": (lambda t, p: losses.lncc(t, p, 5, "triangular"), "image"),
    "lncc-gaussian": (lambda t, p: losses.lncc(t, p, 5, "gaussian"), "image"),
    "gmi": (losses.gmi, "image"),
    "dice": (losses.dice_loss, "label"),
    "jaccard": (losses.jaccard_loss, "label"),
    "cross-entropy": (losses.cross_entropy, "label"),
    "dice-multiscale": (lambda t, p: losses.dice_loss(t, p, scales=[0, 1]), "label"),
    "dice-pools": (lambda t, p: losses.dice_loss(t, p, pools=[1, 2, 4]), "label"),
    "centroid": (lambda t, p: losses.centroid_distance(t, p, (1.5, 1.0, 2.0)), "label"),
    "bending": (losses.bending_energy, "ddf"),
    "gradient-l1": (lambda u: losses.gradient_norm(u, l1=True), "ddf"),
    "gradient-l2": (losses.gradient_norm, "ddf"),
}


@pytest.mark.parametrize("name", list(GRADIENT_CASES))
def test_gradients_match_finite_differences(rng, name):
    fn, kind = GRADIENT_CASES[name]
    if kind == "ddf":
        x0 = rng.standard_normal(SMALL + (3,))

        def f(x):
            return tf.reduce_sum(fn(x) * [1.0, 0.5])
    else:
        t = smooth_image(rng, SMALL) if kind == "image" else blob_labels(rng, SMALL, 1)[..., 0]
        x0 = np.clip(smooth_image(rng, SMALL), 0.05, 0.95)  # inside every clip range

        def f(x):
            return tf.reduce_sum(fn(t, x) * [1.0, 0.5])

    x = tf.constant(x0)
    with tf.GradientTape() as tape:
        tape.watch(x)
        value = f(x)
    grad = tape.gradient(value, x).numpy()
    assert grad.dtype == np.float64 and np.all(np.isfinite(grad))
    h = 1e-6
    for _ in range(3):
        v = rng.standard_normal(x0.shape) * (0.05 if kind != "ddf" else 1.0)
        fd = (f(tf.constant(x0 + h * v)).numpy() - f(tf.constant(x0 - h * v)).numpy()) / (2 * h)
        np.testing.assert_allclose((grad * v).sum(), fd, rtol=1e-5, atol=1e-9, err_msg=name)


def test_xla_compiles_and_agrees(rng):
    """All losses and their gradients under tf.function(jit_compile=True) equal the eager results."""
    t = smooth_image(rng, SMALL).astype(np.float32)
    p0 = np.clip(t + 0.05 * rng.standard_normal(t.shape), 0, 1).astype(np.float32)
    u0 = rng.standard_normal(SMALL + (3,)).astype(np.float32)

    def everything(t, p, u):  # the ops that matter for XLA: pooling with custom gradients, einsum, slicing
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([p, u])
            out = [losses.get(n)(t, p) for n in ("ncc", "lncc", "gmi", "cross-entropy")]
            out += [losses.lncc(t, p, 5, "gaussian"), losses.dice_loss(t, p, scales=[0, 1])]
            out += [losses.bending_energy(u), losses.gradient_norm(u, l1=True)]
            total = tf.add_n([tf.reduce_sum(v) for v in out])
        return out, tape.gradient(total, p), tape.gradient(total, u)

    jitted = tf.function(everything, jit_compile=True)(t, tf.constant(p0), tf.constant(u0))
    eager = everything(t, tf.constant(p0), tf.constant(u0))
    for a, b in zip(jitted[0], eager[0], strict=True):
        assert a.shape == (2,)
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
    for a, b in zip(jitted[1:], eager[1:], strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-5 * np.abs(b.numpy()).max())


# ---------------------------------------------------------------------------------------------
# input checking and lookup
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ssd", "ncc", "lncc", "gmi", "dice", "jaccard", "cross-entropy"])
def test_pair_losses_reject_bad_shapes_and_dtypes(rng, name):
    fn = losses.get(name)
    x = rng.random(SMALL)
    with pytest.raises(ValueError, match=r"\[batch, d1, d2, d3\]"):
        fn(x[0], x[0])  # rank 3
    with pytest.raises(ValueError, match=r"\[batch, d1, d2, d3\]"):
        fn(x[..., None, None], x[..., None, None])  # rank 6
    with pytest.raises(ValueError, match="same shape"):
        fn(x, x[:, :-1])
    with pytest.raises(ValueError, match="same shape"):
        fn(x, x[..., None])
    with pytest.raises(ValueError, match=r"\[batch, d1, d2, d3.*complex"):
        fn(x.astype(np.complex64), x)
    with pytest.raises(ValueError, match=r"\[batch, d1, d2, d3"):
        fn(np.array(["a", "b"]), x)


@pytest.mark.parametrize("name", ["bending", "gradient-l1", "gradient-l2"])
def test_ddf_losses_reject_bad_shapes(rng, name):
    fn = losses.get(name)
    for bad in (rng.random((1, 5, 5, 5, 2)), rng.random((5, 5, 5, 3)), rng.random((1, 2, 5, 5, 3))):
        with pytest.raises(ValueError, match=r"\[batch, d1, d2, d3, 3\]"):
            fn(bad)
    with pytest.raises(ValueError, match=r"\[batch, d1, d2, d3, 3\]"):
        fn(np.zeros((1, 4, 4, 4, 3), np.complex128))


def test_get():
    assert losses.get("ssd") is losses.ssd
    assert losses.get("LNCC") is losses.lncc
    assert losses.get("dice") is losses.dice_loss
    assert losses.get("cross_entropy") is losses.cross_entropy
    assert losses.get("cross-entropy") is losses.cross_entropy
    assert losses.get("bending") is losses.bending_energy
    assert losses.get("centroid") is losses.centroid_distance
    for name, l1 in (("gradient-l1", True), ("gradient_l2", False)):
        assert losses.get(name) is (losses.gradient_l1 if l1 else losses.gradient_l2)
    for name in ("ncc", "gmi", "jaccard"):
        assert callable(losses.get(name))
    names = "ssd, ncc, lncc, gmi, dice, jaccard, cross-entropy, centroid"
    with pytest.raises(ValueError, match=f"valid names: {names}"):
        losses.get("mse")


def test_named_gradient_losses_and_sweep():
    ddf = np.random.default_rng(0).normal(size=(1, 6, 6, 6, 3)).astype(np.float32)
    for name, l1 in (("gradient-l1", True), ("gradient-l2", False)):
        fn = losses.get(name)
        assert fn.__name__ == name.replace("-", "_")
        np.testing.assert_allclose(fn(ddf), losses.gradient_norm(ddf, l1=l1))
    fixed = np.random.default_rng(1).random((1, 5, 5, 5)).astype(np.float32)
    curves = losses.sweep({"ssd": losses.ssd}, fixed, [fixed, fixed + 1.0])
    np.testing.assert_allclose(curves["ssd"], [0.0, 1.0], atol=1e-6)
