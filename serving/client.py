"""Clients for TF Serving-compatible servers (the embedded one or tensorflow_model_server).

`ServingClient` speaks gRPC with the real `tensorflow_serving.apis` stubs: every call has
a deadline (`timeout` covers all attempts), and only UNAVAILABLE is retried, with
exponential backoff. `RestClient` does the same few calls over the REST API.

    with ServingClient("127.0.0.1:8500", timeout=5.0, retries=3) as client:
        prediction = client.predict_images("digits", images)        # uint8 [N, H, W, C]
        print(prediction.top_k(3)[0])                               # [("3", 0.91), ("8", 0.05), ...]
        print(client.status("digits"))                              # [VersionStatus(version=2, state='AVAILABLE', ...)]
"""
from __future__ import annotations

import base64
import dataclasses
import json
import random
import time
import urllib.error
import urllib.request
from typing import Iterable, Sequence

import grpc
import numpy as np
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving.contract import (
    CLASSES_OUTPUT, CLASSIFY_SIGNATURE, EXAMPLES_SIGNATURE, IMAGES_SIGNATURE, PROBABILITIES_OUTPUT, TEXT_SIGNATURE,
)
from serving.server.options import DEFAULT_MAX_MESSAGE_BYTES
from serving.server.tensors import to_tensor_proto


@dataclasses.dataclass
class Prediction:
    """Class probabilities [N, K] with the label name of each column, per example."""

    probabilities: np.ndarray
    classes: list  # [N][K] label names
    version: int | None = None

    def top_k(self, k: int) -> list:
        """Per example, the k most probable (label, probability) pairs, best first."""
        result = []
        for row, names in zip(self.probabilities, self.classes):
            order = np.argsort(-row, kind="stable")[:k]
            result.append([(names[i], float(row[i])) for i in order])
        return result


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    version: int
    state: str
    error_code: int = 0
    error_message: str = ""


def _decode(values) -> list:
    return [[v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in row] for row in values]


def _serialized(examples) -> list:
    return [e if isinstance(e, bytes) else e.SerializeToString() for e in examples]


def image_shape_from_signature(signature_def) -> tuple:
    """(H, W, C) of the `images` input of a serving_images SignatureDef."""
    info = signature_def.inputs["images"]
    dims = [d.size for d in info.tensor_shape.dim]
    if len(dims) != 4 or min(dims[1:]) < 1:
        raise ValueError(f"the images input has shape {dims}; expected [batch, height, width, channels]")
    return tuple(dims[1:])


