"""Conformance with TF Serving's documented behaviour, using half_plus_two-style models built here.

TF Serving's own test model half_plus_two computes y = 0.5 x + 2 with input x float32[None, 1];
its REST docs answer `{"instances": [1.0, 2.0, 5.0]}` with `{"predictions": [2.5, 3.0, 4.5]}`.
The TF1 model is written with tf.compat.v1 (graph + session + SavedModelBuilder, like TF
Serving's saved_model_half_plus_two.py), the TF2 one with tf.saved_model.save (every signature
then carries the predict method name).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_service_pb2_grpc, regression_pb2

from serving.server import ModelServer, ServerOptions
from serving.server.options import add_arguments, options_from_args
from serving.server.server import grpc_server_options
from serving.server.tfs_flags import IGNORED, TFS_FLAGS, parse_grpc_channel_arguments
from tests.serving import helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREDICT, CLASSIFY, REGRESS = "tensorflow/serving/predict", "tensorflow/serving/classify", "tensorflow/serving/regress"


# -- models ------------------------------------------------------------------------------
def build_tf1_half_plus_two(path: str, *, twice_fed_signature: bool = False) -> str:
    """TF Serving's half_plus_two, TF1 style: predict on x, classify/regress on serialized tf.Examples.

    `twice_fed_signature` adds a signature mapping two aliases to one tensor: TF Serving's
    session loader loads such a model, tf.saved_model.load refuses it.
    """
    v1 = tf.compat.v1
    with tf.Graph().as_default() as graph, v1.Session(graph=graph) as session:
        serialized = v1.placeholder(tf.string, name="tf_example")
        x = tf.identity(v1.parse_example(serialized, {"x": v1.FixedLenFeature([1], tf.float32)})["x"], name="x")
        a, b = v1.Variable(0.5, name="a"), v1.Variable(2.0, name="b")
        y = tf.add(tf.multiply(a, x), b, name="y")
        session.run(v1.global_variables_initializer())
        info, build = v1.saved_model.utils.build_tensor_info, v1.saved_model.signature_def_utils.build_signature_def
        signatures = {
            "serving_default": build({"x": info(x)}, {"y": info(y)}, PREDICT),
            "classify_x_to_y": build({"inputs": info(serialized)}, {"scores": info(y)}, CLASSIFY),
            "regress_x_to_y": build({"inputs": info(serialized)}, {"outputs": info(y)}, REGRESS),
        }
        if twice_fed_signature:
            signatures["x_twice"] = build({"x": info(x), "x_again": info(x)}, {"y": info(y)}, PREDICT)
        builder = v1.saved_model.builder.SavedModelBuilder(path)
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map=signatures)
        builder.save()
    return path


class _HalfPlusTwo(tf.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = tf.Variable(0.5), tf.Variable(2.0)

    def _y(self, serialized):
        return self.a * tf.io.parse_example(serialized, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"] + self.b

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32)])
    def predict(self, x):
        return {"y": self.a * x + self.b}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def classify(self, inputs):
        scores = self._y(inputs)
        return {"classes": tf.fill(tf.shape(scores), "y"), "scores": scores}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def regress(self, inputs):
        return {"outputs": self._y(inputs)}

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    def matmul(self, x):
        return {"y": tf.matmul(x, tf.ones([2, 1]))}


def build_tf2_half_plus_two(path: str) -> str:
    module = _HalfPlusTwo()
    tf.saved_model.save(module, path, signatures={
        "serving_default": module.predict, "classify_x_to_y": module.classify,
        "regress_x_to_y": module.regress, "matmul": module.matmul,
    })
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfs_models")
    return {
        "tf1": build_tf1_half_plus_two(str(root / "tf1" / "1")),
        "tf1_session_only": build_tf1_half_plus_two(str(root / "tf1_session_only" / "1"), twice_fed_signature=True),
        "tf2": build_tf2_half_plus_two(str(root / "tf2" / "1")),
    }


def _base(path: str) -> str:
    return os.path.dirname(path)


def _server(base_path: str, name: str = "half_plus_two", **options) -> ModelServer:
    return ModelServer(ServerOptions(model_name=name, model_base_path=base_path, port=0, rest_api_port=-1,
                                     file_system_poll_wait_seconds=0, **options)).start()


@pytest.fixture(scope="module")
def tf1_server(models):
    server = _server(_base(models["tf1"]))
    yield server
    server.stop(grace=0)


@pytest.fixture(scope="module")
def tf2_server(models):
    server = _server(_base(models["tf2"]))
    yield server
    server.stop(grace=0)


def _rest(port: int, path: str, body=None, method: str | None = None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _stub(target: str):
    channel = grpc.insecure_channel(target)
    return channel, prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _predict_request(name: str = "half_plus_two", signature: str = "", **inputs) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = name, signature
    for key, value in inputs.items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
    return request


def _examples_request(request_class, signature: str, values, name: str = "half_plus_two"):
    """A Classify/Regress request on `signature` with one tf.Example {"x": value} per value."""
    request = request_class()
    request.model_spec.name, request.model_spec.signature_name = name, signature
    for value in values:
        example = request.input.example_list.examples.add()
        example.features.feature["x"].float_list.value.append(value)
    return request


# -- REST row and columnar formats, shapes left to the graph -------------------------------------
@pytest.mark.parametrize("server_name", ["tf1_server", "tf2_server"])
def test_rest_predict_feeds_shapes_the_graph_accepts(request, server_name):
    port = request.getfixturevalue(server_name).rest_port
    path = "/v1/models/half_plus_two:predict"
    assert _rest(port, path, {"instances": [1.0, 2.0, 5.0]}) == (200, {"predictions": [2.5, 3.0, 4.5]})  # TF Serving's docs
    assert _rest(port, path, {"instances": [2.0, 3.0, 4.0]}) == (200, {"predictions": [3.0, 3.5, 4.0]})
    assert _rest(port, path, {"inputs": [2.0, 3.0, 4.0]}) == (200, {"outputs": [3.0, 3.5, 4.0]})
    assert _rest(port, path, {"inputs": {"x": [[2.0], [3.0]]}}) == (200, {"outputs": [[3.0], [3.5]]})
    assert _rest(port, path, {"instances": [{"x": [2.0]}, {"x": [4.0]}]}) == (200, {"predictions": [[3.0], [4.0]]})
    status, body = _rest(port, path, {"inputs": {"z": [2.0]}})
    assert status == 400 and "input tensor alias not found in signature: z" in body["error"]


def test_grpc_predict_relaxed_shapes_bypass_the_batcher_but_not_the_limits(tf2_server):
    channel, stub = _stub(f"127.0.0.1:{tf2_server.grpc_port}")
    try:
        response = stub.Predict(_predict_request(x=np.array([2.0, 3.0, 4.0], np.float32)), timeout=30)
        np.testing.assert_allclose(tf.make_ndarray(response.outputs["y"]), [3.0, 3.5, 4.0])
        signature = tf2_server.manager.resolve(_predict_request().model_spec).signature("")
        assert signature.batcher is not None and not signature.batchable({"x": np.zeros([3], np.float32)})
        assert signature.batchable({"x": np.zeros([3, 1], np.float32)})
        too_many = np.zeros([tf2_server.options.max_request_rows + 1], np.float32)  # relaxed shape, still counted
        with pytest.raises(grpc.RpcError) as error:
            stub.Predict(_predict_request(x=too_many), timeout=30)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        channel.close()


def test_grpc_errors_use_tf_servings_codes_and_texts(tf2_server):
    channel, stub = _stub(f"127.0.0.1:{tf2_server.grpc_port}")
    try:
        cases = [
            (_predict_request(signature="matmul", x=np.array([1.0, 2.0, 3.0], np.float32)),
             "In[0] and In[1] has different ndims: [3] vs. [2,1]"),  # a shape the graph rejects: TensorFlow's message
            (_predict_request(x=np.array([[1.0]], np.float32), extra=np.array([1.0], np.float32)),
             "input size does not match signature: 2!=1 len({extra,x}) != len({x}). Sent extra: {extra}. Missing but required: {}."),
            (_predict_request(z=np.array([[1.0]], np.float32)), "input tensor alias not found in signature: z."),
            (_predict_request(x=np.array([["a"]])), "expects float32"),
        ]
        for request, message in cases:
            with pytest.raises(grpc.RpcError) as error:
                stub.Predict(request, timeout=30)
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
            assert message.lower() in error.value.details().lower(), error.value.details()
    finally:
        channel.close()


# -- Classify / Regress on a TF2 model, method-name check -----------------------------------------
def test_classify_and_regress_on_tf2_predict_method_signatures(models, tf2_server):
    channel, stub = _stub(f"127.0.0.1:{tf2_server.grpc_port}")
    try:
        regress = _examples_request(regression_pb2.RegressionRequest, "regress_x_to_y", [2.0, 4.0])
        assert [r.value for r in stub.Regress(regress, timeout=30).result.regressions] == [3.0, 4.0]
        classify = _examples_request(classification_pb2.ClassificationRequest, "classify_x_to_y", [2.0])
        classes = stub.Classify(classify, timeout=30).result.classifications[0].classes
        assert [(c.label, c.score) for c in classes] == [("y", 3.0)]
        status, body = _rest(tf2_server.rest_port, "/v1/models/half_plus_two:regress",
                             {"signature_name": "regress_x_to_y", "examples": [{"x": 6.0}]})
        assert (status, body) == (200, {"results": [5.0]})
    finally:
        channel.close()
    strict = _server(_base(models["tf2"]), enable_signature_method_name_check=True)
    channel, stub = _stub(f"127.0.0.1:{strict.grpc_port}")
    try:
        with pytest.raises(grpc.RpcError) as error:
            stub.Regress(regress, timeout=30)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"Expected regression signature method_name to be {REGRESS}. Was: {PREDICT}" in error.value.details()
    finally:
        channel.close()
        strict.stop(grace=0)


def test_tf1_classify_and_regress_with_real_method_names(tf1_server):
    channel, stub = _stub(f"127.0.0.1:{tf1_server.grpc_port}")
    try:
        regress = _examples_request(regression_pb2.RegressionRequest, "regress_x_to_y", [1.0, 5.0])
        assert [r.value for r in stub.Regress(regress, timeout=30).result.regressions] == [2.5, 4.5]
        classify = _examples_request(classification_pb2.ClassificationRequest, "classify_x_to_y", [2.0])
        assert stub.Classify(classify, timeout=30).result.classifications[0].classes[0].score == 3.0
    finally:
        channel.close()


# -- loaders: TF2 first, TF1 session fallback, TFLite ------------------------------------------------
def test_tf1_model_that_tf2_cannot_load_is_served_through_a_session(models):
    with pytest.raises(Exception):  # the premise: TF2's loader refuses this TF1 graph
        tf.saved_model.load(models["tf1_session_only"])
    server = _server(_base(models["tf1_session_only"]))
    try:
        version = server.manager.resolve(_predict_request().model_spec)
        assert version.loader == "tf1-session"
        assert server.manager.resolve(_predict_request().model_spec).loader == "tf1-session"
        port = server.rest_port
        assert _rest(port, "/v1/models/half_plus_two:predict", {"instances": [2.0, 3.0, 4.0]}) == (200, {"predictions": [3.0, 3.5, 4.0]})
        status, body = _rest(port, "/v1/models/half_plus_two:regress", {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}]})
        assert (status, body) == (200, {"results": [3.0]})
        status, body = _rest(port, "/v1/models/half_plus_two/metadata")
        assert set(body["metadata"]["signature_def"]["signature_def"]) >= {"serving_default", "regress_x_to_y"}
    finally:
        server.stop(grace=0)


def test_tf1_model_tf2_can_load_uses_the_tf2_loader(tf1_server):
    assert tf1_server.manager.resolve(_predict_request().model_spec).loader == "tf2"


def test_prefer_tflite_model_serves_model_tflite(models, tmp_path):
    version = tmp_path / "half_plus_two" / "1"
    import shutil

    shutil.copytree(models["tf2"], version)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(version), signature_keys=["serving_default"])
    (version / "model.tflite").write_bytes(converter.convert())
    server = _server(str(version.parent), prefer_tflite_model=True)
    try:
        assert server.manager.resolve(_predict_request().model_spec).loader == "tflite"
        assert _rest(server.rest_port, "/v1/models/half_plus_two:predict", {"instances": [[2.0], [4.0]]}) == (
            200, {"predictions": [[3.0], [4.0]]})
    finally:
        server.stop(grace=0)


# -- flags: TF Serving's command line, UDS, channel arguments, REST timeout ---------------------------
def test_every_tf_serving_flag_parses_with_tf_serving_syntax():
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = []
    for flag in TFS_FLAGS:
        if flag.type is bool:
            args += [f"--{flag.name}=false", f"--{flag.name}=true", f"--{flag.name}"]
        elif flag.name in ("model_base_path", "model_config_file"):
            continue
        else:
            args.append(f"--{flag.name}={'grpc.max_connection_age_ms=2000' if flag.name == 'grpc_channel_arguments' else flag.type(1)}")
    parsed = parser.parse_args(args + ["--model_base_path=/m"])
    assert parsed.enable_batching is True and parsed.rest_api_enable_cors_support is True
    assert parser.parse_args(["--enable_batching=false"]).enable_batching is False
    assert len(TFS_FLAGS) >= 45 and {f.name for f in TFS_FLAGS} >= {
        "grpc_socket_path", "prefer_tflite_model", "enable_signature_method_name_check", "rest_api_timeout_in_ms",
        "grpc_channel_arguments", "thread_pool_factory_config_file", "mixed_precision", "skip_initialize_tpu"}
    options = options_from_args(parser.parse_args(["--model_base_path=/m", "--tensorflow_session_parallelism=3",
                                                   "--tensorflow_inter_op_parallelism=2"]))
    assert (options.intra_op_threads, options.inter_op_threads) == (3, 2)


def test_grpc_channel_arguments_parse_as_tf_serving_does():
    assert parse_grpc_channel_arguments("grpc.max_connection_age_ms=2000,grpc.primary_user_agent=tfs,x=99999999999") == [
        ("grpc.max_connection_age_ms", 2000), ("grpc.primary_user_agent", "tfs"), ("x", "99999999999")]
    with pytest.raises(ValueError, match="not key=value"):
        ServerOptions(model_base_path="/m", grpc_channel_arguments="grpc.keepalive_time_ms")
    options = ServerOptions(model_base_path="/m", grpc_channel_arguments="grpc.max_receive_message_length=2048")
    assert ("grpc.max_receive_message_length", 2048) in grpc_server_options(options)
    assert ("grpc.max_receive_message_length", options.grpc_max_message_bytes) not in grpc_server_options(options)


def test_channel_arguments_and_unix_socket_reach_the_grpc_server(models, tmp_path):
    socket_path = tmp_path / "tfs.sock"
    server = _server(_base(models["tf2"]), grpc_socket_path=str(socket_path),
                     grpc_channel_arguments="grpc.max_receive_message_length=4096")
    try:
        channel, stub = _stub(f"unix:{socket_path}")
        response = stub.Predict(_predict_request(x=np.array([[2.0]], np.float32)), timeout=30)
        assert tf.make_ndarray(response.outputs["y"]).tolist() == [[3.0]]
        with pytest.raises(grpc.RpcError) as error:  # 8 KB > the 4096-byte limit set through the channel argument
            stub.Predict(_predict_request(x=np.zeros([2048, 1], np.float32)), timeout=30)
        assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        channel.close()
    finally:
        server.stop(grace=0)


def test_rest_api_timeout_in_ms_bounds_a_slow_body(models):
    server = _server(_base(models["tf2"]), rest_api_timeout_in_ms=300)
    try:
        with socket.create_connection(("127.0.0.1", server.rest_port), timeout=10) as connection:
            connection.sendall(b"POST /v1/models/half_plus_two:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            started = time.monotonic()
            reply = connection.recv(4096)
            assert reply.startswith(b"HTTP/1.1 408") and b"within 0.3 s" in reply, reply
            assert time.monotonic() - started < 5
    finally:
        server.stop(grace=0)


def _serve(args):
    return subprocess.Popen([sys.executable, "-m", "serving", "serve", *args], cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_tf_serving_command_line_starts_and_answers(models):
    # From TF Serving's docs (docker.md / serving_config.md / performance.md), ports made ephemeral.
    process = _serve([
        "--port=0", "--rest_api_port=-1", "--model_name=half_plus_two", f"--model_base_path={_base(models['tf1'])}",
        "--rest_api_timeout_in_ms=30000", "--rest_api_num_threads=4", "--enable_batching", "--file_system_poll_wait_seconds=60",
        "--grpc_channel_arguments=grpc.max_connection_age_ms=60000", "--tensorflow_session_parallelism=2",
        "--flush_filesystem_caches=false", "--rest_api_enable_cors_support=true", "--per_process_gpu_memory_fraction=0.5",
        "--enable_model_warmup=true", "--xla_cpu_compilation_enabled",
    ])
    try:
        line = ""
        while not line.startswith("serving:"):
            line = process.stdout.readline()
            assert line or process.poll() is None, f"server exited: {process.stderr.read()[-3000:]}"
        rest_port = int(line.split("rest=")[1].split()[0].rsplit(":", 1)[1])
        assert _rest(rest_port, "/v1/models/half_plus_two:predict", {"instances": [1.0, 2.0, 5.0]}) == (
            200, {"predictions": [2.5, 3.0, 4.5]})
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=60)
    ignored = [line for line in stderr.splitlines() if "is accepted and ignored" in line]
    assert len(ignored) == 4, ignored  # one line per ignored flag given, saying why
    assert any("--rest_api_enable_cors_support=True" in line and "CORS" in line for line in ignored)
    assert all(flag.status == IGNORED for flag in TFS_FLAGS if flag.name in ("flush_filesystem_caches", "xla_cpu_compilation_enabled"))


def test_bad_model_config_file_names_the_file_and_line(tmp_path):
    config = tmp_path / "models.config"
    config.write_text('model_config_list {\n  config {\n    name: "a"\n    base_pth: "/models/a"\n  }\n}\n')
    process = _serve([f"--model_config_file={config}", "--port=0"])
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0
    assert f"{config}:4:" in stderr and "base_pth" in stderr, stderr[-2000:]
    assert "usage:" not in stderr


# -- config reload between two models, readiness ---------------------------------------------------
def test_config_file_poll_switches_between_two_models(models, tmp_path):
    config = tmp_path / "models.config"

    def write(name, path):
        text = f'model_config_list {{ config {{ name: "{name}" base_path: "{_base(path)}" model_platform: "tensorflow" }} }}'
        temporary = tmp_path / "models.config.tmp"
        temporary.write_text(text)
        os.replace(temporary, config)

    write("tf1_model", models["tf1"])
    server = ModelServer(ServerOptions(model_config_file=str(config), model_config_file_poll_wait_seconds=0.2,
                                       port=0, rest_api_port=-1, file_system_poll_wait_seconds=0)).start()
    try:
        assert server.ready()[0] and server.manager.model_names == ["tf1_model"]
        write("tf2_model", models["tf2"])
        helpers.wait_until(lambda: server.manager.model_names == ["tf2_model"] and server.ready()[0], timeout=60,
                           what="the config poll to switch models")
        assert _rest(server.rest_port, "/v1/models/tf2_model:predict", {"instances": [[2.0]]}) == (200, {"predictions": [[3.0]]})
        assert _rest(server.rest_port, "/v1/models/tf1_model:predict", {"instances": [[2.0]]})[0] == 404
    finally:
        server.stop(grace=0)


@pytest.mark.parametrize("allow", [False, True])
def test_version_labels_for_unavailable_models(models, allow):
    from google.protobuf import text_format
    from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

    server = _server(_base(models["tf2"]), allow_version_labels_for_unavailable_models=allow)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    try:
        def reload(labels):
            text = (f'model_config_list {{ config {{ name: "half_plus_two" base_path: "{_base(models["tf2"])}" '
                    f'model_platform: "tensorflow" {labels} }} }}')
            request = model_management_pb2.ReloadConfigRequest()
            text_format.Parse(text, request.config)
            return model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(request, timeout=60).status

        assert reload('version_labels { key: "stable" value: 1 }').error_code == 0
        both = 'version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 7 }'
        if allow:
            assert reload(both).error_code == 0
        else:
            with pytest.raises(grpc.RpcError) as error:  # TF Serving answers the reload RPC with the error status
                reload(both)
            assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "Request to assign label to version 7 of model half_plus_two" in error.value.details()
            assert server.manager._models["half_plus_two"].labels == {"stable": 1}  # the previous labels stay
    finally:
        channel.close()
        server.stop(grace=0)


class _Slow(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32)])
    def slow(self, x):
        from tensorflow.python.data.experimental.ops.testing import sleep  # TF's own test op: a real 1.5 s call

        return {"y": tf.data.Dataset.from_tensors(x).apply(sleep(1_500_000)).get_single_element()}


def test_rest_api_timeout_in_ms_bounds_the_call(tmp_path):
    module = _Slow()
    tf.saved_model.save(module, str(tmp_path / "slow" / "1"), signatures={"serving_default": module.slow})
    server = _server(str(tmp_path / "slow"), name="slow", rest_api_timeout_in_ms=300, enable_batching=False)
    try:
        started = time.monotonic()
        status, body = _rest(server.rest_port, "/v1/models/slow:predict", {"instances": [[2.0]]})
        assert status == 504 and "DEADLINE_EXCEEDED" in body["error"] and "300 ms" in body["error"], body
        assert time.monotonic() - started < 1.2
        server.stop(grace=5)  # a graceful stop still waits for the call that timed out
        assert server._http[0][0].inflight.count == 0
    finally:
        server.stop(grace=0)
