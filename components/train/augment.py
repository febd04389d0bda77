"""Training-time image augmentation: a validated policy from the config, applied to batches.

The policy is the `augmentation:` section of the pipeline config: a mapping from op name
to its parameters (`{}` or `null` for the defaults, `false` or `p: 0` to switch one off,
`enabled: false` to switch all off; `fill_mode` sets how geometric ops fill pixels from
outside the image, see FILL_MODES). It is validated up front: an unknown op or parameter,
or a value out of range, raises a ValueError that names it and what is allowed.

    augmentation:
      horizontal_flip: {p: 0.5}
      random_crop: {pad: 2}          # 2 for 8x8 images, 4 for 32x32
      color_jitter: {brightness: 0.2, contrast: 0.2}
      mixup: {alpha: 0.2}

Ops run in a fixed order, whatever order the config lists them in: the geometric ops
(flips, crops, rotation, zoom, translation) are composed into one resampling per image,
then color_jitter, cutout, mixup and cutmix. Each op is applied to each example with
probability `p`, with its own random strength. Everything is vectorized over the batch.

Images are float [N, H, W, C] in any value range (they come out of the Transform,
standardized). Every op except mixup/cutmix keeps each image inside its own [min, max];
mixup/cutmix blend two images, so their output stays inside the batch's [min, max].
Labels stay as given (int [N]) unless `policy.mixes_labels` (mixup or cutmix on):
then they become soft one-hot float32 [N, K] whose rows sum to 1, and the model needs
`CategoricalCrossentropy` / `CategoricalAccuracy` instead of the sparse versions.

Randomness is stateless: the output depends only on the build seed, the batch index and
the inputs, so a run is reproducible (eager and graph runs may differ in the last float
bits of resampled pixels; tf.data always runs graphs). Usage in the Trainer, on the train split only
(nothing here touches the model, so eval and serving never see augmentation):

    policy = AugmentationPolicy.from_config(config.get("augmentation"), num_classes=10)
    augment = policy.build(seed=42)
    train_ds = augment.apply(train_ds)      # batches of (images, labels), new draws each epoch
    # or with your own batch counter (put .repeat() BEFORE .enumerate(), otherwise the
    # index restarts every epoch and every epoch sees the same augmentations):
    train_ds = train_ds.repeat().enumerate().map(lambda i, batch: augment(batch[0], batch[1], i))

All ops are created under the `augmentation` name scope (`AUGMENTATION_OP_PREFIX`), so a
test can prove that a serving graph contains none of them.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Mapping

import tensorflow as tf

from components.train.augment_ops import (
    GEOMETRIC_TRANSFORMS, Draws, active_jitter_strengths, color_jitter, cutmix, cutout, mixup, resample,
)

AUGMENTATION_SCOPE = "augmentation"
AUGMENTATION_OP_PREFIX = AUGMENTATION_SCOPE + "/"
FILL_MODES = ("min", "nearest", "reflect")  # "min": outside pixels get the image's minimum (its background)
POLICY_OPTIONS = ("enabled", "fill_mode")


# ----------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class _Number:
    """A float (or int if `integer`) parameter in [lo, hi] (lo excluded if `lo_open`)."""

    default: float
    lo: float
    hi: float
    lo_open: bool = False
    integer: bool = False

    def allowed(self) -> str:
        kind = "an integer" if self.integer else "a number"
        return f"{kind} in {'(' if self.lo_open else '['}{self.lo}, {self.hi}]"

    def check(self, value: Any, where: str) -> float:
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not is_number or (self.integer and value != int(value)):
            raise ValueError(f"{where} must be {self.allowed()}, got {value!r}.")
        too_low = value <= self.lo if self.lo_open else value < self.lo
        if too_low or value > self.hi or math.isnan(value):
            raise ValueError(f"{where} = {value!r} is out of range: it must be {self.allowed()}.")
        return int(value) if self.integer else float(value)


@dataclass(frozen=True)
class _Range:
    """A [low, high] pair with low <= high, both allowed by `bound`."""

    default: tuple
    bound: _Number

    def check(self, value: Any, where: str) -> tuple:
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ValueError(f"{where} must be a [low, high] pair of numbers, each {self.bound.allowed()}; got {value!r}.")
        low, high = (self.bound.check(v, where) for v in value)
        if low > high:
            raise ValueError(f"{where} = {list(value)!r}: low must be <= high.")
        return (low, high)


def _p(default: float = 1.0) -> _Number:
    return _Number(default, 0.0, 1.0)


# Op name -> parameter specs. The order here is the order ops run in.
OP_PARAMS: dict[str, dict[str, _Number | _Range]] = {
    "horizontal_flip": {"p": _p(0.5)},
    "vertical_flip": {"p": _p(0.5)},
    "random_resized_crop": {
        "p": _p(),
        "scale": _Range((0.08, 1.0), _Number(0, 0.0, 1.0, lo_open=True)),  # crop area / image area
        "ratio": _Range((3 / 4, 4 / 3), _Number(0, 0.0, 10.0, lo_open=True)),  # crop width / height
    },
    "random_crop": {"p": _p(), "pad": _Number(2, 0, 256, integer=True)},  # pad, then crop back to H x W
    "rotation": {"p": _p(), "degrees": _Number(15.0, 0.0, 180.0)},  # angle uniform in [-degrees, degrees]
    "zoom": {"p": _p(), "range": _Range((0.9, 1.1), _Number(0, 0.1, 10.0))},  # factor > 1 zooms in
    "translation": {"p": _p(), "fraction": _Number(0.1, 0.0, 0.5)},  # max shift / image side
    "color_jitter": {
        "p": _p(),
        "brightness": _Number(0.2, 0.0, 1.0),  # shift by up to this fraction of the image's value range
        "contrast": _Number(0.2, 0.0, 1.0),  # factor in [1 - contrast, 1 + contrast]
        "saturation": _Number(0.2, 0.0, 1.0),  # factor in [1 - saturation, 1 + saturation]; RGB only
        "hue": _Number(0.0, 0.0, 0.5),  # hue shift in turns; RGB only
    },
    "cutout": {"p": _p(), "size": _Number(0.25, 0.0, 1.0, lo_open=True), "count": _Number(1, 1, 16, integer=True)},
    "mixup": {"p": _p(), "alpha": _Number(0.2, 0.0, 10.0, lo_open=True)},
    "cutmix": {"p": _p(), "alpha": _Number(1.0, 0.0, 10.0, lo_open=True)},
}
GEOMETRIC_OPS = ("horizontal_flip", "vertical_flip", "random_resized_crop", "random_crop", "rotation", "zoom", "translation")
LABEL_MIXING_OPS = ("mixup", "cutmix")


def _unknown(kind: str, name: Any, allowed) -> ValueError:
    close = difflib.get_close_matches(str(name), list(allowed), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(f"Unknown augmentation {kind} {name!r}.{hint} Allowed: {', '.join(allowed)}.")


def _check_op(name: str, raw: Any) -> dict | None:
    """Validated params of one op with defaults filled in, or None when it is switched off."""
    specs = OP_PARAMS[name]
    if raw is False:
        return None
    if raw is None or raw is True:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"augmentation.{name} must be a mapping of parameters ({', '.join(specs)}), true/false or null; got {raw!r}.")
    for key in raw:
        if key not in specs:
            raise _unknown(f"parameter for {name}:", key, specs)
    params = {key: spec.check(raw[key], f"augmentation.{name}.{key}") if key in raw else spec.default for key, spec in specs.items()}
    return params if params["p"] > 0 else None


# ----------------------------------------------------------------------------- policy


class AugmentationPolicy:
    """Which augmentation ops run, with what probability and strength. Validated on creation.

    Args:
        ops: op name -> params (missing params take their defaults; ops with p=0 are dropped).
        num_classes: number of classes K (the width of soft labels under mixup/cutmix).
        fill_mode: how geometric ops fill pixels from outside the image: one of FILL_MODES.

    Example:

    >>> policy = AugmentationPolicy.from_config({"horizontal_flip": {}, "mixup": {"alpha": 0.2}}, num_classes=10)
    >>> policy.mixes_labels
    True
    >>> augment = policy.build(seed=0)   # augment(images, labels, index) -> (images, labels)
    """

    def __init__(self, ops: Mapping[str, Mapping[str, Any]], num_classes: int, fill_mode: str = "min"):
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
        if fill_mode not in FILL_MODES:
            raise ValueError(f"augmentation.fill_mode = {fill_mode!r} is not allowed; use one of {', '.join(FILL_MODES)}.")
        for name in ops:
            if name not in OP_PARAMS:
                raise _unknown("op", name, OP_PARAMS)
        checked = {name: _check_op(name, ops[name]) for name in OP_PARAMS if name in ops}  # run order, not config order
        self.ops = {name: params for name, params in checked.items() if params is not None}
        self.num_classes = num_classes
        self.fill_mode = fill_mode

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None, num_classes: int) -> "AugmentationPolicy":
        """Validates the `augmentation:` config section (a plain dict from YAML); None or {} means no augmentation."""
        config = {} if config is None else config
        if not isinstance(config, Mapping):
            raise ValueError(f"The augmentation config must be a mapping of op name -> parameters, got {type(config).__name__}: {config!r}.")
        for key in config:
            if key not in OP_PARAMS and key not in POLICY_OPTIONS:
                raise _unknown("op", key, list(OP_PARAMS) + list(POLICY_OPTIONS))
        enabled = config.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ValueError(f"augmentation.enabled must be true or false, got {enabled!r}.")
        policy = cls({name: config[name] for name in OP_PARAMS if name in config}, num_classes, config.get("fill_mode", "min"))
        return policy if enabled else cls({}, num_classes, policy.fill_mode)  # validated even when off

    @property
    def enabled(self) -> bool:
        """False when no op would ever run: `build()` then returns the identity."""
        return bool(self.ops)

    @property
    def mixes_labels(self) -> bool:
        """True when mixup or cutmix is on: labels come out soft, float32 [N, num_classes]."""
        return any(name in self.ops for name in LABEL_MIXING_OPS)

    def describe(self) -> str:
        """One line naming the ops and their params, e.g. for a preview title or a log."""
        if not self.ops:
            return "no augmentation"

        def fmt(v):
            return f"[{v[0]:g}, {v[1]:g}]" if isinstance(v, tuple) else f"{v:g}"

        return ", ".join(f"{name}({', '.join(f'{k}={fmt(v)}' for k, v in params.items())})" for name, params in self.ops.items())

    def build(self, seed: int) -> "Augmenter":
        """The augmentation function for this policy, seeded (an int)."""
        return Augmenter(self, seed)

    def __repr__(self) -> str:
        return f"AugmentationPolicy({self.describe()}; num_classes={self.num_classes}, fill_mode={self.fill_mode!r})"


# ----------------------------------------------------------------------------- the function

_SEEDS_PER_OP = 3  # see Draws


class Augmenter:
    """`policy.build(seed)`: call it on a batch as `augment(images, labels, index)`.

    Args (of the call):
        images: float [N, H, W, C] (H, W, C known statically), any value range.
        labels: int [N] (or [N, 1]) class ids; float [N, K] soft labels are accepted too.
        index: int scalar, e.g. the batch number from `Dataset.enumerate()`; the random
            draws come from (seed, index). None: derived from the batch contents
            (reproducible, but an identical batch gets identical augmentations).

    Returns:
        (images, labels): images with the input's shape and dtype; labels unchanged, or
        float32 [N, num_classes] soft labels if `policy.mixes_labels`. With no op enabled,
        the input tensors themselves.

    Example:

    >>> augment = AugmentationPolicy.from_config({"random_crop": {"pad": 2}}, 10).build(seed=1)
    >>> images, labels = augment(tf.zeros([4, 8, 8, 1]), tf.constant([0, 1, 2, 3]), index=0)
    """

    def __init__(self, policy: AugmentationPolicy, seed: int):
        if isinstance(seed, bool) or not isinstance(seed, int) or not -(2**63) <= seed < 2**63:
            raise ValueError(f"seed must be an int64 (an int in [-2**63, 2**63)), got {seed!r}.")
        self.policy = policy
        self.seed = seed

    def apply(self, dataset: tf.data.Dataset) -> tf.data.Dataset:
        """Augments a dataset of (images, labels) batches, with fresh draws on every pass.

        Each batch's index comes from `tf.data.Dataset.random(seed, rerandomize_each_iteration=True)`:
        reproducible for a given seed, and different in each epoch over a finite dataset.
        """
        if not self.policy.enabled:
            return dataset
        indices = tf.data.Dataset.random(seed=self.seed, rerandomize_each_iteration=True)
        return tf.data.Dataset.zip((dataset, indices)).map(
            lambda batch, index: self(batch[0], batch[1], index), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )

    @tf.autograph.experimental.do_not_convert  # plain graph code: nothing for AutoGraph to convert
    def __call__(self, images, labels, index=None):
        policy = self.policy
        if not policy.enabled:
            return images, labels
        with tf.name_scope(AUGMENTATION_SCOPE):
            images, labels = tf.convert_to_tensor(images), tf.convert_to_tensor(labels)
            _check_batch(images, labels, policy)
            draws = self._draws(images, index)
            x = tf.cast(images, tf.float32)
            x = self._per_image_ops(x, draws)
            if policy.mixes_labels:
                labels = _soft_labels(labels, policy.num_classes)
                if "mixup" in policy.ops:
                    x, labels = mixup(policy.ops["mixup"], draws["mixup"], x, labels)
                if "cutmix" in policy.ops:
                    x, labels = cutmix(policy.ops["cutmix"], draws["cutmix"], x, labels)
            return tf.cast(x, images.dtype), labels

    def _per_image_ops(self, x, draws):
        """Geometric ops, color_jitter and cutout; each image stays within its own [min, max]."""
        ops = self.policy.ops
        h, w = x.shape[1], x.shape[2]
        lo = tf.reduce_min(x, axis=[1, 2, 3], keepdims=True)
        hi = tf.reduce_max(x, axis=[1, 2, 3], keepdims=True)
        geometric = [name for name in GEOMETRIC_OPS if name in ops]
        if geometric:
            matrix = None
            for name in geometric:  # composed in run order: one resampling, one blur at most
                op_matrix = GEOMETRIC_TRANSFORMS[name](ops[name], draws[name], h, w)
                op_matrix = tf.where(draws[name].applied()[:, None, None], op_matrix, tf.eye(3))
                matrix = op_matrix if matrix is None else matrix @ op_matrix
            x = resample(x, matrix, lo, self.policy.fill_mode)
        jitter = active_jitter_strengths(ops["color_jitter"], x.shape[-1]) if "color_jitter" in ops else {}
        if jitter:  # on a grayscale image, saturation/hue alone leave it untouched
            span = tf.maximum(hi - lo, 1e-12)
            jittered = color_jitter(jitter, draws["color_jitter"], (x - lo) / span) * span + lo
            x = _where_applied(draws["color_jitter"], jittered, x)
        if "cutout" in ops:
            x = _where_applied(draws["cutout"], cutout(ops["cutout"], draws["cutout"], x), x)
        return tf.clip_by_value(x, lo, hi)  # rounding and interpolation never leave the image's range

    def _draws(self, images, index) -> dict[str, Draws]:
        """Per-op random draws: seeds split from (build seed, batch index); an op's seeds depend
        only on its name's position in OP_PARAMS, so enabling another op changes nothing else."""
        if index is None:
            # No counter given: fingerprint the batch, so different batches get different draws.
            index = tf.bitcast(tf.fingerprint(tf.reshape(tf.fingerprint(images), [1, -1]))[0], tf.int64)
        index = tf.cast(index, tf.int64)
        if index.shape.rank != 0:
            raise ValueError(f"index must be a scalar integer (the batch number), got shape {index.shape}.")
        batch_seed = tf.random.experimental.stateless_fold_in(tf.constant([self.seed, 0], tf.int64), index)
        seeds = tf.random.experimental.stateless_split(batch_seed, _SEEDS_PER_OP * len(OP_PARAMS))
        n = tf.shape(images)[0]
        first = {name: _SEEDS_PER_OP * i for i, name in enumerate(OP_PARAMS)}
        return {
            name: Draws(seeds[first[name] : first[name] + _SEEDS_PER_OP], n, params["p"])
            for name, params in self.policy.ops.items()
        }


