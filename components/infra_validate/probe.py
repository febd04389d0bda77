"""Probe a served candidate: every contract signature, checked for shape, dtype, probabilities
and class names (infra validation step 2-3, see components/infra_validate/executor.py).

    results = probe_signatures(channel, "digits", sample, label_names)   # {signature: probs [N, K]}
"""
from __future__ import annotations

import os

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2, prediction_service_pb2_grpc

from components.infra_validate.warmup import EvalSample, predict_request
from serving.contract import (
    CLASSES_OUTPUT, CLASSIFY_SIGNATURE, EXAMPLES_SIGNATURE, LABEL_ASSET, PROBABILITIES_OUTPUT, label_asset_path,
    read_label_names,
)


class ModelProblem(Exception):
    """The candidate cannot be served as the contract says; the message is the reason."""


def _check_probabilities(where: str, probs: np.ndarray, n: int, k: int) -> None:
    if probs.shape != (n, k):
        raise ModelProblem(f"{where}: expected shape [{n}, {k}], got {list(probs.shape)}")
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1:
        raise ModelProblem(f"{where}: values are not probabilities (min {probs.min():.3g}, max {probs.max():.3g})")
    sums = probs.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=1e-3):
        raise ModelProblem(f"{where}: rows should sum to 1, got sums from {sums.min():.4g} to {sums.max():.4g}")


def _check_classes(where: str, classes: np.ndarray, n: int, label_names: list[str]) -> None:
    names = np.array([c.decode() if isinstance(c, bytes) else str(c) for c in classes.reshape(-1)]).reshape(classes.shape)
    if names.shape != (n, len(label_names)):
        raise ModelProblem(f"{where}: expected shape [{n}, {len(label_names)}], got {list(names.shape)}")
    if not all(list(row) == label_names for row in names):
        raise ModelProblem(f"{where}: class names {list(names[0])[:5]} differ from the label asset {label_names[:5]}")


def _rpc(call, where: str, request):
    try:
        return call(request, timeout=30)
    except grpc.RpcError as error:
        raise ModelProblem(f"{where}: the server answered {error.code().name}: {error.details()}") from None


def probe_signatures(channel, model_name: str, sample: EvalSample, label_names: list[str]) -> dict[str, np.ndarray]:
    """Send the sample to every contract signature; returns {signature: probabilities [N, K]}."""
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    n, k = len(sample), len(label_names)
    results = {}
    for signature in (EXAMPLES_SIGNATURE, sample.raw_signature):
        response = _rpc(stub.Predict, f"Predict {signature}", predict_request(model_name, signature, sample))
        missing = {PROBABILITIES_OUTPUT, CLASSES_OUTPUT} - set(response.outputs)
        if missing:
            raise ModelProblem(f"Predict {signature}: outputs {sorted(response.outputs)} lack {sorted(missing)}")
        probs, classes = response.outputs[PROBABILITIES_OUTPUT], response.outputs[CLASSES_OUTPUT]
        if probs.dtype != tf.float32.as_datatype_enum or classes.dtype != tf.string.as_datatype_enum:
            raise ModelProblem(
                f"Predict {signature}: expected float32 probabilities and string classes, got "
                f"{tf.as_dtype(probs.dtype).name} and {tf.as_dtype(classes.dtype).name}"
            )
        results[signature] = tf.make_ndarray(probs)
        _check_probabilities(f"Predict {signature} probabilities", results[signature], n, k)
        _check_classes(f"Predict {signature} classes", tf.make_ndarray(classes), n, label_names)

    request = classification_pb2.ClassificationRequest()
    request.model_spec.name, request.model_spec.signature_name = model_name, CLASSIFY_SIGNATURE
    for serialized in sample.serialized:
        request.input.example_list.examples.add().ParseFromString(serialized)
    response = _rpc(stub.Classify, f"Classify {CLASSIFY_SIGNATURE}", request)
    rows = response.result.classifications
    if len(rows) != n or any(len(row.classes) != k for row in rows):
        raise ModelProblem(f"Classify {CLASSIFY_SIGNATURE}: expected {n} results of {k} classes, got {[len(r.classes) for r in rows]}")
    results[CLASSIFY_SIGNATURE] = np.array([[c.score for c in row.classes] for row in rows], dtype=np.float32)
    _check_probabilities(f"Classify {CLASSIFY_SIGNATURE} scores", results[CLASSIFY_SIGNATURE], n, k)
    _check_classes(f"Classify {CLASSIFY_SIGNATURE} classes", np.array([[c.label for c in row.classes] for row in rows]), n, label_names)
    return results


def signature_disagreement(results: dict[str, np.ndarray]) -> float:
    reference = results[EXAMPLES_SIGNATURE]
    return max(float(np.max(np.abs(probs - reference))) for probs in results.values())


def read_served_label_names(model_dir: str) -> list[str]:
    if not os.path.isfile(label_asset_path(model_dir)):
        raise ModelProblem(f"the model has no label asset assets/{LABEL_ASSET}; export it with export_serving_model")
    return read_label_names(model_dir)
