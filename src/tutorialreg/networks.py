"""Registration networks (Keras 3): LocalNet, U-Net, GlobalNet and a registration model.

A *backbone* maps the moving and fixed images, stacked as two channels ``[batch, d1, d2, d3, 2]``, to
a field ``[batch, d1, d2, d3, 3]`` (LocalNet, U-Net) or to an affine ``theta`` ``[batch, 4, 3]``
(GlobalNet). :class:`RegistrationModel` turns that output into a dense displacement field (DDF) on the
fixed grid, in voxels, and warps the moving image (and labels) with it:

- ``method="ddf"``: the backbone's field *is* the DDF;
- ``method="dvf"``: the field is a stationary velocity, integrated by scaling and squaring
  (:func:`tutorialreg.warp.integrate_svf`), so the DDF is (nearly) free of folding;
- ``method="affine"``: GlobalNet's ``theta``, turned into a DDF by :func:`tutorialreg.warp.ddf_from_theta`;
- ``method="affine+ddf"``: GlobalNet's affine first, then a LocalNet/U-Net DDF predicted from the
  affinely warped moving image; the two are composed (:func:`tutorialreg.warp.compose`).

Shapes: volumes ``[batch, d1, d2, d3]`` (a trailing channel of 1 is accepted), labels
``[batch, d1, d2, d3, c]``; moving and fixed images must share the model's ``image_size`` (the data
layer resamples both). Every layer here is registered with Keras, so ``model.save("m.keras")`` and
``keras.models.load_model("m.keras")`` work without ``custom_objects``.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from tutorialreg import warp
from tutorialreg.checks import as_float_tensor, shape3

__all__ = [
    "AdditiveUpsampling",
    "AffineHead",
    "RegistrationModel",
    "Resize3D",
    "build_backbone",
    "global_net",
    "local_net",
    "unet",
]

METHODS = ("ddf", "dvf", "affine", "affine+ddf")
BACKBONES = ("local", "unet", "global")
_register = keras.saving.register_keras_serializable(package="tutorialreg")


def _shape3(shape: Sequence[int], name: str = "image_size") -> tuple[int, int, int]:
    return shape3(shape, name, minimum=2)


def _padded(shape: tuple[int, int, int], levels: int) -> tuple[int, int, int]:
    """Smallest shape >= ``shape`` divisible by ``2**levels`` along every axis."""
    f = 2**levels
    return tuple(-(-s // f) * f for s in shape)  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------ layers
@_register
class Resize3D(keras.layers.Layer):
    """Trilinear resize of ``[batch, d1, d2, d3, c]`` to ``size`` (3 ints), as two 2-D resizes."""

    def __init__(self, size: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        self.size = _shape3(size, "size")

    def call(self, x):
        s1, s2, s3 = self.size
        d1, d2, d3, c = x.shape[1:]
        if (d1, d2, d3) == self.size:
            return x
        b = tf.shape(x)[0]
        y = tf.reshape(x, [-1, d1, d2, d3 * c])  # axes 1, 2
        y = tf.image.resize(y, (s1, s2), method="bilinear")
        y = tf.reshape(y, [-1, s2, d3, c])  # axis 2 (rows s2 unchanged), axis 3
        y = tf.image.resize(y, (s2, s3), method="bilinear")
        return tf.reshape(y, [b, s1, s2, s3, c])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.size, input_shape[-1])

    def get_config(self) -> dict:
        return {**super().get_config(), "size": list(self.size)}


@_register
class AdditiveUpsampling(keras.layers.Layer):
    """LocalNet's parameter-free up-sampling: resize ``[b, d1, d2, d3, c]`` to ``size``, then sum the
    channels in ``c // out_channels`` groups -> ``[b, s1, s2, s3, out_channels]``."""

    def __init__(self, size: Sequence[int], out_channels: int, **kwargs):
        super().__init__(**kwargs)
        self.size, self.out_channels = _shape3(size, "size"), int(out_channels)
        self.resize = Resize3D(self.size)

    def call(self, x):
        c = x.shape[-1]
        if c % self.out_channels:
            raise ValueError(f"AdditiveUpsampling: {c} channels do not split into {self.out_channels}")
        groups = tf.split(self.resize(x), c // self.out_channels, axis=-1)
        return tf.add_n(groups)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.size, self.out_channels)

    def get_config(self) -> dict:
        return {**super().get_config(), "size": list(self.size), "out_channels": self.out_channels}


