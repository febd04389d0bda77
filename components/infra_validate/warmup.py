"""Eval examples -> requests: the sample the validation gates send, and TF Serving warmup.

TF Serving replays `<version>/assets.extra/tf_serving_warmup_requests` (PredictionLog
TFRecords) before a version serves, so the first real request does not pay for graph
tracing. The records are real requests built from eval examples: one Predict for the
raw-input signature (`serving_images` with uint8 images, or `serving_text` with strings)
and one for `serving_default` (serialized tf.Examples).

    sample = read_eval_sample(files, n=8)
    write_warmup_requests(version_dir, warmup_logs("digits", sample))
    logs = read_warmup_requests(version_dir)   # -> [PredictionLog, ...]
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from components.transform.preprocessing import IMAGE_KEY, TEXT_KEY
from serving.contract import (
    EXAMPLES_INPUT, EXAMPLES_SIGNATURE, IMAGES_INPUT, IMAGES_SIGNATURE, RAW_SIGNATURES, TEXT_INPUT, TEXT_SIGNATURE,
)
from serving.layout import WARMUP_FILE



@dataclasses.dataclass
class EvalSample:
    """The first `n` raw eval examples: serialized, and their raw input as the raw signature takes it."""

    serialized: list[bytes]
    raw: np.ndarray  # images: uint8 [N, H, W, C]; text: object [N] of UTF-8 bytes
    modality: str = "image"

    def __len__(self) -> int:
        return len(self.serialized)

    @property
    def raw_signature(self) -> str:
        """`serving_images` or `serving_text`."""
        return RAW_SIGNATURES[self.modality]


def _compression(files: list[str]) -> str:
    return "GZIP" if files[0].endswith(".gz") else ""


def read_eval_sample(files: list[str], n: int) -> EvalSample:
    """Read `n` tf.Examples (feature `image` = PNG/JPEG bytes, or `text`) from TFRecord `files`.

    Deterministic: the first `n` records in file order. Raises ValueError when the files
    hold no examples or images of different shapes (a data problem, not a model one).
    """
    if not files:
        raise ValueError("no example files given; expected TFRecords such as <examples>/Split-eval/*.gz")
    records = [r.numpy() for r in tf.data.TFRecordDataset(sorted(files), compression_type=_compression(files)).take(n)]
    if not records:
        raise ValueError(f"no examples in {files[:3]}")
    if TEXT_KEY in tf.train.Example.FromString(records[0]).features.feature:
        parsed = tf.io.parse_example(records, {TEXT_KEY: tf.io.FixedLenFeature([], tf.string)})
        return EvalSample(serialized=records, raw=np.array(list(parsed[TEXT_KEY].numpy()), dtype=object), modality="text")
    parsed = tf.io.parse_example(records, {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)})
    images = [tf.io.decode_image(png, expand_animations=False).numpy() for png in parsed[IMAGE_KEY]]
    shapes = sorted({im.shape for im in images})
    if len(shapes) > 1:
        raise ValueError(f"eval images have different shapes {shapes[:2]}; ingestion should resize them to one shape")
    return EvalSample(serialized=records, raw=np.stack(images).astype(np.uint8))


def predict_request(model_name: str, signature: str, sample: EvalSample) -> predict_pb2.PredictRequest:
    """A PredictRequest for `serving_default` (examples) or the sample's raw signature."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    if signature == EXAMPLES_SIGNATURE:
        request.inputs[EXAMPLES_INPUT].CopyFrom(tf.make_tensor_proto(sample.serialized, dtype=tf.string))
    elif signature == sample.raw_signature == IMAGES_SIGNATURE:
        request.inputs[IMAGES_INPUT].CopyFrom(tf.make_tensor_proto(sample.raw))
    elif signature == sample.raw_signature == TEXT_SIGNATURE:
        request.inputs[TEXT_INPUT].CopyFrom(tf.make_tensor_proto(list(sample.raw), dtype=tf.string))
    else:
        raise ValueError(f"no Predict request for signature '{signature}'; use {sample.raw_signature} or {EXAMPLES_SIGNATURE}")
    return request


def warmup_logs(model_name: str, sample: EvalSample) -> list[prediction_log_pb2.PredictionLog]:
    """One PredictionLog per Predict signature of the serving contract."""
    logs = []
    for signature in (sample.raw_signature, EXAMPLES_SIGNATURE):
        log = prediction_log_pb2.PredictionLog()
        log.predict_log.request.CopyFrom(predict_request(model_name, signature, sample))
        logs.append(log)
    return logs


def write_warmup_requests(version_dir: str, logs) -> str:
    """Write PredictionLogs where TF Serving looks for them; returns the file path."""
    path = os.path.join(version_dir, WARMUP_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for log in logs:
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(version_dir: str) -> list[prediction_log_pb2.PredictionLog]:
    path = os.path.join(version_dir, WARMUP_FILE)
    return [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
