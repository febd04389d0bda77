"""The augmentation ops behind components/train/augment.py: random draws, the geometric
transforms (composed into one resampling), color jitter, cutout, mixup and cutmix.

Each op takes its validated parameters and a `Draws` of stateless random numbers; see
`Augmenter` in augment.py for the order they run in.
"""
from __future__ import annotations

import math
from typing import Callable

import tensorflow as tf

from components.train.augment_config import CONFIG_KEY

# ----------------------------------------------------------------------------- random draws


class Draws:
    """One op's random numbers for one batch of `n`, from the op's own three seeds.

    `applied` picks the examples the op touches (probability p each); `uniform` and `beta`
    give its random strengths. Stateless: the same seeds give the same draws.
    """

    def __init__(self, seeds: tf.Tensor, n: tf.Tensor, p: float):
        self._seeds, self.n, self._p = seeds, n, p

    def applied(self) -> tf.Tensor:
        """bool [N]."""
        if self._p >= 1.0:
            return tf.ones([self.n], tf.bool)
        return tf.random.stateless_uniform([self.n], self._seeds[0]) < self._p

    def uniform(self, rows: int) -> tf.Tensor:
        """float [rows, N], uniform in [0, 1)."""
        return tf.random.stateless_uniform([rows, self.n], self._seeds[1])

    def beta(self, alpha: float) -> tf.Tensor:
        """float [N] from Beta(alpha, alpha), as a ratio of two gammas (TF has no stateless beta)."""
        gammas = tf.random.stateless_gamma([2, self.n], self._seeds[2], alpha=alpha)
        return tf.math.divide_no_nan(gammas[0], gammas[0] + gammas[1])


def _between(u, lo, hi):
    return lo + (hi - lo) * u


# ----------------------------------------------------------------------------- geometric ops
# Each maps (params, draws, height, width) to [N, 3, 3] transforms from output pixel
# (x, y, 1) to input pixel coordinates. Pixel centers sit at integer coordinates, so flips
# and integer shifts resample exactly.


def _affine(n, a00=1.0, a01=0.0, a02=0.0, a10=0.0, a11=1.0, a12=0.0):
    """[N, 3, 3] affine matrices; each entry is a float or a float [N]."""
    entries = [a00, a01, a02, a10, a11, a12, 0.0, 0.0, 1.0]
    if all(isinstance(e, float) for e in entries):  # the same matrix for every example (flips)
        return tf.broadcast_to(tf.reshape(entries, [1, 3, 3]), [n, 3, 3])
    return tf.reshape(tf.stack([tf.broadcast_to(e, [n]) for e in entries], axis=-1), [-1, 3, 3])


def _about_center(n, h, w, a00, a01, a10, a11):
    """The linear map `a` applied around the image center instead of the origin."""
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    return _affine(n, a00, a01, cx - a00 * cx - a01 * cy, a10, a11, cy - a10 * cx - a11 * cy)


def _horizontal_flip(params, draws, h, w):
    return _affine(draws.n, a00=-1.0, a02=w - 1.0)


def _vertical_flip(params, draws, h, w):
    return _affine(draws.n, a11=-1.0, a12=h - 1.0)


def _random_crop(params, draws, h, w):
    """Pad by `pad` (filled per fill_mode), crop back to H x W at a random offset: an integer shift in [-pad, pad]."""
    pad = params["pad"]
    if pad > min(h, w) // 2:
        raise ValueError(f"{CONFIG_KEY}.random_crop.pad = {pad} is too large for {h}x{w} images: use at most {min(h, w) // 2}.")
    shift = tf.floor(draws.uniform(2) * (2 * pad + 1)) - pad
    return _affine(draws.n, a02=shift[0], a12=shift[1])


def _random_resized_crop(params, draws, h, w):
    u = draws.uniform(4)
    area = _between(u[0], *params["scale"]) * (h * w)
    ratio = tf.exp(_between(u[1], *(math.log(r) for r in params["ratio"])))
    # Clamping to the image keeps this vectorized (no rejection loop); the aspect ratio
    # bends only when the requested crop would not fit.
    crop_w = tf.minimum(tf.sqrt(area * ratio), float(w))
    crop_h = tf.minimum(tf.sqrt(area / ratio), float(h))
    x0, y0 = u[2] * (w - crop_w), u[3] * (h - crop_h)
    sx, sy = crop_w / w, crop_h / h  # centers aligned like tf.image.resize
    return _affine(draws.n, a00=sx, a02=x0 + 0.5 * sx - 0.5, a11=sy, a12=y0 + 0.5 * sy - 0.5)


def _rotation(params, draws, h, w):
    max_radians = params["degrees"] * math.pi / 180.0
    angle = _between(draws.uniform(1)[0], -max_radians, max_radians)
    cos, sin = tf.cos(angle), tf.sin(angle)
    return _about_center(draws.n, h, w, cos, -sin, sin, cos)


def _zoom(params, draws, h, w):
    inverse = 1.0 / _between(draws.uniform(1)[0], *params["range"])
    return _about_center(draws.n, h, w, inverse, 0.0, 0.0, inverse)


def _translation(params, draws, h, w):
    shift = _between(draws.uniform(2), -params["fraction"], params["fraction"])
    return _affine(draws.n, a02=shift[0] * w, a12=shift[1] * h)


GEOMETRIC_TRANSFORMS: dict[str, Callable] = {
    "horizontal_flip": _horizontal_flip,
    "vertical_flip": _vertical_flip,
    "random_resized_crop": _random_resized_crop,
    "random_crop": _random_crop,
    "rotation": _rotation,
    "zoom": _zoom,
    "translation": _translation,
}


