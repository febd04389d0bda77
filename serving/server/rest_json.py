"""JSON <-> numpy and tf.Example for TF Serving's REST API (no HTTP here).

Predict bodies use the "instances" (row) or "inputs" (columnar) format; binary strings
are `{"b64": "..."}`. String outputs are plain text unless they are not UTF-8 or the
output name ends in `_bytes`, then `{"b64": ...}`, as TF Serving writes them.

    arrays, row_format = arrays_from_predict_body(signature, {"instances": [[[0], [255]]]})
    body = predict_body(outputs, row_format)
"""
from __future__ import annotations

import base64
import binascii
import json

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from serving.server import tensors
from serving.server.errors import ServingError
from serving.server.signature import check_input_names

MAX_NESTING = 64  # list levels in one input value: numpy's (and so our) limit on tensor rank
_INT64 = (-(2**63), 2**63 - 1)


def parse_body(raw: bytes):
    """The request body's JSON, or INVALID_ARGUMENT naming what is wrong with it."""
    try:
        return json.loads(raw)
    except RecursionError:
        raise ServingError.invalid_argument(
            f"the JSON body nests too deeply to parse; tensors have at most {MAX_NESTING} dims") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ServingError.invalid_argument(f"the body is not valid JSON: {str(error)[:200]}") from None
    except ValueError as error:  # Python refuses integers of more than 4300 digits
        raise ServingError.invalid_argument(
            f"the body has a JSON number too long to convert ({str(error).split(';')[0][:120]}); "
            "numbers must fit int64, uint64 or float64") from None


def _too_deep(where: str, depth: int) -> ServingError:
    return ServingError.invalid_argument(f"{where}: the value nests {depth}+ lists deep; tensors have at most {MAX_NESTING} dims")


def _nesting(value) -> int:
    """How many lists deep the first element chain goes (bounded; enough for a rank check)."""
    depth = 0
    while isinstance(value, list) and depth <= MAX_NESTING:
        depth += 1
        value = value[0] if value else None
    return depth


def _decode_strings(value, where: str, depth: int = 0):
    """Nested JSON values -> nested bytes (str as UTF-8, {"b64": ...} decoded)."""
    if isinstance(value, list):
        if depth >= MAX_NESTING:
            raise _too_deep(where, depth + 1)
        return [_decode_strings(v, where, depth + 1) for v in value]
    if isinstance(value, dict):
        if set(value) != {"b64"} or not isinstance(value["b64"], str):
            raise ServingError.invalid_argument(f"{where}: a binary value must be {{\"b64\": \"<base64>\"}}, got {sorted(value)}")
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise ServingError.invalid_argument(f"{where}: the b64 value is not valid base64") from None
    if isinstance(value, str):
        return value.encode("utf-8")
    raise ServingError.invalid_argument(f"{where}: expected strings or {{\"b64\": ...}}, got {type(value).__name__}")


def _object_array(nested) -> np.ndarray:
    """Nested lists of bytes -> object array, without numpy turning bytes into 'S' arrays."""
    shape = []
    probe = nested
    while isinstance(probe, list):
        shape.append(len(probe))
        probe = probe[0] if probe else None
    flat = []

    def walk(value, depth):
        if depth == len(shape):
            if isinstance(value, list):
                raise ValueError("ragged")
            flat.append(value)
            return
        if not isinstance(value, list) or len(value) != shape[depth]:
            raise ValueError("ragged")
        for item in value:
            walk(item, depth + 1)

    walk(nested, 0)
    array = np.empty(len(flat), dtype=object)
    array[:] = flat
    return array.reshape(shape)


def to_array(value, spec, where: str) -> np.ndarray:
    """One input's JSON value as a numpy array of the signature's dtype."""
    if _nesting(value) > MAX_NESTING:
        raise _too_deep(where, MAX_NESTING + 1)
    try:
        if spec.dtype == types_pb2.DT_STRING:
            return _object_array(_decode_strings(value, where))
        target = tensors.NUMPY_DTYPE.get(spec.dtype)
        if target is None:
            raise ServingError.invalid_argument(f"{where}: dtype {tensors.dtype_name(spec.dtype)} cannot be sent as JSON")
        raw = np.array(value)
    except ValueError:
        raise ServingError.invalid_argument(f"{where}: the nested lists are ragged; every row needs the same shape") from None
    if raw.dtype == object or raw.dtype.kind in "SUV":
        raise ServingError.invalid_argument(f"{where}: expected numbers for {tensors.dtype_name(spec.dtype)}, got {raw.dtype.kind!r} values")
    if target.kind in "iu" and raw.dtype.kind not in "iub":
        raise ServingError.invalid_argument(f"{where}: {tensors.dtype_name(spec.dtype)} needs integers, got non-integer numbers")
    if target.kind == "b" and raw.dtype.kind != "b":
        raise ServingError.invalid_argument(f"{where}: bool needs true/false values")
    if target.kind in "iu" and raw.size:
        info = np.iinfo(target)
        if raw.min() < info.min or raw.max() > info.max:
            raise ServingError.invalid_argument(f"{where}: values must be in [{info.min}, {info.max}] for {tensors.dtype_name(spec.dtype)}")
    return raw.astype(target)


