"""TF Serving's REST API on the second port."""
import base64
import http.client
import json

import numpy as np
import pytest
import tensorflow as tf

from serving.client import RestClient
from tests.serving import helpers


def _call(server, method: str, path: str, body=None, raw: bytes | None = None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=10)
    payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    connection.request(method, path, body=payload, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, (json.loads(data) if data and response.getheader("Content-Type") == "application/json" else data)


def test_status_and_metadata(server):
    status, body = _call(server, "GET", "/v1/models/digits")
    assert status == 200
    assert body == {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    status, body = _call(server, "GET", "/v1/models/digits/versions/1/metadata")
    assert status == 200
    assert body["model_spec"]["version"] == "1"
    inputs = body["metadata"]["signature_def"]["signature_def"]["serving_images"]["inputs"]["images"]
    assert inputs["dtype"] == "DT_UINT8"


def test_predict_row_and_columnar_formats_agree_with_grpc(server, stubs):
    images = helpers.images(2)
    grpc_probabilities = tf.make_ndarray(stubs.predict.Predict(helpers.image_request(batch=2), timeout=10).outputs["probabilities"])
    status, rows = _call(server, "POST", "/v1/models/digits:predict", {"signature_name": "serving_images", "instances": images.tolist()})
    assert status == 200
    assert rows["predictions"][0]["classes"] == helpers.LABELS
    np.testing.assert_allclose([r["probabilities"] for r in rows["predictions"]], grpc_probabilities, rtol=1e-5)
    status, columns = _call(server, "POST", "/v1/models/digits/versions/1:predict", {"signature_name": "serving_images", "inputs": {"images": images.tolist()}})
    assert status == 200
    np.testing.assert_allclose(columns["outputs"]["probabilities"], grpc_probabilities, rtol=1e-5)


def test_predict_b64_examples_and_classify(server):
    examples = [helpers.png_example(i) for i in helpers.images(2)]
    instances = [{"b64": base64.b64encode(e).decode()} for e in examples]
    status, body = _call(server, "POST", "/v1/models/digits:predict", {"instances": instances})
    assert status == 200 and len(body["predictions"]) == 2
    image_b64 = base64.b64encode(tf.train.Example.FromString(examples[0]).features.feature["image"].bytes_list.value[0]).decode()
    status, body = _call(server, "POST", "/v1/models/digits:classify", {"signature_name": "classification", "examples": [{"image": {"b64": image_b64}}]})
    assert status == 200
    assert [label for label, _ in body["results"][0]] == helpers.LABELS


@pytest.mark.parametrize("path, body, expected", [
    ("/v1/models/mnist:predict", {"instances": [1]}, 404),
    ("/v1/models/digits/versions/9:predict", {"instances": [1]}, 404),
    ("/v1/models/digits:predict", {"signature_name": "serving_images", "instances": [[[1.5]]]}, 400),
    ("/v1/models/digits:predict", {"signature_name": "serving_images", "instances": [[[[300]] * 8] * 8]}, 400),
    ("/v1/models/digits:predict", {"signature_name": "serving_images", "instances": [[1, 2], [3]]}, 400),
    ("/v1/models/digits:predict", {"instances": [1], "inputs": [1]}, 400),
    ("/v1/models/digits:predict", {"signature_name": "nope", "instances": [1]}, 400),
    ("/v1/models/digits:regress", {"signature_name": "classification", "examples": [{"image": "x"}]}, 400),
    ("/v1/models/digits/labels/canary:predict", {"instances": [1]}, 400),
    ("/v1/nothing", None, 404),
])
def test_bad_rest_requests_get_clear_errors(server, path, body, expected):
    method = "GET" if body is None else "POST"
    status, payload = _call(server, method, path, body)
    assert status == expected
    assert payload["error"]


def test_invalid_json_and_oversize_bodies_are_refused(server):
    status, payload = _call(server, "POST", "/v1/models/digits:predict", raw=b"{not json")
    assert status == 400 and "JSON" in payload["error"]
    too_big = server.options.max_body_bytes + 1
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=10)
    connection.putrequest("POST", "/v1/models/digits:predict")
    connection.putheader("Content-Length", str(too_big))  # refused before the body is sent
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413
    connection.close()


def test_rest_client_and_prometheus_metrics(server):
    client = RestClient(f"http://127.0.0.1:{server.rest_port}")
    assert client.image_shape("digits") == helpers.IMAGE_SHAPE
    prediction = client.predict_images("digits", helpers.images(1))
    assert prediction.classes[0] == helpers.LABELS and prediction.probabilities.shape == (1, 3)
    assert client.status("digits")[0].state == "AVAILABLE"
    assert _call(server, "POST", "/v1/models/mnist:predict", {"instances": [1]})[0] == 404
    status, text = _call(server, "GET", "/monitoring/prometheus/metrics")
    assert status == 200
    text = text.decode()
    assert 'serving_requests_total{code="OK",method="REST.predict",model="digits",version="1"}' in text
    assert 'serving_request_errors_total{code="NOT_FOUND",method="REST.predict",model="-",version="-"}' in text
    assert "serving_request_latency_seconds_bucket" in text
    assert 'serving_model_versions_available{model="digits"} 1.0' in text