class ServingClient:
    """gRPC client for PredictionService and ModelService.

    Args:
        target: "host:port" of the server.
        timeout: seconds for one call, retries included (the gRPC deadline).
        retries: extra attempts after UNAVAILABLE (server starting, restarting, queue full).
        backoff_seconds: first pause between attempts; doubles each time, with jitter.
        tls: False (plaintext), True (TLS with the system's roots) or the path of a PEM
            CA certificate to trust (e.g. a self-signed server certificate).
        max_message_bytes: largest request/response, both directions.
    """

    def __init__(self, target: str = "127.0.0.1:8500", *, timeout: float = 10.0, retries: int = 3,
                 backoff_seconds: float = 0.05, tls: bool | str = False, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES):
        self.timeout = timeout
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        options = [("grpc.max_send_message_length", max_message_bytes), ("grpc.max_receive_message_length", max_message_bytes)]
        if tls:
            roots = None
            if isinstance(tls, str):
                with open(tls, "rb") as f:
                    roots = f.read()
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=roots), options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "ServingClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- plumbing --------------------------------------------------------------------
    def _call(self, method, request):
        deadline = time.monotonic() + self.timeout
        for attempt in range(self.retries + 1):
            remaining = deadline - time.monotonic()
            try:
                return method(request, timeout=max(remaining, 0.001))
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or attempt == self.retries:
                    raise
                pause = self.backoff_seconds * (2**attempt) * random.uniform(0.5, 1.5)
                if time.monotonic() + pause >= deadline:
                    raise
                time.sleep(pause)

    @staticmethod
    def _spec(model_spec, model: str, version: int | None, label: str | None, signature: str | None = None) -> None:
        if version is not None and label is not None:
            raise ValueError("give either version or label, not both")
        model_spec.name = model
        if version is not None:
            model_spec.version.value = int(version)
        elif label is not None:
            model_spec.version_label = label
        if signature is not None:
            model_spec.signature_name = signature

    # -- PredictionService -----------------------------------------------------------
    def predict(self, model: str, inputs: dict, *, signature: str = EXAMPLES_SIGNATURE, version: int | None = None,
                label: str | None = None, output_filter: Sequence[str] = ()) -> dict:
        """Raw Predict: {input name: array} in, {output name: numpy array} out."""
        return self._predict(model, inputs, signature, version, label, output_filter)[0]

    def _predict(self, model, inputs, signature, version, label, output_filter=()) -> tuple:
        """(outputs, version that answered)."""
        import tensorflow as tf  # make_ndarray reads every TensorProto encoding

        request = predict_pb2.PredictRequest(output_filter=list(output_filter))
        self._spec(request.model_spec, model, version, label, signature)
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(to_tensor_proto(value))
        response = self._call(self._predictions.Predict, request)
        outputs = {key: tf.make_ndarray(proto) for key, proto in response.outputs.items()}
        return outputs, response.model_spec.version.value

    @staticmethod
    def _prediction(answer: tuple) -> Prediction:
        outputs, version = answer
        return Prediction(outputs[PROBABILITIES_OUTPUT], _decode(outputs[CLASSES_OUTPUT]), version)

    def predict_images(self, model: str, images, *, version: int | None = None, label: str | None = None,
                       signature: str = IMAGES_SIGNATURE) -> Prediction:
        """Images uint8 [N, H, W, C] (the model's shape, see `image_shape`) -> Prediction."""
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 pixels, got {images.dtype}; convert with np.clip(...).astype(np.uint8)")
        return self._prediction(self._predict(model, {"images": images}, signature, version, label))

    def predict_text(self, model: str, texts: Iterable[str], *, version: int | None = None, label: str | None = None,
                     signature: str = TEXT_SIGNATURE) -> Prediction:
        """Raw texts (text models, e.g. a sentiment classifier) -> Prediction."""
        encoded = np.array([t.encode("utf-8") if isinstance(t, str) else bytes(t) for t in texts], dtype=object)
        return self._prediction(self._predict(model, {"text": encoded}, signature, version, label))

    def predict_examples(self, model: str, examples: Iterable, *, version: int | None = None, label: str | None = None,
                         signature: str = EXAMPLES_SIGNATURE) -> Prediction:
        """Serialized tf.Examples (bytes or tf.train.Example, feature `image` = PNG) -> Prediction."""
        serialized = np.array(_serialized(examples), dtype=object)
        return self._prediction(self._predict(model, {"examples": serialized}, signature, version, label))

    def classify(self, model: str, examples: Iterable, *, version: int | None = None, label: str | None = None,
                 signature: str = CLASSIFY_SIGNATURE) -> list:
        """Classify RPC: per example, [(label, score), ...] in the model's class order."""
        import tensorflow as tf

        request = classification_pb2.ClassificationRequest()
        self._spec(request.model_spec, model, version, label, signature)
        for example in examples:
            request.input.example_list.examples.append(
                example if isinstance(example, tf.train.Example) else tf.train.Example.FromString(example)
            )
        response = self._call(self._predictions.Classify, request)
        return [[(c.label, c.score) for c in row.classes] for row in response.result.classifications]

    def metadata(self, model: str, *, version: int | None = None, label: str | None = None) -> dict:
        """{signature name: SignatureDef proto} of the version that answers."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._spec(request.model_spec, model, version, label)
        response = self._call(self._predictions.GetModelMetadata, request)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return dict(signature_map.signature_def)

    def image_shape(self, model: str, *, version: int | None = None, label: str | None = None) -> tuple:
        """(H, W, C) the model's serving_images signature expects."""
        signatures = self.metadata(model, version=version, label=label)
        if IMAGES_SIGNATURE not in signatures:
            raise ValueError(f"model {model!r} has no {IMAGES_SIGNATURE} signature; use predict_examples")
        return image_shape_from_signature(signatures[IMAGES_SIGNATURE])

    # -- ModelService ----------------------------------------------------------------
    def status(self, model: str, *, version: int | None = None, label: str | None = None) -> list:
        request = get_model_status_pb2.GetModelStatusRequest()
        self._spec(request.model_spec, model, version, label)
        response = self._call(self._models.GetModelStatus, request)
        state_name = get_model_status_pb2.ModelVersionStatus.State.Name
        return [
            VersionStatus(s.version, state_name(s.state), s.status.error_code, s.status.error_message)
            for s in response.model_version_status
        ]


