"""Open Inference Protocol (KServe v2) tensors <-> numpy, for the REST and gRPC front ends.

Datatypes are the protocol's names (BOOL, UINT8, ..., FP32, BYTES); each maps to one
TensorFlow dtype. BYTES elements travel as raw bytes with a 4-byte little-endian length
prefix each (binary REST data and gRPC `raw_*_contents`, as Triton sends them), as JSON
strings (UTF-8) or as gRPC `bytes_contents`. Every size is checked before anything is
allocated: the element count a shape describes must match the data sent.

    array = array_from_raw("images", "UINT8", [2, 8, 8, 1], raw, max_bytes=64 << 20)
    raw = raw_from_array(outputs["classes"])            # BYTES: length-prefixed
"""
from __future__ import annotations

import math
import struct

import numpy as np
from tensorflow.core.framework import types_pb2

from serving.server import tensors
from serving.server.errors import ServingError

# Protocol datatype -> TensorFlow dtype enum (TF has no FP8 types on the v2 list).
TF_DTYPE = {
    "BOOL": types_pb2.DT_BOOL,
    "UINT8": types_pb2.DT_UINT8, "UINT16": types_pb2.DT_UINT16,
    "UINT32": types_pb2.DT_UINT32, "UINT64": types_pb2.DT_UINT64,
    "INT8": types_pb2.DT_INT8, "INT16": types_pb2.DT_INT16,
    "INT32": types_pb2.DT_INT32, "INT64": types_pb2.DT_INT64,
    "FP16": types_pb2.DT_HALF, "BF16": types_pb2.DT_BFLOAT16,
    "FP32": types_pb2.DT_FLOAT, "FP64": types_pb2.DT_DOUBLE,
    "BYTES": types_pb2.DT_STRING,
}
DATATYPE = {enum: name for name, enum in TF_DTYPE.items()}
INVALID_DATATYPE = "INVALID"  # Triton's name for a type the protocol cannot carry

# gRPC InferTensorContents field per datatype (FP16/BF16 only travel as raw contents).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
_LENGTH = struct.Struct("<I")
_MAX_DIM = (1 << 63) - 1


def datatype_of(dtype_enum: int) -> str:
    """'FP32' for DT_FLOAT; 'INVALID' for a TF dtype the protocol has no name for."""
    return DATATYPE.get(dtype_enum, INVALID_DATATYPE)


def array_datatype(array: np.ndarray) -> str:
    """The protocol datatype of an output array (object/bytes arrays are BYTES)."""
    return datatype_of(tensors.enum_for(array))


def numpy_dtype(datatype: str, name: str) -> np.dtype:
    """The numpy dtype of a protocol datatype; INVALID_ARGUMENT for an unknown name."""
    enum = TF_DTYPE.get(datatype)
    if enum is None:
        raise ServingError.invalid_argument(
            f"input '{name}' has datatype {datatype!r}, which this server does not support; use one of {sorted(TF_DTYPE)}"
        )
    return tensors.NUMPY_DTYPE[enum]


def checked_shape(name: str, shape, max_bytes: int, itemsize: int) -> tuple:
    """The shape as a tuple of ints, refused if malformed or larger than `max_bytes`."""
    if not isinstance(shape, (list, tuple)) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise ServingError.invalid_argument(f"input '{name}': shape must be a list of integers, got {shape!r}")
    if any(d < 0 or d > _MAX_DIM for d in shape):
        raise ServingError.invalid_argument(f"input '{name}': shape {list(shape)} has a negative or too large dimension")
    count = math.prod(shape)
    if count * itemsize > max_bytes:
        raise ServingError.resource_exhausted(
            f"input '{name}' of shape {list(shape)} needs {count * itemsize} bytes, more than the "
            f"{max_bytes}-byte limit; send smaller batches"
        )
    return tuple(shape)


def _itemsize(datatype: str, name: str) -> int:
    return 1 if datatype == "BYTES" else numpy_dtype(datatype, name).itemsize


