"""KServe v2 / Open Inference Protocol, driven by NVIDIA's tritonclient (http and grpc).

A real ModelManager serves two versions of the tiny CNN; the v2 gRPC service sits on
the same gRPC server as TF Serving's PredictionService, so each answer is compared with
TF Serving's Predict on the same input. The REST routes run on a real aiohttp server.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

tritonclient = pytest.importorskip("tritonclient", reason="tritonclient is not installed (see requirements-nodeps.txt)")
import tritonclient.grpc as grpcclient  # noqa: E402
import tritonclient.http as httpclient  # noqa: E402
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402
from aiohttp import web  # noqa: E402

from serving.server.batching import BatchingOptions  # noqa: E402
from serving.server.grpc_services import PredictionServicer  # noqa: E402
from serving.server.kserve import KServeOptions, add_kserve_grpc, add_kserve_routes  # noqa: E402
from serving.server.kserve import convert  # noqa: E402
from serving.server.errors import ServingError  # noqa: E402
from serving.server.metrics import ServingMetrics  # noqa: E402
from serving.server.model_manager import ManagerOptions, ModelManager  # noqa: E402
from serving.server.tensors import to_tensor_proto  # noqa: E402
from tests.serving import helpers  # noqa: E402
from tests.serving.conftest import BACKENDS_UNDER_TEST, start_server, version_one  # noqa: E402

MODEL = "digits"


def _config(**models) -> model_server_config_pb2.ModelServerConfig:
    """A ModelServerConfig with every model's versions all loaded."""
    config = model_server_config_pb2.ModelServerConfig()
    for name, base in models.items():
        entry = config.model_config_list.config.add(name=name, base_path=base, model_platform="tensorflow")
        entry.model_version_policy.all.SetInParent()
    return config


class _Servers:
    """gRPC (TF Serving + v2) and aiohttp REST (v2) around one ModelManager, on 127.0.0.1."""

    def __init__(self, manager: ModelManager, options: KServeOptions):
        self.manager = manager
        self.metrics = ServingMetrics(manager)
        self.executor = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="v2-rest")
        self.grpc = grpc.server(concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="grpc"))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(manager, self.metrics), self.grpc)
        assert add_kserve_grpc(self.grpc, manager, self.metrics, options)
        self.grpc_port = self.grpc.add_insecure_port("127.0.0.1:0")
        self.grpc.start()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.rest_port = asyncio.run_coroutine_threadsafe(self._start_rest(options), self.loop).result(30)

    async def _start_rest(self, options) -> int:
        app = web.Application(client_max_size=16 << 20)
        add_kserve_routes(app, self.manager, self.executor, metrics=self.metrics, options=options)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return self.runner.addresses[0][1]

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.grpc.stop(1).wait(5)
        self.executor.shutdown()
        self.manager.stop()


@pytest.fixture(scope="module")
def servers(exported, tmp_path_factory):
    base = tmp_path_factory.mktemp("kserve") / MODEL
    helpers.push_version(exported[1], str(base), 1)
    helpers.push_version(exported[2], str(base), 2)
    manager = ModelManager(ManagerOptions(file_system_poll_wait_seconds=0, max_num_load_retries=0, batching=BatchingOptions()))
    manager.configure(_config(**{MODEL: str(base)}))
    running = _Servers(manager, KServeOptions.parse(f"{MODEL}=serving_images"))
    yield running
    running.close()


@pytest.fixture(scope="module")
def http(servers):
    client = httpclient.InferenceServerClient(f"127.0.0.1:{servers.rest_port}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc_client(servers):
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{servers.grpc_port}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def tfs(servers):
    channel = grpc.insecure_channel(f"127.0.0.1:{servers.grpc_port}")
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)
    channel.close()


