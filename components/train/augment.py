"""Training-time image augmentation: a validated policy from the config, applied to batches.

The policy is the `augmentation:` section of the pipeline config: a mapping from op name
to its parameters (`{}` or `null` for the defaults, `false` or `p: 0` to switch one off,
`enabled: false` to switch all off; `fill_mode` sets how geometric ops fill pixels from
outside the image, see FILL_MODES). It is validated up front by its one schema,
components/train/augment_config.py (a frozen dataclass per op with its defaults and ranges): an
unknown op or parameter, or a value out of range, raises a ValueError that names
`train.augmentation.<op>.<key>`, the bad value and what is allowed.

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

from typing import Any, Mapping

import tensorflow as tf

from components.train.augment_config import FILL_MODES, OP_SPECS, POLICY_OPTIONS, check_fill_mode, parse_augmentation, parse_ops  # noqa: F401 (re-exported)
from components.train.augment_ops import (
    GEOMETRIC_TRANSFORMS, Draws, active_jitter_strengths, color_jitter, cutmix, cutout, mixup, resample,
)

AUGMENTATION_SCOPE = "augmentation"
AUGMENTATION_OP_PREFIX = AUGMENTATION_SCOPE + "/"
# Op name -> its parameters' dataclass (defaults and ranges: components/train/augment_config.py). The order is the order ops run in.
OP_PARAMS = OP_SPECS
GEOMETRIC_OPS = ("horizontal_flip", "vertical_flip", "random_resized_crop", "random_crop", "rotation", "zoom", "translation")
LABEL_MIXING_OPS = ("mixup", "cutmix")


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
        self.fill_mode = check_fill_mode(fill_mode)
        self.ops = parse_ops(ops)
        self.num_classes = num_classes

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None, num_classes: int) -> "AugmentationPolicy":
        """Validates the `augmentation:` config section (a plain dict from YAML); None or {} means no augmentation."""
        ops, fill_mode = parse_augmentation(config)
        return cls(ops, num_classes, fill_mode)

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
