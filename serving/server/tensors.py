"""TensorProto <-> numpy, fast for the common cases and exact for the rest.

Requests: `tensor_content` (what `tf.make_tensor_proto` writes for numeric arrays) is read
with one `np.frombuffer`, no copy; typed value fields (`float_val`, `string_val`, ...) go
through `tf.make_ndarray`, which applies TensorFlow's rules (a single value fills the
shape, missing values repeat the last one). Responses use the typed value fields, as
TF Serving does by default, so clients reading `outputs["x"].float_val` work too.

Because one value fills a whole shape, a 139-byte TensorProto can describe a million
rows. `materialized_bytes` sizes a tensor from its dtype, shape and values (strings at
their real lengths) without allocating anything, so callers check limits first.

    materialized_bytes(request.inputs["images"], "images")  # bytes the array would take
    array = to_ndarray(request.inputs["images"], "images", max_bytes=16 << 20)
    fill_tensor_proto(response.outputs["probabilities"], probabilities)
"""
from __future__ import annotations

import math

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

from serving.server.errors import ServingError, clip

# The dtypes a request may carry: every numeric TF dtype with a numpy equivalent, and strings.
SUPPORTED_DTYPES = (
    types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE, types_pb2.DT_HALF, types_pb2.DT_BFLOAT16,
    types_pb2.DT_INT8, types_pb2.DT_INT16, types_pb2.DT_INT32, types_pb2.DT_INT64,
    types_pb2.DT_UINT8, types_pb2.DT_UINT16, types_pb2.DT_UINT32, types_pb2.DT_UINT64,
    types_pb2.DT_BOOL, types_pb2.DT_COMPLEX64, types_pb2.DT_COMPLEX128, types_pb2.DT_STRING,
)
NUMPY_DTYPE = {enum: np.dtype(tf.dtypes.as_dtype(enum).as_numpy_dtype) for enum in SUPPORTED_DTYPES}
_ENUM_BY_NUMPY = {dtype: enum for enum, dtype in NUMPY_DTYPE.items() if enum != types_pb2.DT_STRING}

# TF Serving's AsProtoField: which repeated field carries each dtype's values.
_VALUE_FIELD = {
    types_pb2.DT_FLOAT: "float_val", types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT8: "int_val", types_pb2.DT_INT16: "int_val", types_pb2.DT_INT32: "int_val",
    types_pb2.DT_UINT8: "int_val", types_pb2.DT_UINT16: "int_val",
    types_pb2.DT_INT64: "int64_val", types_pb2.DT_UINT32: "uint32_val", types_pb2.DT_UINT64: "uint64_val",
    types_pb2.DT_BOOL: "bool_val",
}


# numpy 1.x's ndarray limit (numpy 2: 64); TensorFlow allows 254 dims, no served model needs more.
MAX_RANK = 32
# What one string element costs beyond its bytes: a TF tstring (24 B) and a numpy object pointer.
STRING_ELEMENT_OVERHEAD = 32


def dtype_name(enum: int) -> str:
    """'uint8' for DT_UINT8: the name users know from numpy/TF."""
    try:
        return tf.dtypes.as_dtype(enum).name
    except (TypeError, KeyError, ValueError):
        return types_pb2.DataType.Name(enum) if enum in types_pb2.DataType.values() else f"dtype #{enum}"


def shape_of(proto: tensor_pb2.TensorProto, name: str) -> tuple:
    name = clip(name)
    if proto.tensor_shape.unknown_rank:
        raise ServingError.invalid_argument(f"input '{name}' has unknown rank; send a tensor with a full shape")
    dims = proto.tensor_shape.dim
    if len(dims) > MAX_RANK:
        raise ServingError.invalid_argument(f"input '{name}' has {len(dims)} dimensions; at most {MAX_RANK} are supported")
    shape = tuple(dim.size for dim in dims)
    if any(size < 0 for size in shape):
        raise ServingError.invalid_argument(f"input '{name}' has a negative dimension in shape {list(shape)}")
    return shape


def _numpy_dtype(proto: tensor_pb2.TensorProto, name: str) -> np.dtype:
    np_dtype = NUMPY_DTYPE.get(proto.dtype)
    if np_dtype is None:
        raise ServingError.invalid_argument(
            f"input '{clip(name)}' has dtype {dtype_name(proto.dtype)}, which cannot be sent in a request; "
            "use a numeric dtype or string"
        )
    return np_dtype