@_register
class AffineHead(keras.layers.Layer):
    """12 numbers per case -> ``theta`` ``[batch, 4, 3]`` (row-vector convention of :mod:`warp`).

    The numbers are a change ``dA`` (9) of the linear part and a shift ``t`` (3) in the book's one centred
    convention, :func:`tutorialreg.warp.affine_from_centred`: normalised coordinates ``u = (p - c) / s``
    map to ``u @ (I + dA) + t``. All zeros is the identity, so a zero-initialised dense layer starts at
    "no motion".
    """

    def __init__(self, image_size: Sequence[int], **kwargs):
        super().__init__(**kwargs)
        self.image_size = _shape3(image_size)

    def call(self, params):
        linear = tf.eye(3) + tf.reshape(params[:, :9], [-1, 3, 3])
        return warp.affine_from_centred(linear, params[:, 9:], self.image_size)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 4, 3)

    def get_config(self) -> dict:
        return {**super().get_config(), "image_size": list(self.image_size)}


# ------------------------------------------------------------------------------------------ blocks
def _norm(x, norm: str, name: str):
    if norm == "batch":
        return keras.layers.BatchNormalization(name=name)(x)
    if norm == "none":
        return x
    raise ValueError(f"norm must be 'batch' or 'none', got {norm!r}")


def _conv(x, channels: int, kernel: int, norm: str, name: str, relu: bool = True):
    x = keras.layers.Conv3D(channels, kernel, padding="same", use_bias=norm == "none", name=f"{name}_conv")(x)
    x = _norm(x, norm, f"{name}_norm")
    return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _residual(x, norm: str, name: str):
    channels = x.shape[-1]
    y = _conv(x, channels, 3, norm, f"{name}_a")
    y = _conv(y, channels, 3, norm, f"{name}_b", relu=False)
    return keras.layers.ReLU(name=f"{name}_relu")(keras.layers.Add(name=f"{name}_add")([x, y]))


def _inputs(image_size: tuple[int, int, int], levels: int, name: str):
    """Input ``[b, d1, d2, d3, 2]`` zero-padded (at the far end) to a multiple of ``2**levels``."""
    inp = keras.Input((*image_size, 2), name=f"{name}_images")
    padded = _padded(image_size, levels)
    pad = [(0, p - s) for s, p in zip(image_size, padded, strict=True)]
    x = keras.layers.ZeroPadding3D(pad, name=f"{name}_pad")(inp) if any(p for _, p in pad) else inp
    return inp, x, padded


def _crop(x, image_size: tuple[int, int, int], name: str):
    extra = [p - s for s, p in zip(image_size, x.shape[1:4], strict=True)]
    return keras.layers.Cropping3D([(0, e) for e in extra], name=name)(x) if any(extra) else x


def _head(x, out_channels: int, init: str, name: str):
    initializer = "zeros" if init == "zeros" else keras.initializers.RandomNormal(stddev=1e-3)
    return keras.layers.Conv3D(out_channels, 3, padding="same", kernel_initializer=initializer,
                               bias_initializer="zeros", name=name)(x)