def arrays_from_predict_body(signature, body) -> tuple:
    """`(arrays, row_format)` from a :predict body; arrays are checked against the signature."""
    if not isinstance(body, dict):
        raise ServingError.invalid_argument("the request body must be a JSON object with \"instances\" or \"inputs\"")
    has_rows, has_columns = "instances" in body, "inputs" in body
    if has_rows == has_columns:
        raise ServingError.invalid_argument("send exactly one of \"instances\" (row format) or \"inputs\" (columnar format)")
    names = sorted(signature.inputs)
    if has_rows:
        rows = body["instances"]
        if not isinstance(rows, list) or not rows:
            raise ServingError.invalid_argument("\"instances\" must be a non-empty list, one entry per example")
        if len(names) == 1 and not (isinstance(rows[0], dict) and set(rows[0]) == set(names)):
            columns = {names[0]: rows}
        else:
            if not all(isinstance(row, dict) for row in rows):
                raise ServingError.invalid_argument(f"signature '{signature.name}' has inputs {names}: each instance must be an object naming them")
            columns = {name: [row.get(name) for row in rows] for name in names}
            if any(v is None for values in columns.values() for v in values):
                raise ServingError.invalid_argument(f"every instance must set all inputs {names}")
    else:
        inputs = body["inputs"]
        if isinstance(inputs, dict) and set(inputs) != {"b64"}:
            columns = inputs  # {input name: value}
        elif len(names) == 1:
            columns = {names[0]: inputs}  # a single input may be given bare
        else:
            raise ServingError.invalid_argument(f"\"inputs\" must be an object naming the inputs {names}")
    check_input_names(columns, names, signature.name)
    arrays = {name: to_array(value, signature.inputs[name], f"input '{name}'") for name, value in columns.items()}
    return signature.check_arrays(arrays), has_rows


def _json_value(array: np.ndarray, name: str):
    if array.dtype == object or array.dtype.kind == "S":
        def convert(value):
            if isinstance(value, bytes):
                if not name.endswith("_bytes"):
                    try:
                        return value.decode("utf-8")
                    except UnicodeDecodeError:
                        pass
                return {"b64": base64.b64encode(value).decode("ascii")}
            return value
        return np.vectorize(convert, otypes=[object])(array).tolist() if array.size else array.tolist()
    if array.dtype.kind == "c":
        raise ServingError.invalid_argument(f"output '{name}' is complex, which JSON cannot carry; use gRPC")
    return array.tolist()


def predict_body(outputs: dict, row_format: bool) -> dict:
    """TF Serving's :predict response: "predictions" (rows) or "outputs" (columns)."""
    values = {name: _json_value(array, name) for name, array in outputs.items()}
    if not row_format:
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    rows = len(next(iter(outputs.values())))
    return {"predictions": [{name: value[i] for name, value in values.items()} for i in range(rows)]}


def _feature(value, where: str) -> tf.train.Feature:
    values = value if isinstance(value, list) else [value]
    if any(isinstance(v, list) for v in values):
        raise ServingError.invalid_argument(f"{where}: a feature is one value or a flat list of values, not nested lists")
    if all(isinstance(v, bool) for v in values) and values:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        if values and not _INT64[0] <= min(values) <= max(values) <= _INT64[1]:
            raise ServingError.invalid_argument(
                f"{where}: integer values must be in the int64 range [{_INT64[0]}, {_INT64[1]}] of tf.Example's int64_list; "
                "send larger numbers as floats or strings")
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        try:
            return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))
        except OverflowError:
            raise ServingError.invalid_argument(f"{where}: a number is beyond float range; float_list holds float32") from None
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=_decode_strings(values, where)))


def example_from_json(features, where: str) -> tf.train.Example:
    """A tf.Example from `{"feature": value or [values], ...}` (ints, floats, strings, b64)."""
    if not isinstance(features, dict):
        raise ServingError.invalid_argument(f"{where} must be an object of feature name -> value(s)")
    example = tf.train.Example()
    for key, value in features.items():
        example.features.feature[key].CopyFrom(_feature(value, f"{where} feature '{key}'"))
    return example


def examples_input(body, input_proto) -> None:
    """Fills a TF Serving `Input` from a :classify/:regress body ("examples", "context")."""
    if not isinstance(body, dict) or not isinstance(body.get("examples"), list) or not body["examples"]:
        raise ServingError.invalid_argument("the body needs \"examples\": a non-empty list of feature objects")
    examples = [example_from_json(e, f"example {i}") for i, e in enumerate(body["examples"])]
    if "context" in body:
        target = input_proto.example_list_with_context
        target.context.CopyFrom(example_from_json(body["context"], "context"))
    else:
        target = input_proto.example_list
    target.examples.extend(examples)