def _predict(tfs, inputs: dict, signature: str, version: int | None = None) -> dict:
    """TF Serving's Predict on the same server: the reference answer."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(to_tensor_proto(value))
    response = tfs.Predict(request, timeout=30)
    return {key: tf.make_ndarray(proto) for key, proto in response.outputs.items()}


def _images_input(module, images: np.ndarray, datatype: str = "UINT8", **kwargs):
    tensor = module.InferInput("images", list(images.shape), datatype)
    tensor.set_data_from_numpy(images, **kwargs)
    return tensor


# -- health, readiness, metadata -------------------------------------------------------
@pytest.mark.parametrize("client_name", ["http", "grpc_client"])
def test_health_readiness_and_model_metadata(request, client_name):
    client = request.getfixturevalue(client_name)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, "1") and client.is_model_ready(MODEL, "2")
    assert not client.is_model_ready(MODEL, "3")
    assert not client.is_model_ready("no-such-model")
    metadata = client.get_model_metadata(MODEL, as_json=True) if client_name == "grpc_client" else client.get_model_metadata(MODEL)
    assert metadata["name"] == MODEL
    assert metadata["versions"] == ["1", "2"]
    assert metadata["platform"] == "tensorflow_savedmodel"
    assert metadata["inputs"] == [{"name": "images", "datatype": "UINT8", "shape": ["-1", "8", "8", "1"] if client_name == "grpc_client" else [-1, 8, 8, 1]}]
    assert {o["name"]: o["datatype"] for o in metadata["outputs"]} == {"classes": "BYTES", "probabilities": "FP32"}
    server = client.get_server_metadata(as_json=True) if client_name == "grpc_client" else client.get_server_metadata()
    assert "binary_tensor_data" in server["extensions"]


# -- inference -------------------------------------------------------------------------
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_http_infer_matches_tf_serving_predict(http, tfs, binary):
    images = helpers.images(3, seed=11)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in ("probabilities", "classes")]
    result = http.infer(MODEL, [_images_input(httpclient, images, binary_data=binary)], outputs=outputs, request_id="req-7")
    expected = _predict(tfs, {"images": images}, "serving_images")
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"], rtol=0, atol=1e-6)
    classes = result.as_numpy("classes")[0]  # JSON BYTES come back as str, binary as bytes
    assert [c.decode() if binary else c for c in classes] == helpers.LABELS
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (MODEL, "2", "req-7")  # highest version by default


def test_http_infer_with_compressed_bodies(http, tfs):
    images = helpers.images(2, seed=16)
    result = http.infer(MODEL, [_images_input(httpclient, images)],
                        request_compression_algorithm="gzip", response_compression_algorithm="gzip")
    expected = _predict(tfs, {"images": images}, "serving_images")
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"], rtol=0, atol=1e-6)


def test_grpc_infer_matches_tf_serving_predict_with_raw_contents(grpc_client, tfs):
    images = helpers.images(4, seed=12)
    result = grpc_client.infer(MODEL, [_images_input(grpcclient, images)], request_id="g-1")
    expected = _predict(tfs, {"images": images}, "serving_images")
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"], rtol=0, atol=1e-6)
    assert result.as_numpy("classes").shape == (4, 3)
    response = result.get_response()
    assert response.model_version == "2" and response.id == "g-1"
    assert len(response.raw_output_contents) == len(response.outputs) == 2  # raw outputs, as Triton sends


@pytest.mark.parametrize("client_name", ["http", "grpc_client"])
def test_version_selection(request, tfs, client_name):
    client = request.getfixturevalue(client_name)
    module = grpcclient if client_name == "grpc_client" else httpclient
    images = helpers.images(2, seed=13)
    first = client.infer(MODEL, [_images_input(module, images)], model_version="1")
    latest = client.infer(MODEL, [_images_input(module, images)])
    np.testing.assert_allclose(first.as_numpy("probabilities"), _predict(tfs, {"images": images}, "serving_images", 1)["probabilities"], atol=1e-6)
    assert not np.allclose(first.as_numpy("probabilities"), latest.as_numpy("probabilities"), atol=1e-4)
    version = first.get_response().model_version if client_name == "grpc_client" else first.get_response()["model_version"]
    assert version == "1"


@pytest.mark.parametrize("client_name", ["http", "grpc_client"])
def test_bytes_input_through_the_examples_signature(request, tfs, client_name):
    client = request.getfixturevalue(client_name)
    module = grpcclient if client_name == "grpc_client" else httpclient
    images = helpers.images(2, seed=14)
    examples = np.array([helpers.png_example(image) for image in images], dtype=object)
    tensor = module.InferInput("examples", [2], "BYTES")
    tensor.set_data_from_numpy(examples)
    result = client.infer(MODEL, [tensor], parameters={"signature_name": "serving_default"})
    expected = _predict(tfs, {"examples": examples}, "serving_default")
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"], rtol=0, atol=1e-6)
    assert [c.decode() for c in result.as_numpy("classes")[1]] == helpers.LABELS


# -- errors ----------------------------------------------------------------------------
def test_unknown_model_and_version_are_not_found(http, grpc_client):
    images = helpers.images(1)
    for model, version in (("no-such-model", ""), (MODEL, "7")):
        with pytest.raises(InferenceServerException) as error:
            http.infer(model, [_images_input(httpclient, images)], model_version=version)
        assert error.value.status() == "404"
        with pytest.raises(InferenceServerException) as error:
            grpc_client.infer(model, [_images_input(grpcclient, images)], model_version=version)
        assert error.value.status() == "StatusCode.NOT_FOUND"
    with pytest.raises(InferenceServerException) as error:
        http.get_model_metadata("no-such-model")
    assert error.value.status() == "404" and "no-such-model" in error.value.message()
    with pytest.raises(InferenceServerException) as error:
        grpc_client.infer(MODEL, [_images_input(grpcclient, images)], model_version="latest")
    assert error.value.status() == "StatusCode.INVALID_ARGUMENT" and "not a version number" in error.value.message()


def test_wrong_datatype_is_a_clear_invalid_argument(http, grpc_client):
    images = helpers.images(1).astype(np.float32)
    with pytest.raises(InferenceServerException) as error:
        http.infer(MODEL, [_images_input(httpclient, images, "FP32")])
    assert error.value.status() == "400"
    assert "data-type is 'FP32'" in error.value.message() and "expects 'UINT8'" in error.value.message()
    with pytest.raises(InferenceServerException) as error:
        grpc_client.infer(MODEL, [_images_input(grpcclient, images, "FP32")])
    assert error.value.status() == "StatusCode.INVALID_ARGUMENT" and "expects 'UINT8'" in error.value.message()


@pytest.mark.parametrize("client_name", ["http", "grpc_client"])
def test_unknown_input_output_and_signature_are_invalid_argument(request, client_name):
    client = request.getfixturevalue(client_name)
    module = grpcclient if client_name == "grpc_client" else httpclient
    bad_input = module.InferInput("pixels", [1, 8, 8, 1], "UINT8")
    bad_input.set_data_from_numpy(helpers.images(1))
    cases = [
        (dict(inputs=[bad_input]), "unexpected inference input 'pixels'"),
        (dict(inputs=[_images_input(module, helpers.images(1))], outputs=[module.InferRequestedOutput("logits")]), "unexpected inference output 'logits'"),
        (dict(inputs=[_images_input(module, helpers.images(1))], parameters={"signature_name": "nope"}), "signature 'nope' not found"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InferenceServerException) as error:
            client.infer(MODEL, **kwargs)
        assert error.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
        assert message in error.value.message()


@pytest.mark.parametrize("client_name", ["http", "grpc_client"])
def test_echoed_output_names_are_clipped(request, client_name):
    """A 100,000-character unknown or repeated output name is echoed clipped (as TF Serving's output_filter is)."""
    client = request.getfixturevalue(client_name)
    module = grpcclient if client_name == "grpc_client" else httpclient
    huge = "o" * 100_000
    with pytest.raises(InferenceServerException) as error:
        client.infer(MODEL, [_images_input(module, helpers.images(1))], outputs=[module.InferRequestedOutput(huge)])
    message = error.value.message()
    assert "unexpected inference output 'ooo" in message and "...(100000 chars)" in message and len(message) < 1024
    with pytest.raises(InferenceServerException) as error:
        client.infer(MODEL, [_images_input(module, helpers.images(1))],
                     outputs=[module.InferRequestedOutput("probabilities"), module.InferRequestedOutput("probabilities")])
    assert "repeat an output" in error.value.message()


def _post(port: int, path: str, body: bytes, headers: dict | None = None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_http_malformed_bodies_get_json_errors(servers):
    path = f"/v2/models/{MODEL}/infer"
    good_input = {"name": "images", "shape": [1, 8, 8, 1], "datatype": "UINT8"}
    cases = [
        (b"{not json", {}, "not valid JSON"),
        (json.dumps({"inputs": []}).encode(), {}, '"inputs"'),
        (json.dumps({"inputs": [{**good_input, "data": [1, 2, 3]}]}).encode(), {}, "3 values for shape [1, 8, 8, 1]"),
        (json.dumps({"inputs": [{**good_input, "data": [300] * 64}]}).encode(), {}, "out of the UINT8 range"),
        (json.dumps({"inputs": [{**good_input, "shape": [1, 8, 8, -1], "data": [0]}]}).encode(), {}, "negative"),
        (json.dumps({"inputs": [{**good_input, "shape": [1 << 40, 8, 8, 1], "data": [0]}]}).encode(), {}, "byte limit"),
    ]
    cases.append((b"[" * 100_000 + b"]" * 100_000, {}, "nested too deeply"))
    header = json.dumps({"inputs": [{**good_input, "parameters": {"binary_data_size": 64}}]}).encode()
    cases.append((header + bytes(10), {"Inference-Header-Content-Length": str(len(header))}, "does not fit"))
    cases.append((header + bytes(70), {"Inference-Header-Content-Length": str(len(header))}, "not claimed"))
    for body, headers, message in cases:
        status, payload = _post(servers.rest_port, path, body, headers)
        error = json.loads(payload)["error"]
        assert status in (400, 429), (status, error)
        assert message in error, error
    status, payload = _post(servers.rest_port, path, bytes(17 << 20))  # the app's client_max_size is 16 MiB
    assert status == 413 and "byte limit" in json.loads(payload)["error"]


def test_grpc_typed_contents_and_raw_mixing(servers, tfs):
    """Typed `contents` work like raw ones; sending both for one input is refused."""
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(f"127.0.0.1:{servers.grpc_port}"))
    images = helpers.images(2, seed=15)
    request = service_pb2.ModelInferRequest(model_name=MODEL)
    tensor = request.inputs.add(name="images", datatype="UINT8", shape=list(images.shape))
    tensor.contents.uint_contents.extend(images.ravel().tolist())
    response = stub.ModelInfer(request, timeout=30)
    index = [o.name for o in response.outputs].index("probabilities")
    probabilities = np.frombuffer(response.raw_output_contents[index], dtype="<f4").reshape(2, 3)
    np.testing.assert_allclose(probabilities, _predict(tfs, {"images": images}, "serving_images")["probabilities"], atol=1e-6)
    empty = service_pb2.ModelInferRequest(model_name=MODEL)
    empty.inputs.add(name="images", datatype="UINT8", shape=[1, 8, 8, 1]).contents.int_contents.append(1)
    with pytest.raises(grpc.RpcError) as error:
        stub.ModelInfer(empty, timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "contents.uint_contents" in error.value.details()
    request.raw_input_contents.append(images.tobytes())
    with pytest.raises(grpc.RpcError) as error:
        stub.ModelInfer(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "raw_input_contents" in error.value.details()


def test_v2_requests_go_through_the_shared_batcher(servers, grpc_client):
    batcher = servers.manager.resolve(_spec(MODEL)).signature("serving_images").batcher
    assert batcher is not None
    before = batcher.rows_run
    grpc_client.infer(MODEL, [_images_input(grpcclient, helpers.images(5))])
    assert batcher.rows_run == before + 5


def _spec(name: str):
    from serving.server.kserve.core import model_spec

    return model_spec(name, "")


# -- readiness means every configured model has a loaded version -----------------------
def test_server_ready_only_when_every_model_has_a_version(exported, tmp_path):
    loaded, empty = tmp_path / "loaded", tmp_path / "empty"
    helpers.push_version(exported[1], str(loaded), 1)
    empty.mkdir()
    manager = ModelManager(ManagerOptions(file_system_poll_wait_seconds=0, max_num_load_retries=0, batching=None))
    manager.configure(_config(loaded=str(loaded), empty=str(empty)))
    servers = _Servers(manager, KServeOptions("serving_images"))
    try:
        http = httpclient.InferenceServerClient(f"127.0.0.1:{servers.rest_port}")
        grpc_client = grpcclient.InferenceServerClient(f"127.0.0.1:{servers.grpc_port}")
        assert http.is_server_live() and grpc_client.is_server_live()
        assert not http.is_server_ready() and not grpc_client.is_server_ready()
        assert http.is_model_ready("loaded") and not http.is_model_ready("empty")
        status, body = _get(servers.rest_port, "/v2/health/ready")
        assert status == 400 and "empty" in json.loads(body)["error"]
        helpers.push_version(exported[1], str(empty), 1)
        manager.poll_once()
        assert http.is_server_ready() and grpc_client.is_server_ready()
        http.close()
        grpc_client.close()
    finally:
        servers.close()


def _get(port: int, path: str):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


# -- pieces ----------------------------------------------------------------------------
def test_options_parse_default_and_per_model_signatures():
    options = KServeOptions.parse("serving_images, text=serving_text")
    assert options.signature_for("digits") == "serving_images"
    assert options.signature_for("text") == "serving_text"
    assert KServeOptions.parse("").signature_for("x") == "serving_default"
    with pytest.raises(ValueError, match="MODEL=SIGNATURE"):
        KServeOptions.parse("a=b=c d")


def test_bytes_round_trip_and_truncation():
    array = np.array([b"", b"abc", "\u00e9".encode()], dtype=object)
    raw = convert.serialize_bytes(array)
    assert raw[:4] == b"\x00\x00\x00\x00" and raw[4:8] == b"\x03\x00\x00\x00"
    assert convert.array_from_raw("x", "BYTES", [3], raw, 1 << 20).tolist() == array.tolist()
    with pytest.raises(ServingError, match="claims 3 bytes"):
        convert.array_from_raw("x", "BYTES", [3], raw[:10], 1 << 20)
    with pytest.raises(ServingError, match="left over"):
        convert.array_from_raw("x", "BYTES", [2], raw, 1 << 20)


@pytest.mark.parametrize("backend", BACKENDS_UNDER_TEST)
def test_model_server_serves_v2_grpc_beside_tf_serving(tmp_path, request, backend):
    helpers.push_version(version_one(request, backend), str(tmp_path / MODEL), 1)
    server = start_server(str(tmp_path / MODEL), kserve_signature_def=f"{MODEL}=serving_images", backend=backend)
    try:
        assert server.manager.loaded_versions()[0].signature("serving_images").backend.name == backend
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
        assert client.is_server_ready() and client.is_model_ready(MODEL, "1")
        images = helpers.images(2, seed=17)
        result = client.infer(MODEL, [_images_input(grpcclient, images)])
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
        np.testing.assert_allclose(result.as_numpy("probabilities"), _predict(stub, {"images": images}, "serving_images")["probabilities"], atol=1e-6)
        client.close()
    finally:
        server.stop(grace=1.0)


# -- the model server's own REST port ----------------------------------------------------
def test_v2_rest_routes_on_the_model_servers_rest_port(exported, tmp_path):
    """tritonclient.http against a full ModelServer: /v2 shares the REST port, its limits and thread pool."""
    base = tmp_path / "digits"
    helpers.push_version(exported[1], str(base), 1)
    server = start_server(str(base), kserve_signature_def="serving_images", rest_api_max_body_bytes=1 << 20,
                          rest_api_num_threads=3)
    try:
        rest = server._http[0][0]
        assert rest._executor._max_workers == 3  # --rest_api_num_threads sizes the REST pool
        client = httpclient.InferenceServerClient(f"127.0.0.1:{server.rest_port}")
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("digits", "1")
        assert client.get_model_metadata("digits")["inputs"][0]["name"] == "images"
        images = helpers.images(2, seed=21)
        result = client.infer("digits", [_images_input(httpclient, images)])
        channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
        expected = _predict(prediction_service_pb2_grpc.PredictionServiceStub(channel), {"images": images}, "serving_images")
        channel.close()
        np.testing.assert_allclose(result.as_numpy("probabilities"), expected["probabilities"], rtol=0, atol=1e-6)
        with pytest.raises(InferenceServerException) as error:
            client.infer("no-such-model", [_images_input(httpclient, images)])
        assert error.value.status() == "404"
        status, payload = _post(server.rest_port, "/v2/models/digits/infer", bytes(2 << 20))  # over the REST body limit
        assert status == 413 and "limit" in json.loads(payload)["error"]
        status, _ = _get(server.rest_port, "/v1/models/digits")  # TF Serving's API still answers beside it
        assert status == 200
        client.close()
        server.stop(grace=0)
        assert not server.ready()[0]
    finally:
        server.stop(grace=0)
