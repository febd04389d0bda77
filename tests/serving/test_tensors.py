"""TensorProto conversion for the common dtypes, both encodings, against TensorFlow's own."""
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from serving.server.errors import ServingError
from serving.server.tensors import fill_tensor_proto, to_ndarray, to_tensor_proto
from tensorflow.core.framework import tensor_pb2

DTYPES = [np.float32, np.float64, np.float16, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
          np.uint32, np.uint64, np.bool_, np.complex64, np.complex128, tf.bfloat16.as_numpy_dtype]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_round_trip_matches_tensorflow(dtype):
    array = (np.arange(12).reshape(3, 4) % 2).astype(dtype)
    # Requests as TF's own make_tensor_proto writes them (tensor_content) ...
    np.testing.assert_array_equal(to_ndarray(tf.make_tensor_proto(array), "x", 1 << 20), array)
    # ... and responses in typed value fields that tf.make_ndarray reads back.
    np.testing.assert_array_equal(tf.make_ndarray(fill_tensor_proto(tensor_pb2.TensorProto(), array)), array)
    np.testing.assert_array_equal(to_ndarray(to_tensor_proto(array), "x", 1 << 20), array)


def test_strings_round_trip():
    array = np.array([[b"a", b"\xff\x00"], [b"", b"longer"]], dtype=object)
    proto = fill_tensor_proto(tensor_pb2.TensorProto(), array)
    assert proto.dtype == types_pb2.DT_STRING
    np.testing.assert_array_equal(to_ndarray(proto, "s", 1 << 20), array)


def test_typed_fields_follow_tensorflow_fill_rules():
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[7.0])
    proto.tensor_shape.dim.add(size=3)
    np.testing.assert_array_equal(to_ndarray(proto, "x", 1 << 20), [7.0, 7.0, 7.0])


@pytest.mark.parametrize("mutate, message", [
    (lambda p: setattr(p, "dtype", types_pb2.DT_RESOURCE), "cannot be sent"),
    (lambda p: setattr(p, "tensor_content", b"\x00"), "tensor_content has 1 bytes"),
    (lambda p: p.tensor_shape.dim.add(size=-1), "negative"),
    (lambda p: setattr(p.tensor_shape, "unknown_rank", True), "unknown rank"),
])
def test_malformed_tensors_are_invalid_argument(mutate, message):
    proto = tf.make_tensor_proto(np.zeros((2, 2), np.float32))
    mutate(proto)
    with pytest.raises(ServingError, match=message) as error:
        to_ndarray(proto, "x", 1 << 20)
    assert error.value.code.name == "INVALID_ARGUMENT"
