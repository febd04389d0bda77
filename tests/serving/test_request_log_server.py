"""The server with request logging on: gRPC and REST calls land in the log as PredictionLogs,
under concurrent load nothing is dropped at a modest rate and no request fails, and the
counters reach the Prometheus page. Turns on once ServerOptions has `request_log_dir`
(the wiring of serving/server/request_log.py into the server)."""
from __future__ import annotations

import base64
import concurrent.futures
import glob
import http.client
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2, prediction_log_pb2

from serving.server import ServerOptions
from tests.serving import helpers
from tests.serving.conftest import start_server

pytestmark = pytest.mark.skipif(
    not hasattr(ServerOptions, "request_log_dir"),
    reason="ServerOptions has no request_log_dir yet: serving/server/request_log.py is not wired into the server",
)


def _rest(server, path: str, body: dict):
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=10)
    connection.request("POST", path, body=json.dumps(body).encode())
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, json.loads(data)


def _logs(log_dir: str) -> list[prediction_log_pb2.PredictionLog]:
    files = sorted(glob.glob(os.path.join(log_dir, "digits", "*.tfrecord")))
    assert files, f"no request-log files under {log_dir}/digits"
    return [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files)]


def test_grpc_and_rest_calls_are_logged_and_load_drops_nothing(exported, tmp_path):
    base, log_dir = tmp_path / "digits", str(tmp_path / "request_log")
    helpers.push_version(exported[1], str(base), 1)
    server = start_server(str(base), request_log_dir=log_dir, request_log_sampling_rate=1.0)
    stubs = helpers.Stubs(server.grpc_port)
    try:
        stubs.predict.Predict(helpers.image_request(batch=2), timeout=10)
        classify = classification_pb2.ClassificationRequest()
        classify.model_spec.name, classify.model_spec.signature_name = "digits", "classification"
        classify.input.example_list.examples.append(tf.train.Example.FromString(helpers.png_example(helpers.images(1)[0])))
        stubs.predict.Classify(classify, timeout=10)
        rest_images = helpers.images(3, seed=5)
        status, _ = _rest(server, "/v1/models/digits:predict", {"signature_name": "serving_images", "instances": rest_images.tolist()})
        assert status == 200
        png = base64.b64encode(tf.io.encode_png(helpers.images(1)[0]).numpy()).decode()
        status, _ = _rest(server, "/v1/models/digits:classify", {"signature_name": "classification", "examples": [{"image": {"b64": png}}]})
        assert status == 200

        def call(_):  # 8 clients x 25 requests, logging at rate 1.0: every request succeeds
            return stubs.predict.Predict(helpers.image_request(batch=1), timeout=30).model_spec.version.value

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            assert list(pool.map(call, range(200))) == [1] * 200
        metrics = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=10)
        metrics.request("GET", "/monitoring/prometheus/metrics")
        exposition = metrics.getresponse().read().decode()
        metrics.close()
    finally:
        stubs.close()
        server.stop(grace=1.0)  # drains the log queue and closes the files
    stats = server.request_logger.stats()
    assert stats["dropped"] == 0 and stats["logged"] == 204
    assert "serving_request_log_records_total" in exposition
    logs = _logs(log_dir)
    kinds = [log.WhichOneof("log_type") for log in logs]
    assert kinds.count("predict_log") == 202 and kinds.count("classify_log") == 2
    assert all(log.log_metadata.model_spec.name == "digits" and log.log_metadata.model_spec.version.value == 1 for log in logs)
    assert all(log.log_metadata.timestamp_secs > 0 and log.log_metadata.sampling_config.sampling_rate == 1.0 for log in logs)
    rest = [log.predict_log for log in logs if log.HasField("predict_log")
            and tf.make_ndarray(log.predict_log.request.inputs["images"]).shape[0] == 3]
    assert len(rest) == 1, "the REST :predict call is logged as the equivalent PredictRequest"
    np.testing.assert_array_equal(tf.make_ndarray(rest[0].request.inputs["images"]), rest_images)
    assert tf.make_ndarray(rest[0].response.outputs["probabilities"]).shape == (3, len(helpers.LABELS))