def _where_applied(draws, new, old):
    return tf.where(draws.applied()[:, None, None, None], new, old)


def _soft_labels(labels, num_classes):
    """Int class ids [N] or [N, 1] -> one-hot float32 [N, K]; soft labels pass through."""
    if labels.dtype.is_floating:
        return tf.cast(labels, tf.float32)
    ids = tf.reshape(labels, [-1])
    valid = tf.reduce_all((ids >= 0) & (ids < num_classes))
    check = tf.debugging.Assert(valid, [f"labels must be class ids in [0, {num_classes}); got", ids], summarize=8)
    with tf.control_dependencies([check]):
        return tf.one_hot(ids, num_classes, dtype=tf.float32)


def _check_batch(images, labels, policy):
    if images.shape.rank != 4:
        raise ValueError(f"augment expects a batch of images [N, H, W, C], got shape {images.shape}; batch the dataset before augmenting.")
    if None in images.shape[1:]:
        raise ValueError(f"augment needs static H, W, C, got shape {images.shape}; set the shape (e.g. tf.ensure_shape) before augmenting.")
    if not images.dtype.is_floating:
        raise ValueError(f"augment expects float images, got {images.dtype.name}; augment after the Transform (or cast to float32).")
    channels = images.shape[-1]
    jitter = policy.ops.get("color_jitter", {})
    if channels not in (1, 3) and (jitter.get("saturation", 0) > 0 or jitter.get("hue", 0) > 0):
        raise ValueError(f"color_jitter saturation/hue work on 1 (no-op) or 3 channels, got {channels}; set them to 0.")
    soft = labels.dtype.is_floating and labels.shape.rank == 2
    ids = labels.dtype.is_integer and (labels.shape.rank == 1 or (labels.shape.rank == 2 and labels.shape[1] == 1))
    if not (soft or ids):
        raise ValueError(f"labels must be int class ids [N] (or [N, 1]) or float soft labels [N, K], got {labels.dtype.name} {labels.shape}.")
    if soft and policy.mixes_labels and labels.shape[1] not in (None, policy.num_classes):
        raise ValueError(f"soft labels have {labels.shape[1]} classes but the policy has num_classes={policy.num_classes}.")
