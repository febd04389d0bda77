"""One signature of a loaded SavedModel: request checks, execution, optional batching.

The input and output specs come from the SavedModel's SignatureDef (the same protos
GetModelMetadata returns). As in TF Serving, input names and dtypes are checked before
TensorFlow sees the data (INVALID_ARGUMENT, TF Serving's texts) and shapes are left to the
graph: a TF1 model with input float32[None, 1] fed shape [3] answers as TF Serving does,
and a shape the graph rejects is INVALID_ARGUMENT with TensorFlow's message. Only requests
whose shapes match the SignatureDef (rank, fixed dims, a leading None dim) go through the
batcher. Sizes are checked before anything is allocated: a request over `RequestLimits`
(rows in dim 0, materialized bytes) is RESOURCE_EXHAUSTED.

    signature = Signature("serving_images", signature_def, loaded.signatures["serving_images"])
    outputs = signature.run(signature.arrays_from_request(request.inputs))
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from serving.server import tensors
from serving.server.backends.tensorflow_backend import TensorFlowBackend
from serving.server.batching import Batcher, BatchingOptions
from serving.server.errors import ServingError, clip
from serving.server.options import DEFAULT_MAX_REQUEST_ROWS


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    """What one request may make the server allocate; checked before allocating.

    Args:
        max_rows: most rows (dim 0 of a batched input, or tf.Examples) in one request
            (--max_request_rows; TF Serving has no such limit).
        max_bytes: most bytes a request's inputs may take once materialized, strings at
            their real lengths (4 x --grpc_max_message_bytes).
    """

    max_rows: int = DEFAULT_MAX_REQUEST_ROWS
    max_bytes: int = 64 << 20

    def check_rows(self, rows: int, what: str) -> None:
        if rows > self.max_rows:
            raise ServingError.resource_exhausted(
                f"{what} has {rows} rows, more than the limit of {self.max_rows} rows per request; "
                f"send at most {self.max_rows} per request or raise --max_request_rows"
            )

    def check_bytes(self, needed: int, what: str) -> None:
        if needed > self.max_bytes:
            raise ServingError.resource_exhausted(
                f"{what} needs {needed} bytes once materialized, more than the limit of {self.max_bytes} bytes "
                "per request; send smaller batches or raise --grpc_max_message_bytes (the limit is 4x it)"
            )


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """Name, dtype (DT_* enum) and shape (None = unknown rank, dims None = any size)."""

    name: str
    dtype: int
    shape: tuple | None

    @classmethod
    def from_tensor_info(cls, name: str, info: meta_graph_pb2.TensorInfo) -> "TensorSpec":
        shape = None if info.tensor_shape.unknown_rank else tuple(
            None if dim.size < 0 else dim.size for dim in info.tensor_shape.dim
        )
        return cls(name, info.dtype, shape)

    @property
    def batched(self) -> bool:
        return bool(self.shape) and self.shape[0] is None

    def describe(self) -> str:
        dims = "?" if self.shape is None else "[" + ", ".join("None" if d is None else str(d) for d in self.shape) + "]"
        return f"{tensors.dtype_name(self.dtype)}{dims}"

    def check(self, array: np.ndarray, signature: str) -> None:
        """dtype must match (TF Serving checks it too); the shape is the graph's business."""
        got = tensors.enum_for(array)
        if got != self.dtype:
            raise ServingError.invalid_argument(
                f"input '{clip(self.name)}' of signature '{clip(signature)}' expects {tensors.dtype_name(self.dtype)}, "
                f"got {tensors.dtype_name(got)}; send {self.describe()}"
            )
        if self.matches(array) and self.batched and array.shape[0] == 0:
            raise ServingError.invalid_argument(
                f"input '{clip(self.name)}' of signature '{clip(signature)}' has an empty batch (dim 0 is 0); send at least one row")

    def fixed_dim0(self, size: int) -> bool:
        """Whether dim 0 of this size is the SignatureDef's fixed dim 0 (so not a count of rows)."""
        return bool(self.shape) and self.shape[0] is not None and self.shape[0] == size

    def matches(self, array: np.ndarray) -> bool:
        """Whether the array's shape is the SignatureDef's (rank and fixed dims): what batching needs."""
        if self.shape is None or array.ndim != len(self.shape):
            return False
        return all(want is None or want == got for want, got in zip(self.shape, array.shape))


