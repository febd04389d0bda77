"""Issue 11, item 6: malformed input is INVALID_ARGUMENT with a short message; garbage logs one line.

Also a fuzz test whose TensorProtos describe far more data than they carry (one value
fills the shape), huge ranks and dims: only clean status codes, and the server stays up.
"""
import logging

import grpc
from hypothesis import HealthCheck, given, settings, strategies as st
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2

from tests.serving import helpers

SHORT = 400  # characters: an error message that echoes client input stays about this short


def _call(method, request):
    try:
        method(request, timeout=30)
    except grpc.RpcError as error:
        return error.code(), error.details()
    return grpc.StatusCode.OK, ""


def _assert_alive(stubs) -> None:
    response = stubs.predict.Predict(helpers.image_request(), timeout=10)
    assert response.outputs["probabilities"].tensor_shape.dim[0].size == 2


def test_tensor_content_with_300_dims_is_invalid_argument(stubs):
    request = helpers.image_request()
    tensor = request.inputs["images"]
    del tensor.tensor_shape.dim[:]
    for _ in range(300):
        tensor.tensor_shape.dim.add(size=1)
    tensor.tensor_content = b"\x01"
    code, details = _call(stubs.predict.Predict, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    assert "300 dimensions" in details


def test_a_10kb_model_name_gets_a_short_clean_error(stubs):
    request = helpers.image_request(model="m" * 10_000)
    code, details = _call(stubs.predict.Predict, request)
    assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND), (code, details[:200])
    assert len(details) < SHORT and "mmm..." in details and "10000 chars" in details
    metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["x" * 10_000])
    metadata.model_spec.name = "digits"
    code, details = _call(stubs.predict.GetModelMetadata, metadata)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and len(details) < SHORT, (code, details[:200])


def test_long_signature_input_and_output_names_are_echoed_clipped(stubs):
    requests = [helpers.image_request(signature="s" * 10_000)]
    renamed = helpers.image_request()
    renamed.inputs["i" * 10_000].CopyFrom(renamed.inputs["images"])
    requests.append(renamed)
    filtered = helpers.image_request()
    filtered.output_filter.append("o" * 10_000)
    requests.append(filtered)
    for request in requests:
        code, details = _call(stubs.predict.Predict, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and len(details) < SHORT, (code, details[:200])


def test_a_garbage_protobuf_logs_one_line_and_no_traceback(server, stubs, caplog):
    predict = stubs.channel.unary_unary("/tensorflow.serving.PredictionService/Predict")  # raw bytes in and out
    with caplog.at_level(logging.ERROR):
        for _ in range(3):
            try:
                predict(b"\xff\xff\xff\xff garbage", timeout=10)
            except grpc.RpcError as error:
                assert error.code() != grpc.StatusCode.OK
    records = [record for record in caplog.records if record.name.startswith("grpc")]
    assert len(records) == 3  # one per bad request
    for record in records:
        assert record.exc_info is None and record.exc_text is None
        assert "\n" not in record.getMessage() and "deserializ" in record.getMessage()
    _assert_alive(stubs)


_DTYPES = [types_pb2.DT_UINT8, types_pb2.DT_FLOAT, types_pb2.DT_INT32, types_pb2.DT_INT64, types_pb2.DT_STRING,
           types_pb2.DT_HALF, types_pb2.DT_BOOL, types_pb2.DT_COMPLEX64]


@st.composite
def amplifying_requests(draw):
    """A TensorProto carrying 0-2 values (or a little tensor_content) for a shape that may be huge."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"
    request.model_spec.signature_name = draw(st.sampled_from(["serving_images", "serving_default", "classification"]))
    key = {"serving_images": "images", "serving_default": "examples", "classification": "inputs"}[request.model_spec.signature_name]
    tensor = request.inputs[key]
    tensor.dtype = draw(st.sampled_from(_DTYPES))
    rank = draw(st.sampled_from([1, 1, 4, 4, 2, 70, 300]))
    big = st.sampled_from([1, 8, 65_537, 250_000, 1 << 20, 1 << 31, 1 << 40, 2**63 - 1])
    for axis in range(rank):
        tensor.tensor_shape.dim.add(size=draw(big) if axis == 0 or draw(st.integers(0, 3)) == 0 else draw(st.integers(0, 9)))
    kind = draw(st.sampled_from(["content", "one", "two", "none"]))
    if kind == "content":
        tensor.tensor_content = draw(st.binary(max_size=64))
    elif kind != "none":
        count = 1 if kind == "one" else 2
        if tensor.dtype == types_pb2.DT_STRING:
            tensor.string_val.extend(draw(st.lists(st.binary(max_size=3000), min_size=count, max_size=count)))
        elif tensor.dtype == types_pb2.DT_FLOAT:
            tensor.float_val.extend([1.5] * count)
        elif tensor.dtype == types_pb2.DT_INT64:
            tensor.int64_val.extend([7] * count)
        elif tensor.dtype == types_pb2.DT_HALF:
            tensor.half_val.extend([15360] * count)
        elif tensor.dtype == types_pb2.DT_BOOL:
            tensor.bool_val.extend([True] * count)
        elif tensor.dtype == types_pb2.DT_COMPLEX64:
            tensor.scomplex_val.extend([1.0, 2.0] * count)
        else:
            tensor.int_val.extend([3] * count)
    return request


CLEAN_CODES = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=amplifying_requests())
def test_shape_amplifying_tensors_only_get_clean_codes(stubs, request):
    code, details = _call(stubs.predict.Predict, request)
    assert code in CLEAN_CODES, (code, details)
    assert len(details) < 1100


def test_server_alive_after_the_amplifying_requests(stubs):
    _assert_alive(stubs)
