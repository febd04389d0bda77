"""Eval examples for calibration, parity and the accuracy gate: serialized tf.Examples,
their decoded images (or texts) and labels.

Reads the TFX split layout `<examples uri>/Split-eval/*.gz` (gzipped TFRecords whose
`image` feature holds PNG bytes, or `text` a string; `label` the class id).

    data = read_eval_inputs("/pipeline/ExampleGen/examples/3/Split-eval", limit=256, image_shape=(8, 8, 1))
    data.serialized.shape, data.images.shape, data.labels.shape   # (256,), (256, 8, 8, 1), (256,)
    data[:64]                                                     # the first 64 of all
    read_eval_inputs(split_dir, limit=256, image_shape=None)      # a text model: data.texts
"""
from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from components.train.export import IMAGE_KEY, IMAGES_SIGNATURE
from components.transform.preprocessing import LABEL_KEY, TEXT_KEY


@dataclasses.dataclass(frozen=True)
class EvalInputs:
    serialized: np.ndarray  # object array of bytes, [N]
    images: np.ndarray | None  # uint8 [N, H, W, C] (image models)
    labels: np.ndarray | None = None  # int64 [N]; None if the examples carry no `label`
    texts: np.ndarray | None = None  # object array of bytes [N] (text models)

    def __len__(self) -> int:
        return len(self.serialized)

    def __getitem__(self, index: slice) -> "EvalInputs":
        part = lambda a: None if a is None else a[index]  # noqa: E731
        return EvalInputs(self.serialized[index], part(self.images), part(self.labels), part(self.texts))

    def raw(self) -> np.ndarray:
        """What the raw-input signature takes: images (image models) or texts (text models)."""
        return self.images if self.images is not None else self.texts


def serving_image_shape(saved_model_dir: str) -> tuple[int, ...]:
    """(H, W, C) that the SavedModel's `serving_images` signature takes."""
    signatures = tf.saved_model.load(saved_model_dir).signatures
    if IMAGES_SIGNATURE not in signatures:
        raise KeyError(f"{saved_model_dir} has no {IMAGES_SIGNATURE!r} signature (see components/train/export.py); it has {sorted(signatures)}")
    (spec,) = signatures[IMAGES_SIGNATURE].structured_input_signature[1].values()
    return tuple(int(d) for d in spec.shape[1:])


def read_serialized_examples(split_dir: str, limit: int) -> list[bytes]:
    files = sorted(tf.io.gfile.glob(os.path.join(split_dir, "*.gz")))
    if not files:
        raise FileNotFoundError(f"no gzipped TFRecord files (*.gz) in {split_dir}; expected the TFX Split-eval layout")
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit)
    return [record.numpy() for record in dataset]


def decode_images(serialized: Sequence[bytes], image_shape: Sequence[int]) -> np.ndarray:
    """PNG `image` feature of each tf.Example -> uint8 [N, H, W, C] (what `serving_images` takes)."""
    parsed = tf.io.parse_example(tf.constant(list(serialized)), {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)})
    channels = int(image_shape[-1])
    images = [tf.io.decode_png(png, channels=channels).numpy() for png in parsed[IMAGE_KEY]]
    batch = np.stack(images) if images else np.zeros((0, *image_shape), np.uint8)
    if batch.shape[1:] != tuple(image_shape):
        raise ValueError(f"eval images have shape {batch.shape[1:]}, but the model's serving_images expects {tuple(image_shape)}")
    return batch


def _feature(serialized: Sequence[bytes], key: str, dtype) -> np.ndarray | None:
    """One scalar feature of every example, or None if any example lacks it."""
    if not serialized:
        return None
    try:
        parsed = tf.io.parse_example(tf.constant(list(serialized)), {key: tf.io.FixedLenFeature([], dtype)})
    except tf.errors.InvalidArgumentError:
        return None
    values = parsed[key].numpy()
    return values.astype(object) if dtype == tf.string else values


def read_eval_inputs(split_dir: str, limit: int, image_shape: Sequence[int] | None) -> EvalInputs:
    """image_shape None: a text model (the `text` feature instead of decoded images)."""
    serialized = read_serialized_examples(split_dir, limit)
    return EvalInputs(
        serialized=np.array(serialized, dtype=object),
        images=None if image_shape is None else decode_images(serialized, image_shape),
        labels=_feature(serialized, LABEL_KEY, tf.int64),
        texts=_feature(serialized, TEXT_KEY, tf.string) if image_shape is None else None,
    )