def materialized_bytes(proto: tensor_pb2.TensorProto, name: str) -> int:
    """Bytes the array `proto` describes would take, computed without allocating it.

    Numbers: elements x itemsize. Strings: their real lengths, the last value counted
    once per element it fills (TensorFlow repeats it), plus STRING_ELEMENT_OVERHEAD each.
    INVALID_ARGUMENT for a dtype or shape no array can have.
    """
    np_dtype = _numpy_dtype(proto, name)
    count = math.prod(shape_of(proto, name))
    if proto.dtype != types_pb2.DT_STRING:
        return count * np_dtype.itemsize
    values = proto.string_val
    if len(values) > count:
        return sum(len(value) for value in values) + STRING_ELEMENT_OVERHEAD * len(values)  # refused later
    repeated = (count - len(values)) * (len(values[-1]) if values else 0)
    return sum(len(value) for value in values) + repeated + STRING_ELEMENT_OVERHEAD * count


def to_ndarray(proto: tensor_pb2.TensorProto, name: str, max_bytes: int) -> np.ndarray:
    """The numpy array a request TensorProto describes; INVALID_ARGUMENT if it is malformed.

    Args:
        proto: the request tensor.
        name: its input name, for error messages.
        max_bytes: the largest array this may allocate (typed fields can describe a huge
            tensor with one value, so the limit protects the server's memory); checked
            with `materialized_bytes` before anything is allocated.
    """
    dtype_enum = proto.dtype
    np_dtype = _numpy_dtype(proto, name)
    shape = shape_of(proto, name)
    count = math.prod(shape)
    itemsize = np_dtype.itemsize
    needed = materialized_bytes(proto, name)
    name = clip(name)
    if needed > max_bytes:
        raise ServingError.resource_exhausted(
            f"input '{name}' of shape {list(shape)} ({dtype_name(dtype_enum)}) needs {needed} bytes, more than the "
            f"{max_bytes}-byte limit; send smaller batches"
        )
    if proto.tensor_content:
        if dtype_enum == types_pb2.DT_STRING:
            raise ServingError.invalid_argument(f"input '{name}': string tensors must use string_val, not tensor_content")
        if len(proto.tensor_content) != count * itemsize:
            raise ServingError.invalid_argument(
                f"input '{name}': tensor_content has {len(proto.tensor_content)} bytes but shape "
                f"{list(shape)} of {dtype_name(dtype_enum)} needs {count * itemsize}"
            )
        return np.frombuffer(proto.tensor_content, dtype=np_dtype).reshape(shape)
    try:
        array = tf.make_ndarray(proto)
    except Exception as error:  # any failure here is the request's fault: TF raises several types
        raise ServingError.invalid_argument(f"input '{name}' could not be read as a {dtype_name(dtype_enum)} tensor of shape {list(shape)}: {clip(str(error), 200)}") from None
    if array.shape != shape:
        raise ServingError.invalid_argument(f"input '{name}' has more values than its shape {list(shape)} holds")
    return array


def enum_for(array: np.ndarray) -> int:
    if array.dtype == object or array.dtype.kind in "SU":
        return types_pb2.DT_STRING
    enum = _ENUM_BY_NUMPY.get(array.dtype)
    if enum is None:
        raise ServingError.invalid_argument(f"dtype {array.dtype} has no TensorProto form; use a numeric dtype or bytes")
    return enum


def fill_tensor_proto(proto: tensor_pb2.TensorProto, array: np.ndarray) -> tensor_pb2.TensorProto:
    """Writes `array` into `proto` (e.g. `response.outputs[key]`) using typed value fields."""
    enum = enum_for(array)
    proto.dtype = enum
    dims = proto.tensor_shape.dim
    for size in array.shape:
        dims.add(size=size)
    flat = array.ravel()
    if enum == types_pb2.DT_STRING:
        proto.string_val.extend([v if isinstance(v, bytes) else str(v).encode() for v in flat.tolist()])
    elif enum in (types_pb2.DT_HALF, types_pb2.DT_BFLOAT16):
        proto.half_val.extend(flat.view(np.uint16).tolist())
    elif enum == types_pb2.DT_COMPLEX64:
        proto.scomplex_val.extend(flat.view(np.float32).tolist())
    elif enum == types_pb2.DT_COMPLEX128:
        proto.dcomplex_val.extend(flat.view(np.float64).tolist())
    else:
        getattr(proto, _VALUE_FIELD[enum]).extend(flat.tolist())
    return proto


def to_tensor_proto(array) -> tensor_pb2.TensorProto:
    """A request TensorProto for `array`: raw `tensor_content` for numbers (one memcpy)."""
    array = np.asarray(array)
    enum = enum_for(array)
    if enum == types_pb2.DT_STRING:
        return fill_tensor_proto(tensor_pb2.TensorProto(), array)
    proto = tensor_pb2.TensorProto(dtype=enum, tensor_content=np.ascontiguousarray(array).tobytes())
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    return proto