# ------------------------------------------------------------------------------------------ backbones
def local_net(
    image_size: Sequence[int],
    num_channel_initial: int = 16,
    extract_levels: Sequence[int] = (0, 1, 2, 3),
    out_channels: int = 3,
    norm: str = "batch",
    out_kernel_initializer: str = "zeros",
    name: str = "local_net",
) -> keras.Model:
    """LocalNet (Hu et al. 2018, as in DeepReg): ``[b, d1, d2, d3, 2] -> [b, d1, d2, d3, out_channels]``.

    Encoder: one level per 2x down-sampling up to ``max(extract_levels)``, each a convolution (7^3 at
    level 0, 3^3 after), a residual block and max-pooling, channels ``num_channel_initial * 2**level``.
    Decoder: transposed convolution + *additive up-sampling* (resize and sum channel groups) + the
    encoder's skip, then a convolution and a residual block, down to ``min(extract_levels)``. At every
    extract level a 3^3 convolution gives a field that is resized to the image grid; the output is their
    mean. ``out_kernel_initializer="zeros"`` starts at the identity transform (DDF = 0).
    """
    image_size = _shape3(image_size)
    levels = sorted({int(v) for v in extract_levels})
    if not levels or levels[0] < 0:
        raise ValueError(f"extract_levels must be non-negative ints, got {extract_levels}")
    depth = levels[-1]
    inp, x, padded = _inputs(image_size, depth, name)
    skips = []
    for lvl in range(depth):
        ch = num_channel_initial * 2**lvl
        x = _conv(x, ch, 7 if lvl == 0 else 3, norm, f"down{lvl}")
        x = _residual(x, norm, f"down{lvl}_res")
        skips.append(x)
        x = keras.layers.MaxPool3D(2, padding="same", name=f"down{lvl}_pool")(x)
    x = _conv(x, num_channel_initial * 2**depth, 3, norm, "bottom")
    fields = []
    for lvl in range(depth, levels[0] - 1, -1):
        if lvl < depth:
            ch = num_channel_initial * 2**lvl
            size = tuple(p // 2**lvl for p in padded)
            up = keras.layers.Conv3DTranspose(ch, 3, strides=2, padding="same", use_bias=norm == "none",
                                              name=f"up{lvl}_deconv")(x)
            up = keras.layers.ReLU(name=f"up{lvl}_deconv_relu")(_norm(up, norm, f"up{lvl}_deconv_norm"))
            add = AdditiveUpsampling(size, ch, name=f"up{lvl}_additive")(x)
            x = keras.layers.Add(name=f"up{lvl}_sum")([up, add, skips[lvl]])
            x = _conv(x, ch, 3, norm, f"up{lvl}")
            x = _residual(x, norm, f"up{lvl}_res")
        if lvl in levels:
            field = _head(x, out_channels, out_kernel_initializer, f"extract{lvl}")
            fields.append(Resize3D(padded, name=f"extract{lvl}_resize")(field) if lvl else field)
    out = fields[0] if len(fields) == 1 else keras.layers.Average(name="extract_mean")(fields)
    return keras.Model(inp, _crop(out, image_size, f"{name}_crop"), name=name)


def unet(
    image_size: Sequence[int],
    num_channel_initial: int = 16,
    depth: int = 3,
    out_channels: int = 3,
    norm: str = "batch",
    out_kernel_initializer: str = "zeros",
    name: str = "unet",
) -> keras.Model:
    """U-Net: ``[b, d1, d2, d3, 2] -> [b, d1, d2, d3, out_channels]``; two 3^3 convolutions per level,
    ``depth`` max-poolings, trilinear up-sampling and concatenated skips, a zero-initialised head."""
    image_size = _shape3(image_size)
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    inp, x, padded = _inputs(image_size, depth, name)
    skips = []
    for lvl in range(depth):
        ch = num_channel_initial * 2**lvl
        x = _conv(_conv(x, ch, 3, norm, f"down{lvl}a"), ch, 3, norm, f"down{lvl}b")
        skips.append(x)
        x = keras.layers.MaxPool3D(2, padding="same", name=f"down{lvl}_pool")(x)
    ch = num_channel_initial * 2**depth
    x = _conv(_conv(x, ch, 3, norm, "bottom_a"), ch, 3, norm, "bottom_b")
    for lvl in range(depth - 1, -1, -1):
        ch = num_channel_initial * 2**lvl
        x = Resize3D(tuple(p // 2**lvl for p in padded), name=f"up{lvl}_resize")(x)
        x = keras.layers.Concatenate(name=f"up{lvl}_concat")([x, skips[lvl]])
        x = _conv(_conv(x, ch, 3, norm, f"up{lvl}a"), ch, 3, norm, f"up{lvl}b")
    out = _head(x, out_channels, out_kernel_initializer, "head")
    return keras.Model(inp, _crop(out, image_size, f"{name}_crop"), name=name)


def global_net(
    image_size: Sequence[int],
    num_channel_initial: int = 16,
    depth: int = 4,
    norm: str = "batch",
    name: str = "global_net",
) -> keras.Model:
    """GlobalNet: LocalNet's encoder, flattened, then a zero-initialised dense layer of 12 numbers and
    :class:`AffineHead`: ``[b, d1, d2, d3, 2] -> theta [b, 4, 3]`` (starts at the identity)."""
    image_size = _shape3(image_size)
    inp, x, _ = _inputs(image_size, depth, name)
    for lvl in range(depth):
        x = _conv(x, num_channel_initial * 2**lvl, 7 if lvl == 0 else 3, norm, f"down{lvl}")
        x = _residual(x, norm, f"down{lvl}_res")
        x = keras.layers.MaxPool3D(2, padding="same", name=f"down{lvl}_pool")(x)
    x = _conv(x, num_channel_initial * 2**depth, 3, norm, "bottom")
    x = keras.layers.Flatten(name="flatten")(x)
    params = keras.layers.Dense(12, kernel_initializer="zeros", bias_initializer="zeros", name="affine")(x)
    return keras.Model(inp, AffineHead(image_size, name="theta")(params), name=name)


def build_backbone(name: str, image_size: Sequence[int], **kwargs) -> keras.Model:
    """``"local"`` -> :func:`local_net`, ``"unet"`` -> :func:`unet`, ``"global"`` -> :func:`global_net`."""
    builders = {"local": local_net, "unet": unet, "global": global_net}
    if name not in builders:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {name!r}")
    return builders[name](image_size, **kwargs)


# ------------------------------------------------------------------------------------------ model
def _volume(x, name: str, image_size: tuple[int, int, int]) -> tf.Tensor:
    expected = f"[batch, {', '.join(map(str, image_size))}]"
    x = as_float_tensor(x, name, (4, 5), expected, tf.float32)
    if x.shape.rank == 5 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.shape.rank != 4 or tuple(x.shape[1:]) != image_size:
        raise ValueError(f"{name} must be {expected} float32, got {tuple(x.shape)}")
    return x


@_register
class RegistrationModel(keras.Model):
    """Moving + fixed image -> DDF, warped image (and warped labels).

    :param image_size: ``(d1, d2, d3)`` of both images (the fixed grid).
    :param method: ``"ddf"``, ``"dvf"``, ``"affine"`` or ``"affine+ddf"`` (see the module docstring).
    :param backbone: ``"local"`` or ``"unet"`` (dense methods); ``"affine"`` always uses GlobalNet.
    :param backbone_kwargs: keyword arguments of the backbone builder (e.g. ``num_channel_initial``).
    :param global_kwargs: keyword arguments of :func:`global_net` (affine methods).
    :param integration_steps: scaling-and-squaring steps for ``"dvf"``.
    :param field_size: ``(n1, n2, n3)`` grid the dense backbone works on (dense methods; default
        ``image_size``). The images are resized to it (trilinear), and the backbone's field, in voxels of
        that grid, is integrated there (``"dvf"``) and then resized to ``image_size`` and rescaled to its
        voxels. The weights do not depend on ``image_size``: a model trained on images of ``field_size``
        registers larger images with the same weights, at the cost of a field no finer than ``field_size``.
    :param seg_channels: extra output channels of the dense backbone, returned as ``seg_logits``
        ``[b, d1, d2, d3, seg_channels]`` for an auxiliary segmentation loss in training (the registration
        does not use them).

    ``model({"moving_image": m, "fixed_image": f, "moving_label": l})`` with ``m, f`` ``[b, d1, d2, d3]``
    and the optional ``l`` ``[b, d1, d2, d3, c]`` returns a dict: ``ddf`` ``[b, d1, d2, d3, 3]`` (voxels,
    ``warped(x) = moving(x + ddf(x))``), ``warped_image`` ``[b, d1, d2, d3]``, ``warped_label``
    ``[b, d1, d2, d3, c]`` (linear interpolation, values in [0, 1]); ``dvf`` for ``"dvf"``; ``theta``
    ``[b, 4, 3]`` for the affine methods.
    """

    def __init__(
        self,
        image_size: Sequence[int],
        method: str = "ddf",
        backbone: str = "local",
        backbone_kwargs: dict | None = None,
        global_kwargs: dict | None = None,
        integration_steps: int = 7,
        field_size: Sequence[int] | None = None,
        seg_channels: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.image_size = _shape3(image_size)
        self.method, self.backbone_name = method, backbone
        self.backbone_kwargs, self.global_kwargs = dict(backbone_kwargs or {}), dict(global_kwargs or {})
        self.integration_steps = int(integration_steps)
        self.field_size = self.image_size if field_size is None else _shape3(field_size, "field_size")
        self.seg_channels = int(seg_channels)
        if self.seg_channels < 0:
            raise ValueError(f"seg_channels must be >= 0, got {seg_channels!r}")
        if method not in ("ddf", "dvf") and (self.field_size != self.image_size or self.seg_channels):
            raise ValueError(f"field_size and seg_channels need method 'ddf' or 'dvf', got {method!r}")
        self.global_net = self.dense_net = None
        if method in ("affine", "affine+ddf"):
            self.global_net = global_net(self.image_size, **self.global_kwargs)
        if method != "affine":
            if backbone not in ("local", "unet"):
                raise ValueError(f"method {method!r} needs backbone 'local' or 'unet', got {backbone!r}")
            kwargs_ = dict(self.backbone_kwargs)
            if self.seg_channels:
                kwargs_["out_channels"] = 3 + self.seg_channels
            self.dense_net = build_backbone(backbone, self.field_size, **kwargs_)
        if self.field_size != self.image_size:
            self.to_field = Resize3D(self.field_size, name="to_field_size")
            self.to_image = Resize3D(self.image_size, name="to_image_size")
            # a displacement of one field voxel is image / field image voxels along each axis
            ratios = [i / f for i, f in zip(self.image_size, self.field_size, strict=True)]
            self.field_scale = tf.constant(ratios, tf.float32)
        self.built = True  # the sub-networks are functional models, built at construction

    def build(self, input_shape=None) -> None:
        self.built = True

    def call(self, inputs: dict, training: bool = False) -> dict:
        moving = _volume(inputs["moving_image"], "moving_image", self.image_size)
        fixed = _volume(inputs["fixed_image"], "fixed_image", self.image_size)
        out = {}
        if self.global_net is not None:
            theta = self.global_net(tf.stack([moving, fixed], axis=-1), training=training)
            out["theta"] = theta
            ddf = warp.ddf_from_theta(theta, self.image_size)
        if self.dense_net is not None:
            source = moving if self.global_net is None else warp.warp(moving, ddf)
            pair = tf.stack([source, fixed], axis=-1)
            coarse = self.field_size != self.image_size
            field = self.dense_net(self.to_field(pair) if coarse else pair, training=training)
            if self.seg_channels:
                seg, field = field[..., 3:], field[..., :3]
                out["seg_logits"] = self.to_image(seg) if coarse else seg
            if self.method == "dvf":
                out["dvf"] = self.to_image(field) * self.field_scale if coarse else field
                field = warp.integrate_svf(field, self.integration_steps)
            if coarse:
                field = self.to_image(field) * self.field_scale
            ddf = field if self.global_net is None else warp.compose(ddf, field)
        out["ddf"] = ddf
        out["warped_image"] = warp.warp(moving, ddf)
        if inputs.get("moving_label") is not None:
            label = tf.convert_to_tensor(inputs["moving_label"], tf.float32)
            if label.shape.rank == 4:
                label = label[..., None]
            out["warped_label"] = warp.warp(label, ddf)
        return out

    def register(self, moving_image, fixed_image, moving_label=None) -> dict[str, np.ndarray]:
        """Inference on numpy arrays (batch axis optional): the :meth:`call` outputs as numpy arrays."""
        def batch(x, rank):
            x = np.asarray(x, np.float32)
            return x[None] if x.ndim == rank - 1 else x

        inputs = {"moving_image": batch(moving_image, 4), "fixed_image": batch(fixed_image, 4)}
        if moving_label is not None:
            inputs["moving_label"] = batch(moving_label, 5)
        return {k: np.asarray(v) for k, v in self(inputs, training=False).items()}

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "image_size": list(self.image_size),
            "method": self.method,
            "backbone": self.backbone_name,
            "backbone_kwargs": self.backbone_kwargs,
            "global_kwargs": self.global_kwargs,
            "integration_steps": self.integration_steps,
            "field_size": list(self.field_size),
            "seg_channels": self.seg_channels,
        }