class RestClient:
    """The same predictions over TF Serving's REST API (JSON), e.g. "http://127.0.0.1:8501"."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, cafile: str | None = None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._context = None
        if cafile:
            import ssl

            self._context = ssl.create_default_context(cafile=cafile)

    def _request(self, path: str, body=None) -> dict:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(self.base_url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._context) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")
            try:
                detail = json.loads(detail)["error"]
            except (ValueError, KeyError, TypeError):
                pass
            raise RuntimeError(f"HTTP {error.code}: {detail}") from None

    @staticmethod
    def _path(model: str, version: int | None, label: str | None) -> str:
        path = f"/v1/models/{model}"
        if version is not None:
            path += f"/versions/{int(version)}"
        elif label is not None:
            path += f"/labels/{label}"
        return path

    def image_shape(self, model: str, *, version: int | None = None, label: str | None = None) -> tuple:
        from google.protobuf import json_format
        from tensorflow.core.protobuf import meta_graph_pb2

        metadata = self._request(self._path(model, version, label) + "/metadata")
        signatures = metadata["metadata"]["signature_def"]["signature_def"]
        if IMAGES_SIGNATURE not in signatures:
            raise ValueError(f"model {model!r} has no {IMAGES_SIGNATURE} signature; use predict_examples")
        return image_shape_from_signature(json_format.ParseDict(signatures[IMAGES_SIGNATURE], meta_graph_pb2.SignatureDef()))

    def _prediction(self, path: str, body: dict) -> Prediction:
        rows = self._request(path + ":predict", body)["predictions"]
        return Prediction(np.array([r["probabilities"] for r in rows], dtype=np.float32), [r["classes"] for r in rows])

    def predict_images(self, model: str, images, *, version: int | None = None, label: str | None = None) -> Prediction:
        body = {"signature_name": IMAGES_SIGNATURE, "instances": np.asarray(images, dtype=np.uint8).tolist()}
        return self._prediction(self._path(model, version, label), body)

    def predict_text(self, model: str, texts: Iterable[str], *, version: int | None = None, label: str | None = None) -> Prediction:
        body = {"signature_name": TEXT_SIGNATURE, "instances": [str(t) for t in texts]}
        return self._prediction(self._path(model, version, label), body)

    def predict_examples(self, model: str, examples: Iterable, *, version: int | None = None, label: str | None = None) -> Prediction:
        rows = [{"b64": base64.b64encode(e).decode("ascii")} for e in _serialized(examples)]
        return self._prediction(self._path(model, version, label), {"signature_name": EXAMPLES_SIGNATURE, "instances": rows})

    def status(self, model: str, *, version: int | None = None, label: str | None = None) -> list:
        response = self._request(self._path(model, version, label))
        return [
            VersionStatus(int(s["version"]), s["state"], 0 if s["status"].get("error_code", "OK") == "OK" else 1, s["status"].get("error_message", ""))
            for s in response["model_version_status"]
        ]