def deserialize_bytes(name: str, raw: bytes, count: int) -> np.ndarray:
    """`count` length-prefixed BYTES elements from `raw` (all of it), as an object array."""
    view = memoryview(raw)
    items, offset = [], 0
    for _ in range(count):
        if offset + 4 > len(view):
            raise ServingError.invalid_argument(
                f"input '{name}': BYTES data ends after {len(items)} of {count} elements; each element is a "
                "4-byte little-endian length followed by that many bytes"
            )
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > len(view):
            raise ServingError.invalid_argument(
                f"input '{name}': BYTES element {len(items)} claims {length} bytes but only {len(view) - offset} remain"
            )
        items.append(bytes(view[offset:offset + length]))
        offset += length
    if offset != len(view):
        raise ServingError.invalid_argument(
            f"input '{name}': {len(view) - offset} bytes left over after {count} BYTES elements; the shape and data disagree"
        )
    array = np.empty(count, dtype=object)
    array[:] = items
    return array


def serialize_bytes(array: np.ndarray) -> bytes:
    """BYTES elements, each with its 4-byte little-endian length prefix (Triton's raw form)."""
    parts = []
    for item in array.ravel().tolist():
        data = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def array_from_raw(name: str, datatype: str, shape, raw: bytes, max_bytes: int) -> np.ndarray:
    """An input sent as raw bytes (binary REST data or gRPC raw_input_contents)."""
    shape = checked_shape(name, shape, max_bytes, _itemsize(datatype, name))
    count = math.prod(shape)
    if datatype == "BYTES":
        return deserialize_bytes(name, raw, count).reshape(shape)
    dtype = numpy_dtype(datatype, name)
    if len(raw) != count * dtype.itemsize:
        raise ServingError.invalid_argument(
            f"input '{name}': {len(raw)} bytes of data, but shape {list(shape)} of {datatype} needs {count * dtype.itemsize}"
        )
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False).reshape(shape)


def _flatten(data) -> list:
    """Row-major values of a nested JSON list (Triton accepts flat and nested data)."""
    if not isinstance(data, list):
        return [data]
    flat, stack = [], [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _value_ok(datatype: str, value) -> bool:
    if datatype == "BYTES":
        return isinstance(value, (str, bytes))
    if datatype == "BOOL":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if datatype.startswith(("INT", "UINT")):
        return isinstance(value, int)
    return isinstance(value, (int, float))


def array_from_values(name: str, datatype: str, shape, values, max_bytes: int) -> np.ndarray:
    """An input sent as values: REST JSON `data` (flat or nested) or gRPC typed `contents`."""
    shape = checked_shape(name, shape, max_bytes, _itemsize(datatype, name))
    dtype = numpy_dtype(datatype, name)
    count = math.prod(shape)
    if not isinstance(values, list) and len(values) != count:  # a gRPC repeated field: check before copying
        raise ServingError.invalid_argument(
            f"input '{name}': {len(values)} values for shape {list(shape)}, which holds {count}; send one value per element"
        )
    flat = _flatten(values) if isinstance(values, list) else list(values)
    if len(flat) != count:
        raise ServingError.invalid_argument(
            f"input '{name}': {len(flat)} values for shape {list(shape)}, which holds {count}; send one value per element"
        )
    bad = next((v for v in flat if not _value_ok(datatype, v)), None)
    if bad is not None:
        raise ServingError.invalid_argument(f"input '{name}': value {bad!r} is not a {datatype} value")
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = [v.encode("utf-8") if isinstance(v, str) else v for v in flat]
        return array.reshape(shape)
    if dtype.kind in "iu" and flat:
        info = np.iinfo(dtype)
        if min(flat) < info.min or max(flat) > info.max:
            raise ServingError.invalid_argument(f"input '{name}': a value is out of the {datatype} range [{info.min}, {info.max}]")
    return np.array(flat, dtype=dtype).reshape(shape)


def raw_from_array(array: np.ndarray) -> bytes:
    """An output as raw bytes: little-endian values, or length-prefixed BYTES."""
    if tensors.enum_for(array) == types_pb2.DT_STRING:
        return serialize_bytes(array)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def json_values(name: str, array: np.ndarray) -> list:
    """An output as a flat JSON list (BYTES as UTF-8 strings)."""
    if tensors.enum_for(array) == types_pb2.DT_STRING:
        try:
            return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in array.ravel().tolist()]
        except UnicodeDecodeError:
            raise ServingError.invalid_argument(
                f"output '{name}' holds bytes that are not UTF-8, which JSON cannot carry; request it with "
                '"parameters": {"binary_data": true}'
            ) from None
    if array.dtype.kind == "f" and array.dtype.itemsize == 2 and array.dtype != np.float16:  # bfloat16
        array = array.astype(np.float32)
    return array.ravel().tolist()
