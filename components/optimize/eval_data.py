"""Eval examples for calibration and parity: serialized tf.Examples and their decoded images.

Reads the TFX split layout `<examples uri>/Split-eval/*.gz` (gzipped TFRecords whose
`image` feature holds PNG bytes).

    data = read_eval_inputs("/pipeline/ExampleGen/examples/3/Split-eval", limit=256, image_shape=(8, 8, 1))
    data.serialized.shape, data.images.shape   # (256,), (256, 8, 8, 1)
    data[:64]                                  # the first 64 of both
"""
from __future__ import annotations

import dataclasses
import os
from typing import Sequence

import numpy as np
import tensorflow as tf

from components.train.export import IMAGE_KEY
from serving.contract import IMAGES_SIGNATURE


@dataclasses.dataclass(frozen=True)
class EvalInputs:
    serialized: np.ndarray  # object array of bytes, [N]
    images: np.ndarray  # uint8 [N, H, W, C]

    def __len__(self) -> int:
        return len(self.serialized)

    def __getitem__(self, index: slice) -> "EvalInputs":
        return EvalInputs(self.serialized[index], self.images[index])


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


def read_eval_inputs(split_dir: str, limit: int, image_shape: Sequence[int]) -> EvalInputs:
    serialized = read_serialized_examples(split_dir, limit)
    return EvalInputs(serialized=np.array(serialized, dtype=object), images=decode_images(serialized, image_shape))
