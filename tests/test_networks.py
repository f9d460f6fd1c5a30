"""Registration networks: shapes, identity at initialisation, affine head, save and load."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tutorialreg import networks, warp

SHAPE = (13, 17, 11)  # odd on purpose: the networks pad and crop
TINY = {"num_channel_initial": 2, "extract_levels": (0,)}


def _images(batch: int = 2, shape=SHAPE, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "moving_image": rng.random((batch, *shape), dtype=np.float32),
        "fixed_image": rng.random((batch, *shape), dtype=np.float32),
        "moving_label": (rng.random((batch, *shape, 3)) > 0.5).astype(np.float32),
    }


def _perturb(model: keras.Model, seed: int = 1, scale: float = 0.01) -> None:
    rng = np.random.default_rng(seed)
    model.set_weights([w + scale * rng.standard_normal(w.shape).astype(w.dtype) for w in model.get_weights()])


@pytest.mark.parametrize(
    "builder, kwargs",
    [
        (networks.local_net, {"num_channel_initial": 2, "extract_levels": (0, 1, 2)}),
        (networks.local_net, {"num_channel_initial": 2, "extract_levels": (1, 3)}),
        (networks.unet, {"num_channel_initial": 2, "depth": 2}),
    ],
)
def test_dense_backbones_keep_the_image_grid(builder, kwargs):
    net = builder(SHAPE, **kwargs)
    x = np.random.default_rng(0).random((2, *SHAPE, 2), dtype=np.float32)
    out = net(x)
    assert out.shape == (2, *SHAPE, 3)
    np.testing.assert_array_equal(out, 0.0)  # zero-initialised head: identity transform


def test_global_net_starts_at_identity_and_acts_about_the_centre():
    net = networks.global_net(SHAPE, num_channel_initial=2, depth=2)
    theta = net(np.random.default_rng(0).random((3, *SHAPE, 2), dtype=np.float32))
    assert theta.shape == (3, 4, 3)
    np.testing.assert_allclose(theta, np.repeat(warp.IDENTITY_THETA[None], 3, 0), atol=1e-6)
    # a pure linear change dA leaves the volume centre where it is
    head = networks.AffineHead(SHAPE)
    params = np.zeros((1, 12), np.float32)
    params[0, :9] = [0.1, 0.02, 0, -0.03, 0.05, 0, 0, 0.01, -0.1]
    centre = np.array([(s - 1) / 2 for s in SHAPE], np.float32)
    loc = np.append(centre, 1.0) @ np.asarray(head(params))[0]
    np.testing.assert_allclose(loc, centre, atol=1e-5)


def test_additive_upsampling_sums_channel_groups():
    x = np.random.default_rng(0).random((1, 2, 3, 2, 4), dtype=np.float32)
    up = networks.AdditiveUpsampling((2, 3, 2), 2)(x)  # same size: only the channel sum
    np.testing.assert_allclose(up, x[..., :2] + x[..., 2:], rtol=1e-6)
    assert networks.AdditiveUpsampling((4, 6, 4), 2)(x).shape == (1, 4, 6, 4, 2)


def test_resize3d_keeps_a_constant_and_the_shape():
    x = np.full((2, 3, 4, 5, 2), 0.7, np.float32)
    y = networks.Resize3D((6, 8, 10))(x)
    assert y.shape == (2, 6, 8, 10, 2)
    np.testing.assert_allclose(y, 0.7, rtol=1e-6)


@pytest.mark.parametrize("method", ["ddf", "dvf", "affine", "affine+ddf"])
def test_registration_model_outputs_and_identity(method):
    model = networks.RegistrationModel(
        SHAPE, method, backbone_kwargs={"num_channel_initial": 2, "extract_levels": (0, 1)},
        global_kwargs={"num_channel_initial": 2, "depth": 2},
    )
    x = _images()
    out = model(x)
    assert out["ddf"].shape == (2, *SHAPE, 3)
    assert out["warped_image"].shape == (2, *SHAPE)
    assert out["warped_label"].shape == (2, *SHAPE, 3)
    assert ("theta" in out) == method.startswith("affine")
    assert ("dvf" in out) == (method == "dvf")
    np.testing.assert_allclose(out["ddf"], 0.0, atol=1e-5)
    np.testing.assert_allclose(out["warped_image"], x["moving_image"], atol=1e-5)


def test_registration_model_is_trainable_end_to_end():
    model = networks.RegistrationModel(SHAPE, "affine+ddf",
                                       backbone_kwargs={"num_channel_initial": 2, "extract_levels": (0, 1)},
                                       global_kwargs={"num_channel_initial": 2, "depth": 2})
    x = _images()
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        loss = tf.reduce_mean(tf.square(out["warped_image"] - x["fixed_image"]))
    grads = tape.gradient(loss, model.trainable_variables)
    heads = [g for v, g in zip(model.trainable_variables, grads, strict=True)
             if "extract" in v.path or "affine" in v.path]
    assert heads and all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in heads)


@pytest.mark.parametrize("method", ["ddf", "affine+ddf"])
def test_registration_model_saves_and_loads(tmp_path, method):
    model = networks.RegistrationModel(SHAPE, method, backbone="unet",
                                       backbone_kwargs={"num_channel_initial": 2, "depth": 1},
                                       global_kwargs={"num_channel_initial": 2, "depth": 2})
    _perturb(model)
    x = _images()
    expected = model(x)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, networks.RegistrationModel)
    assert loaded.get_config()["method"] == method
    got = loaded(x)
    for key in ("ddf", "warped_image", "warped_label"):
        np.testing.assert_allclose(got[key], expected[key], atol=1e-5)
    # weights alone, into a model built from the same arguments
    model.save_weights(tmp_path / "w.weights.h5")
    twin = networks.RegistrationModel.from_config(model.get_config())
    twin.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_allclose(twin(x)["ddf"], expected["ddf"], atol=1e-5)


def test_register_accepts_unbatched_numpy():
    model = networks.RegistrationModel(SHAPE, backbone_kwargs=TINY)
    x = _images(batch=1)
    out = model.register(x["moving_image"][0], x["fixed_image"][0], x["moving_label"][0])
    assert out["ddf"].shape == (1, *SHAPE, 3) and isinstance(out["ddf"], np.ndarray)


def test_bad_arguments_raise_value_errors():
    with pytest.raises(ValueError, match="method"):
        networks.RegistrationModel(SHAPE, "bspline")
    with pytest.raises(ValueError, match="backbone"):
        networks.RegistrationModel(SHAPE, "ddf", backbone="global")
    with pytest.raises(ValueError, match="image_size"):
        networks.RegistrationModel((10, 10))
    with pytest.raises(ValueError, match="extract_levels"):
        networks.local_net(SHAPE, extract_levels=())
    model = networks.RegistrationModel(SHAPE, backbone_kwargs=TINY)
    with pytest.raises(ValueError, match=r"moving_image must be \[batch, 13, 17, 11\]"):
        model({"moving_image": np.zeros((1, 12, 17, 11), np.float32),
               "fixed_image": np.zeros((1, *SHAPE), np.float32)})


def test_a_coarse_field_grid_rescales_the_displacement_and_shares_the_weights():
    """A backbone on a half-size grid that outputs a constant field of (1, 2, -1) coarse voxels gives a DDF
    of (2, 5, -1.5) image voxels (image / field size per axis); seg_logits come out on the image grid."""
    kwargs = {"num_channel_initial": 2, "extract_levels": [0, 1]}
    model = networks.RegistrationModel((16, 20, 12), "ddf", backbone_kwargs=kwargs, field_size=(8, 8, 8),
                                       seg_channels=2)
    small = networks.RegistrationModel((8, 8, 8), "ddf", backbone_kwargs=kwargs, seg_channels=2)
    assert [w.shape for w in model.get_weights()] == [w.shape for w in small.get_weights()]
    heads = [layer for layer in model.dense_net.layers if isinstance(layer, keras.layers.Conv3D)
             and layer.name.startswith("extract")]
    assert len(heads) == 2
    for head in heads:  # the backbone averages its levels' fields
        kernel, bias = head.get_weights()
        bias[:] = [1.0, 2.0, -1.0, 0.5, -0.5]
        head.set_weights([np.zeros_like(kernel), bias])
    rng = np.random.default_rng(0)
    out = model.register(rng.random((16, 20, 12)), rng.random((16, 20, 12)))
    np.testing.assert_allclose(out["ddf"][0], np.broadcast_to([2.0, 5.0, -1.5], (16, 20, 12, 3)), rtol=1e-5)
    assert out["seg_logits"].shape == (1, 16, 20, 12, 2)
    with pytest.raises(ValueError, match="field_size and seg_channels need"):
        networks.RegistrationModel((8, 8, 8), "affine", field_size=(4, 4, 4))
