"""Malformed requests get TF Serving's status codes, and the server keeps serving."""
import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

from serving.server.tensors import to_tensor_proto
from tests.serving import helpers
from tests.serving.conftest import BACKENDS_UNDER_TEST
from tests.serving.conftest import start_server

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND


@pytest.fixture(scope="module", params=BACKENDS_UNDER_TEST)
def serving_backend(request):
    """Every test here runs on the shared server once per backend (onnxruntime: version 1 carries its artifact)."""
    return request.param


def _code(stubs, request) -> grpc.StatusCode:
    try:
        stubs.predict.Predict(request, timeout=10)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def _assert_alive(stubs) -> None:
    response = stubs.predict.Predict(helpers.image_request(), timeout=10)
    assert response.outputs["probabilities"].tensor_shape.dim[0].size == 2


def _with_input(key: str, array) -> predict_pb2.PredictRequest:
    request = helpers.image_request()
    del request.inputs["images"]
    request.inputs[key].CopyFrom(to_tensor_proto(array))
    return request


def _spec(**fields) -> predict_pb2.PredictRequest:
    request = helpers.image_request()
    for key, value in fields.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    return request


CASES = {
    "wrong dtype": (lambda: _with_input("images", helpers.images(2).astype(np.float32)), INVALID),
    "wrong rank": (lambda: _with_input("images", helpers.images(2)[..., 0]), INVALID),
    "wrong inner dims": (lambda: _with_input("images", np.zeros((2, 9, 8, 1), np.uint8)), INVALID),
    "unknown input": (lambda: _with_input("pixels", helpers.images(2)), INVALID),
    "missing input": (lambda: _no_inputs(), INVALID),
    "empty batch": (lambda: _with_input("images", np.zeros((0, 8, 8, 1), np.uint8)), INVALID),
    "unknown signature": (lambda: _spec(signature_name="nope"), INVALID),
    "unknown version": (lambda: _spec(version=42), NOT_FOUND),
    "unknown label": (lambda: _spec(version_label="canary"), INVALID),
    "unknown model": (lambda: _spec(name="mnist"), NOT_FOUND),
    "malformed model name": (lambda: _spec(name="../etc"), INVALID),
    "empty model name": (lambda: _spec(name=""), INVALID),
    "short tensor_content": (lambda: _short_content(), INVALID),
    "undecodable example": (lambda: _bad_example(), INVALID),
}


def _no_inputs():
    request = helpers.image_request()
    del request.inputs["images"]
    return request


def _short_content():
    request = helpers.image_request()
    request.inputs["images"].tensor_content = b"\x00" * 10
    return request


def _bad_example():
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"
    request.inputs["examples"].CopyFrom(to_tensor_proto(np.array([b"not a tf.Example"], dtype=object)))
    return request


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_request_gets_the_right_code(stubs, case):
    make, expected = CASES[case]
    assert _code(stubs, make()) == expected
    _assert_alive(stubs)


def test_oversize_payload_is_resource_exhausted(exported, tmp_path):
    helpers.push_version(exported[1], str(tmp_path / "digits"), 1)
    server = start_server(str(tmp_path / "digits"), grpc_max_message_bytes=64 * 1024)
    stubs = helpers.Stubs(server.grpc_port)
    try:
        request = _with_input("images", np.zeros((2000, 8, 8, 1), np.uint8))  # 128 KB > 64 KiB
        assert _code(stubs, request) == grpc.StatusCode.RESOURCE_EXHAUSTED
        # A tiny proto describing a huge tensor (one value fills it) is refused, not allocated.
        huge = tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT8, int_val=[1])
        for size in (10**6, 8, 8, 1):
            huge.tensor_shape.dim.add(size=size)
        request = helpers.image_request()
        request.inputs["images"].CopyFrom(huge)
        assert _code(stubs, request) == grpc.StatusCode.RESOURCE_EXHAUSTED
        _assert_alive(stubs)
    finally:
        stubs.close()
        server.stop(grace=1.0)


_DTYPES = [types_pb2.DT_UINT8, types_pb2.DT_FLOAT, types_pb2.DT_INT32, types_pb2.DT_INT64, types_pb2.DT_STRING,
           types_pb2.DT_BOOL, types_pb2.DT_HALF, types_pb2.DT_DOUBLE, types_pb2.DT_INVALID, types_pb2.DT_RESOURCE, 99]


@st.composite
def near_valid_requests(draw):
    """Mostly well-formed requests with one or two things perturbed: reaches the model."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"
    if draw(st.booleans()):
        request.model_spec.signature_name = "serving_images"
        batch = draw(st.integers(0, 4))
        shape = [batch, *helpers.IMAGE_SHAPE]
        if draw(st.integers(0, 4)) == 0:
            shape[draw(st.integers(0, 3))] = draw(st.integers(0, 9))
        dtype = draw(st.sampled_from([np.uint8] * 4 + [np.float32, np.int32, np.uint16]))
        array = np.frombuffer(draw(st.binary(min_size=int(np.prod(shape)) * np.dtype(dtype).itemsize,
                                             max_size=int(np.prod(shape)) * np.dtype(dtype).itemsize)), dtype=dtype).reshape(shape)
        request.inputs["images"].CopyFrom(to_tensor_proto(array))
    else:
        request.model_spec.signature_name = draw(st.sampled_from(["", "serving_default", "classification"]))
        key = "inputs" if request.model_spec.signature_name == "classification" else "examples"
        good = [helpers.png_example(image) for image in helpers.images(draw(st.integers(0, 3)))]
        junk = draw(st.lists(st.binary(max_size=40), max_size=2))
        request.inputs[key].CopyFrom(to_tensor_proto(np.array(good + junk, dtype=object).reshape(-1)))
    return request


@st.composite
def arbitrary_requests(draw):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = draw(st.sampled_from(["digits", "digits", "mnist", "", "a/b", "x" * 200]))
    request.model_spec.signature_name = draw(st.sampled_from(["", "serving_images", "serving_default", "classification", "zzz"]))
    version = draw(st.sampled_from([None, None, 1, 2, -1, 2**62]))
    if version is not None:
        request.model_spec.version.value = version
    elif draw(st.booleans()):
        request.model_spec.version_label = draw(st.sampled_from(["stable", "", "canary"]))
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(["images", "examples", "inputs", "extra"]))
        tensor = request.inputs[key]
        tensor.dtype = draw(st.sampled_from(_DTYPES))
        if draw(st.integers(0, 9)) == 0:
            tensor.tensor_shape.unknown_rank = True
        for size in draw(st.lists(st.integers(-1, 9), max_size=5)):
            tensor.tensor_shape.dim.add(size=size)
        kind = draw(st.sampled_from(["content", "float", "int", "string", "none"]))
        if kind == "content":
            tensor.tensor_content = draw(st.binary(max_size=700))
        elif kind == "float":
            tensor.float_val.extend(draw(st.lists(st.floats(allow_nan=True), max_size=20)))
        elif kind == "int":
            tensor.int_val.extend(draw(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=20)))
        elif kind == "string":
            tensor.string_val.extend(draw(st.lists(st.binary(max_size=30), max_size=5)))
    request.output_filter.extend(draw(st.lists(st.sampled_from(["probabilities", "classes", "scores", "x"]), max_size=2)))
    return request


CLEAN_CODES = {grpc.StatusCode.OK, INVALID, NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED}


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=st.one_of(near_valid_requests(), arbitrary_requests()))
def test_random_requests_only_get_clean_codes(stubs, request):
    assert _code(stubs, request) in CLEAN_CODES


def test_server_alive_after_the_random_requests(stubs):
    _assert_alive(stubs)