def check_input_names(given, signature_inputs, signature: str) -> None:
    """TF Serving's predict_util.cc checks and texts: the inputs must be exactly the signature's."""
    given, expected = set(given), set(signature_inputs)
    if len(given) != len(expected):
        def listed(names):
            return ",".join(clip(name, 100) for name in sorted(names)[:20])
        raise ServingError.invalid_argument(
            f"input size does not match signature: {len(given)}!={len(expected)} len({{{listed(given)}}}) != "
            f"len({{{listed(expected)}}}). Sent extra: {{{listed(given - expected)}}}. "
            f"Missing but required: {{{listed(expected - given)}}}. (signature '{clip(signature)}')"
        )
    unknown = sorted(given - expected)
    if unknown:
        raise ServingError.invalid_argument(
            f"input tensor alias not found in signature: {clip(unknown[0])}. Inputs expected to be in the set "
            f"{{{','.join(sorted(expected))}}}. (signature '{clip(signature)}')"
        )


class Signature:
    """A callable signature with the specs of its SignatureDef.

    Args:
        name: signature key, e.g. "serving_images".
        signature_def: its `SignatureDef` proto from saved_model.pb.
        function: the loaded concrete function (`loaded.signatures[name]`).
        batching: batch concurrent calls with these options, if the signature can be
            batched (every input and output has an unknown leading dim); None = never.
        limits: what one request may allocate (rows, materialized bytes).
        backend: what runs the checked inputs (serving/server/backends); None = the
            SavedModel function through TensorFlow. The batcher wraps `backend.run`.
    """

    def __init__(self, name: str, signature_def, function, batching: BatchingOptions | None = None,
                 limits: RequestLimits = RequestLimits(), backend=None):
        self.name = name
        self.method_name = signature_def.method_name
        self.inputs = {key: TensorSpec.from_tensor_info(key, info) for key, info in signature_def.inputs.items()}
        self.outputs = {key: TensorSpec.from_tensor_info(key, info) for key, info in signature_def.outputs.items()}
        self._function = function
        # A TF1-session or TFLite callable takes numpy arrays itself; a TF2 function gets a flat call.
        self._flat = function if getattr(function, "takes_arrays", False) else _FlatCall.build(function, self.inputs)
        self.limits = limits
        self.backend = backend if backend is not None else TensorFlowBackend(self.call_tensorflow)
        batchable = bool(self.inputs) and all(spec.batched for spec in (*self.inputs.values(), *self.outputs.values()))
        self.batcher = Batcher(self.call, batching) if batching is not None and batchable else None

    def arrays_from_request(self, protos: Mapping) -> dict:
        """Checks and converts a request's `inputs` map (name -> TensorProto) to numpy.

        Rows and materialized bytes are checked from each TensorProto's dtype, shape and
        values before any array is built (one value can fill a million-row shape).
        """
        check_input_names(protos, self.inputs, self.name)
        total = 0
        for key, proto in protos.items():
            shape = tensors.shape_of(proto, key)
            if shape and not self.inputs[key].fixed_dim0(shape[0]):
                self.limits.check_rows(shape[0], f"input '{key}'")
            total += tensors.materialized_bytes(proto, key)
        self.limits.check_bytes(total, f"the request to signature '{self.name}'")
        arrays = {key: tensors.to_ndarray(proto, key, self.limits.max_bytes) for key, proto in protos.items()}
        return self.check_arrays(arrays)

    def check_arrays(self, arrays: dict) -> dict:
        for key, array in arrays.items():
            self.inputs[key].check(array, self.name)
            if array.ndim and not self.inputs[key].fixed_dim0(array.shape[0]):  # relaxed shapes too: no way around the limit
                self.limits.check_rows(array.shape[0], f"input '{key}'")
        batch_sizes = {array.shape[0] for key, array in arrays.items() if self.inputs[key].batched and self.inputs[key].matches(array)}
        if len(batch_sizes) > 1:
            raise ServingError.invalid_argument(
                f"inputs of signature '{self.name}' have different batch sizes {sorted(batch_sizes)}; dim 0 must match"
            )
        return arrays

    def select_outputs(self, requested, unknown: str, repeated: str, **context) -> list:
        """The outputs to return: all (sorted), or those `requested`, each an output, named once.

        `unknown` and `repeated` word the INVALID_ARGUMENT in the caller's protocol; they are
        formatted with `name` / `names` (client text, clipped), `signature`, `outputs` and `context`.
        """
        if not requested:
            return sorted(self.outputs)
        names = list(requested)
        fields = {"signature": self.name, "outputs": sorted(self.outputs), **context}
        for name in names:
            if name not in self.outputs:
                raise ServingError.invalid_argument(unknown.format(name=clip(name), **fields))
        if len(set(names)) != len(names):
            raise ServingError.invalid_argument(repeated.format(names=clip(names), **fields))
        return names

    def batchable(self, arrays: dict) -> bool:
        """Batch only requests shaped as the SignatureDef says (leading None dim, same inner dims):
        a relaxed shape (e.g. [3] for [None, 1]) runs on its own, never concatenated with others."""
        return self.batcher is not None and all(self.inputs[key].matches(array) for key, array in arrays.items())

    def run(self, arrays: dict) -> dict:
        """Outputs (name -> numpy) for checked inputs, through the batcher when they can be batched."""
        if self.batchable(arrays):
            rows = next(iter(arrays.values())).shape[0]
            return self.batcher.submit(arrays, rows)
        return self.call(arrays)

    def call(self, arrays: Mapping) -> dict:
        """One direct call of the backend (no batching)."""
        return self.backend.run(arrays)

    def call_tensorflow(self, arrays: Mapping) -> dict:
        """One direct call of the concrete function."""
        try:
            if self._flat is not None:
                return self._flat(arrays)
            outputs = self._function(**{key: tf.constant(value) for key, value in arrays.items()})
        except tf.errors.OpError as error:
            failure = ServingError.from_tf_error(error)
            if not all(self.inputs[key].matches(array) for key, array in arrays.items()):
                # A shape the SignatureDef does not declare, refused by the graph: the request's fault.
                raise ServingError.invalid_argument(
                    f"{failure.message} (signature '{self.name}' declares "
                    f"{ {key: spec.describe() for key, spec in sorted(self.inputs.items())} }, got "
                    f"{ {key: list(array.shape) for key, array in sorted(arrays.items())} })") from None
            raise failure from None
        except (TypeError, ValueError) as error:  # argument conversion, e.g. a shape TF rejects
            raise ServingError.invalid_argument(f"signature '{self.name}' rejected the inputs: {error}") from None
        return {key: value.numpy() for key, value in outputs.items()}


