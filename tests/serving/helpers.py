"""Shared pieces of the serving tests: tiny real SavedModels, atomic pushes, requests."""
from __future__ import annotations

import os
import shutil
import time

import grpc
import keras
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc

from components.train.export import export_serving_model
from serving.server.tensors import to_tensor_proto

IMAGE_SHAPE = (8, 8, 1)
LABELS = ["cat", "dog", "bird"]


def tiny_cnn(seed: int) -> keras.Model:
    """A small CNN with logits out; `seed` makes versions answer differently."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(IMAGE_SHAPE)
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(len(LABELS))(x))


def export_version(directory: str, seed: int) -> str:
    return export_serving_model(tiny_cnn(seed), directory, image_shape=IMAGE_SHAPE, label_names=LABELS)


def push_version(source: str, base_path: str, version: int) -> str:
    """Copies a SavedModel in as `version` atomically: copy to .tmp-N, then rename."""
    os.makedirs(base_path, exist_ok=True)
    temporary = os.path.join(base_path, f".tmp-{version}")
    shutil.copytree(source, temporary)
    final = os.path.join(base_path, str(version))
    os.rename(temporary, final)
    return final


def push_corrupt_version(base_path: str, version: int) -> str:
    temporary = os.path.join(base_path, f".tmp-{version}")
    os.makedirs(temporary)
    with open(os.path.join(temporary, "saved_model.pb"), "wb") as f:
        f.write(b"this is not a SavedModel")
    final = os.path.join(base_path, str(version))
    os.rename(temporary, final)
    return final


def images(count: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, *IMAGE_SHAPE), dtype=np.uint8)


def png_example(image: np.ndarray) -> bytes:
    example = tf.train.Example()
    example.features.feature["image"].bytes_list.value.append(tf.io.encode_png(image).numpy())
    return example.SerializeToString()


def image_request(model: str = "digits", batch: int = 2, **spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = spec.pop("signature", "serving_images")
    if "version" in spec:
        request.model_spec.version.value = spec.pop("version")
    if "label" in spec:
        request.model_spec.version_label = spec.pop("label")
    request.inputs["images"].CopyFrom(to_tensor_proto(images(batch)))
    return request


class Stubs:
    """The real TF Serving stubs on one channel."""

    def __init__(self, port: int, max_message_bytes: int = 64 << 20):
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{port}",
            options=[("grpc.max_send_message_length", max_message_bytes), ("grpc.max_receive_message_length", max_message_bytes)],
        )
        self.predict = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()


def wait_until(condition, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def optimize_version(saved_model_dir: str, workdir: str) -> str:
    """A copy of `saved_model_dir` carrying a real gated ONNX artifact, made by the project's optimizer.

    The speed gate is taken out (min_speedup 0): it is measured on a shared 2-core machine
    and tested in tests/components/optimize; here the artifact only has to exist and pass parity/accuracy.
    """
    from components.optimize.config import validate_optimize_config
    from components.optimize.executor import run_optimizer
    from tests.components.optimize.conftest import digits_images, write_eval_split

    digits, labels = digits_images()
    eval_dir = write_eval_split(os.path.join(workdir, "examples"), digits[:96], labels[:96] % len(LABELS))
    config = validate_optimize_config({"engine": "onnx", "precision": "FP32", "min_speedup": 0.0, "timing_seconds": 0.2, "timing_batch": 64})
    result = run_optimizer(saved_model_dir, eval_dir, os.path.join(workdir, "optimizer"), config)
    assert result["status"] == "optimized", result
    return os.path.join(workdir, "optimizer", "Format-Serving")
