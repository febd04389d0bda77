"""Warmup: replay `assets.extra/tf_serving_warmup_requests` before a version serves.

The file holds PredictionLog records (TFRecord), as TF Serving expects. Each record's
request runs against the version being loaded (its model_spec name/version are ignored,
as in TF Serving); any failure fails the load. At most 1000 records are read.

    count = run_warmup(version)   # 0 when the version ships no warmup file
"""
from __future__ import annotations

import os

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from serving.layout import WARMUP_FILE
from serving.server import inference
from serving.server.predict import predict
from serving.server.servable import LoadedVersion

MAX_WARMUP_RECORDS = 1000

_HANDLERS = {
    "predict_log": predict,
    "classify_log": inference.classify,
    "regress_log": inference.regress,
    "multi_inference_log": inference.multi_inference,
}


def warmup_path(version_dir: str) -> str:
    return os.path.join(version_dir, WARMUP_FILE)


def run_warmup(version: LoadedVersion) -> int:
    """Replays the warmup records of `version`; returns how many ran."""
    path = warmup_path(version.path)
    if not os.path.isfile(path):
        return 0
    count = 0
    for record in tf.data.TFRecordDataset(path).take(MAX_WARMUP_RECORDS):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        kind = log.WhichOneof("log_type")
        handler = _HANDLERS.get(kind)
        if handler is None:
            raise ValueError(f"warmup record {count} in {path} is a {kind or 'empty'} log; use predict/classify/regress logs")
        handler(version, getattr(log, kind).request)
        count += 1
    return count


def write_warmup_file(version_dir: str, requests) -> str:
    """Writes PredictRequests as a warmup file (for exporters and tests)."""
    path = warmup_path(version_dir)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog()
            log.predict_log.request.CopyFrom(request)
            writer.write(log.SerializeToString())
    return path