class _FlatCall:
    """The signature's graph called with flat tensors: what `function(**inputs)` runs.

    A loaded signature's `__call__` binds keyword arguments against its structured input
    signature, re-resolves every captured variable handle and repacks the outputs on each
    call: about 0.3 ms of Python per call on a small model (a third of a digits CNN
    call), more with many variables. The argument order, the captures and the output
    names are fixed once the model is loaded, so they are resolved here, once. Inputs are
    checked against the SignatureDef before they get here (dtype, rank, fixed dims), which
    is the check the structured call would make.

    `build` returns None (and `Signature` keeps the structured call) for anything but the
    plain case: tensor inputs and a dict of tensor outputs whose specs agree with the
    SignatureDef, plain (non-distributed) captures, and no TensorFlow internals missing.
    """

    __slots__ = ("_call", "_captures", "_keywords", "_output_keys")

    def __init__(self, call, captures: list, keywords: list, output_keys: list):
        self._call, self._captures, self._keywords, self._output_keys = call, captures, keywords, output_keys

    @classmethod
    def build(cls, function, input_specs: Mapping):
        try:
            inference = function._inference_function  # pylint: disable=protected-access
            keywords = list(function._arg_keywords)  # pylint: disable=protected-access
            args, kwargs = function.structured_input_signature
            outputs = function.structured_outputs
            flat_outputs = list(inference.function_type.flat_outputs)
            captures = list(function.captured_inputs)
            call = inference.call_flat
        except (AttributeError, TypeError, ValueError):
            return None
        if args or sorted(kwargs) != sorted(keywords) or sorted(keywords) != sorted(input_specs):
            return None
        for key in keywords:
            spec = kwargs[key]
            want = input_specs[key]
            if not isinstance(spec, tf.TensorSpec) or spec.dtype.as_datatype_enum != want.dtype:
                return None
            if want.shape is None or spec.shape.rank != len(want.shape) or any(
                dim is not None and dim != want_dim for dim, want_dim in zip(spec.shape.as_list(), want.shape)
            ):
                return None  # the SignatureDef check would not cover what the graph expects
        if not isinstance(outputs, dict) or not all(isinstance(spec, tf.TensorSpec) for spec in outputs.values()):
            return None
        output_keys = sorted(outputs)  # tf.nest flattens a dict in sorted key order
        if len(flat_outputs) != len(output_keys) or any(
            getattr(flat, "dtype", None) != outputs[key].dtype for flat, key in zip(flat_outputs, output_keys)
        ):
            return None
        if not all(isinstance(capture, tf.Tensor) for capture in captures):
            return None  # e.g. distributed variables: their handles are resolved per call
        return cls(call, captures, keywords, output_keys)

    def __call__(self, arrays: Mapping) -> dict:
        flat = self._call(*[tf.constant(arrays[key]) for key in self._keywords], *self._captures)
        return {key: value.numpy() for key, value in zip(self._output_keys, flat)}