def resample(images, matrices, fill, fill_mode):
    """One bilinear resampling of each image by its [3, 3] output->input transform."""
    transforms = tf.reshape(matrices, [-1, 9])[:, :8]  # affine: the last row is (0, 0, 1)

    def project(x, mode):
        return tf.raw_ops.ImageProjectiveTransformV3(
            images=x, transforms=transforms, output_shape=tf.shape(x)[1:3], fill_value=0.0,
            interpolation="BILINEAR", fill_mode=mode,
        )

    if fill_mode != "min":
        out = project(images, fill_mode.upper())
    else:
        # Per-image fill value: resample with 0 outside, then add `fill` in proportion to
        # how much of each output pixel came from outside. Inside pixels stay bit-exact.
        inside = project(tf.ones_like(images[..., :1]), "CONSTANT")
        out = project(images, "CONSTANT") + (1.0 - inside) * fill
    return tf.ensure_shape(out, images.shape)  # the op loses the static H, W


# ----------------------------------------------------------------------------- pixel ops


def active_jitter_strengths(params, channels: int) -> dict:
    """The color_jitter strengths that do something: saturation and hue need RGB."""
    usable = ("brightness", "contrast", "saturation", "hue") if channels == 3 else ("brightness", "contrast")
    return {key: params[key] for key in usable if params[key] > 0}


def color_jitter(strengths, draws, x01):
    """Brightness, contrast, saturation, hue on images scaled to [0, 1] per image (any input range fits)."""
    u = draws.uniform(4)[:, :, None, None, None]  # [4, N, 1, 1, 1]
    if "brightness" in strengths:
        x01 = x01 + _between(u[0], -strengths["brightness"], strengths["brightness"])
    if "contrast" in strengths:
        mean = tf.reduce_mean(x01, axis=[1, 2, 3], keepdims=True)
        x01 = (x01 - mean) * _between(u[1], 1.0 - strengths["contrast"], 1.0 + strengths["contrast"]) + mean
    if "saturation" in strengths:
        gray = tf.image.rgb_to_grayscale(x01)
        x01 = (x01 - gray) * _between(u[2], 1.0 - strengths["saturation"], 1.0 + strengths["saturation"]) + gray
    if "hue" in strengths:
        hsv = tf.image.rgb_to_hsv(tf.clip_by_value(x01, 0.0, 1.0))
        hue = tf.math.floormod(hsv[..., :1] + _between(u[3], -strengths["hue"], strengths["hue"]), 1.0)
        x01 = tf.image.hsv_to_rgb(tf.concat([hue, hsv[..., 1:]], axis=-1))
    return tf.clip_by_value(x01, 0.0, 1.0)


def _box_masks(h, w, box_h, box_w, cy, cx):
    """bool [N, B, H, W]: pixel inside box b of example n; boxes are clipped to the image.

    box_h, box_w, cy, cx: float [N, B]; a box spans rows [cy - box_h/2, cy + box_h/2), rounded.
    """
    rows = tf.range(h, dtype=tf.float32)[None, None, :, None]
    cols = tf.range(w, dtype=tf.float32)[None, None, None, :]

    def inside(coords, center, size):
        start, stop = tf.round(center - size / 2)[..., None, None], tf.round(center + size / 2)[..., None, None]
        return (coords >= start) & (coords < stop)

    return inside(rows, cy, box_h) & inside(cols, cx, box_w)


def cutout(params, draws, x):
    """Erases `count` boxes of `size` x the image side per image, filled with the image's mean."""
    h, w, count = x.shape[1], x.shape[2], params["count"]
    centers = tf.transpose(draws.uniform(2 * count))  # [N, 2 * count]
    box_h = tf.fill([draws.n, count], float(max(1, round(params["size"] * h))))
    box_w = tf.fill([draws.n, count], float(max(1, round(params["size"] * w))))
    boxes = _box_masks(h, w, box_h, box_w, centers[:, :count] * h, centers[:, count:] * w)
    holes = tf.reduce_any(boxes, axis=1)[..., None]
    return tf.where(holes, tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True), x)


# ----------------------------------------------------------------------------- label mixing
# Each example is blended with a random partner from the same batch; soft labels follow
# the share of each image in the result. Examples the op skips keep share 1.


def mixup(params, draws, x, y):
    partner = tf.argsort(draws.uniform(1)[0])
    own = tf.where(draws.applied(), draws.beta(params["alpha"]), 1.0)[:, None]
    x = own[..., None, None] * x + (1.0 - own[..., None, None]) * tf.gather(x, partner)
    return x, own * y + (1.0 - own) * tf.gather(y, partner)


def cutmix(params, draws, x, y):
    h, w = x.shape[1], x.shape[2]
    u = draws.uniform(3)
    partner = tf.argsort(u[0])
    side = tf.where(draws.applied(), tf.sqrt(1.0 - draws.beta(params["alpha"])), 0.0)  # box area = 1 - lam
    box = _box_masks(h, w, side[:, None] * h, side[:, None] * w, u[1][:, None] * h, u[2][:, None] * w)
    box = tf.transpose(box, [0, 2, 3, 1])  # [N, H, W, 1]
    x = tf.where(box, tf.gather(x, partner), x)
    own = 1.0 - tf.reduce_mean(tf.cast(box, tf.float32), axis=[1, 2, 3])[:, None]  # the clipped box's true share
    return x, own * y + (1.0 - own) * tf.gather(y, partner)
