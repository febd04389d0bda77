"""Issue 11, item 1: a tiny request cannot make the server allocate or run a huge batch.

One value fills a TensorProto's whole shape, so 139 bytes can describe a million rows.
Rows and materialized bytes are checked from dtype and shape before anything is built.
"""
import time

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import classification_pb2, predict_pb2

from serving.server import ModelServer, ServerOptions
from serving.server.options import DEFAULT_MAX_REQUEST_ROWS
from serving.server.tensors import to_tensor_proto
from tests.serving import helpers


def _call(method, request, timeout: float = 30.0):
    """(code, details) of one RPC."""
    try:
        method(request, timeout=timeout)
    except grpc.RpcError as error:
        return error.code(), error.details()
    return grpc.StatusCode.OK, ""


def _amplified(dtype: int, shape, signature: str, key: str, **values) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"
    request.model_spec.signature_name = signature
    tensor = tensor_pb2.TensorProto(dtype=dtype, **values)
    for size in shape:
        tensor.tensor_shape.dim.add(size=size)
    request.inputs[key].CopyFrom(tensor)
    return request


def _assert_alive(stubs) -> None:
    response = stubs.predict.Predict(helpers.image_request(), timeout=10)
    assert response.outputs["probabilities"].tensor_shape.dim[0].size == 2


def test_one_string_filling_a_million_rows_is_refused_at_the_door(stubs):
    example = helpers.png_example(helpers.images(1)[0])
    request = _amplified(types_pb2.DT_STRING, [1 << 20], "serving_default", "examples", string_val=[example])
    assert request.ByteSize() < 300  # the attack was 139 bytes (a smaller PNG)
    started = time.monotonic()
    code, details = _call(stubs.predict.Predict, request)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    assert f"{DEFAULT_MAX_REQUEST_ROWS} rows" in details and "--max_request_rows" in details
    assert time.monotonic() - started < 2.0  # refused before materializing anything
    _assert_alive(stubs)


def test_one_uint8_value_filling_250000_images_is_refused(stubs):
    request = _amplified(types_pb2.DT_UINT8, [250000, 8, 8, 1], "serving_images", "images", int_val=[1])
    assert request.ByteSize() < 100
    started = time.monotonic()
    code, details = _call(stubs.predict.Predict, request)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    assert "--max_request_rows" in details
    assert time.monotonic() - started < 2.0
    _assert_alive(stubs)


def test_strings_count_their_real_length_against_the_byte_limit(stubs):
    # 40,000 rows (under the row limit) of one 2 KB string: 80 MB once materialized > 64 MiB.
    request = _amplified(types_pb2.DT_STRING, [40000], "serving_default", "examples", string_val=[b"x" * 2048])
    code, details = _call(stubs.predict.Predict, request)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
    assert "bytes" in details and "--grpc_max_message_bytes" in details
    _assert_alive(stubs)


@pytest.fixture(scope="module")
def small_limits(exported, tmp_path_factory):
    """A server started from flags only: --max_request_rows=8, --grpc_max_message_bytes=64 KiB."""
    base = tmp_path_factory.mktemp("limits") / "digits"
    helpers.push_version(exported[1], str(base), 1)
    server = ModelServer(ServerOptions(model_name="digits", model_base_path=str(base), port=0,
                                       max_request_rows=8, grpc_max_message_bytes=64 * 1024)).start()
    connection = helpers.Stubs(server.grpc_port)
    yield connection
    connection.close()
    server.stop(grace=1.0)


def test_max_request_rows_flag_bounds_predict(small_limits):
    assert _call(small_limits.predict.Predict, helpers.image_request(batch=8))[0] == grpc.StatusCode.OK
    code, details = _call(small_limits.predict.Predict, helpers.image_request(batch=9))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit of 8 rows" in details, details


def _classify_request(examples: int, context: bytes = b"") -> classification_pb2.ClassificationRequest:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "digits"
    request.model_spec.signature_name = "classification"
    serialized = [helpers.png_example(image) for image in helpers.images(examples)]
    if context:
        listed = request.input.example_list_with_context
        listed.context.features.feature["padding"].bytes_list.value.append(context)
    else:
        listed = request.input.example_list
    for data in serialized:
        listed.examples.add().ParseFromString(data)
    return request


def test_classify_is_bounded_in_examples_and_in_context_bytes(small_limits):
    assert _call(small_limits.predict.Classify, _classify_request(8))[0] == grpc.StatusCode.OK
    code, details = _call(small_limits.predict.Classify, _classify_request(9))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "limit of 8 rows" in details, details
    # A 40 KB context copied into each of 8 examples: 320 KB > 4 x 64 KiB, from a 40 KB request.
    code, details = _call(small_limits.predict.Classify, _classify_request(8, context=b"c" * 40000))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "bytes" in details, details


def test_a_request_larger_than_max_batch_size_runs_in_max_batch_chunks(server, stubs):
    (version,) = server.manager.loaded_versions()
    batcher = version.signature("serving_images").batcher
    max_batch = batcher.options.max_batch_size
    rows = 3 * max_batch + 5
    before_batches, before_rows = batcher.batches_run, batcher.rows_run
    request = helpers.image_request(batch=rows)
    response = stubs.predict.Predict(request, timeout=30)
    assert batcher.rows_run - before_rows == rows
    assert batcher.batches_run - before_batches == 4  # never one giant batch
    got = np.array(response.outputs["probabilities"].float_val).reshape(rows, -1)
    first = helpers.image_request(batch=max_batch)  # the same seed: the first rows of the big request
    expected = np.array(stubs.predict.Predict(first, timeout=10).outputs["probabilities"].float_val).reshape(max_batch, -1)
    np.testing.assert_allclose(got[:max_batch], expected, rtol=1e-5, atol=1e-6)
    assert np.isfinite(got).all()
