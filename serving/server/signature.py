"""One signature of a loaded SavedModel: request checks, execution, optional batching.

The input and output specs come from the SavedModel's SignatureDef (the same protos
GetModelMetadata returns), so the checks match what clients are told: wrong or missing
input names, wrong dtype, wrong rank or inner dims and empty batches are INVALID_ARGUMENT
before TensorFlow sees the data.

    signature = Signature("serving_images", signature_def, loaded.signatures["serving_images"])
    outputs = signature.run(signature.arrays_from_request(request.inputs, max_bytes=64 << 20))
"""
from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from serving.server import tensors
from serving.server.batching import Batcher, BatchingOptions
from serving.server.errors import ServingError


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
        where = f"input '{self.name}' of signature '{signature}'"
        got = tensors.enum_for(array)
        if got != self.dtype:
            raise ServingError.invalid_argument(
                f"{where} expects {tensors.dtype_name(self.dtype)}, got {tensors.dtype_name(got)}; "
                f"send {self.describe()}"
            )
        if self.shape is None:
            return
        if array.ndim != len(self.shape):
            raise ServingError.invalid_argument(
                f"{where} expects rank {len(self.shape)} ({self.describe()}), got shape {list(array.shape)}"
            )
        for axis, (want, got_dim) in enumerate(zip(self.shape, array.shape)):
            if want is not None and want != got_dim:
                raise ServingError.invalid_argument(
                    f"{where} expects {self.describe()}, got shape {list(array.shape)} (dim {axis} must be {want})"
                )
        if self.batched and array.shape[0] == 0:
            raise ServingError.invalid_argument(f"{where} has an empty batch (dim 0 is 0); send at least one row")


class Signature:
    """A callable signature with the specs of its SignatureDef.

    Args:
        name: signature key, e.g. "serving_images".
        signature_def: its `SignatureDef` proto from saved_model.pb.
        function: the loaded concrete function (`loaded.signatures[name]`).
        batching: batch concurrent calls with these options, if the signature can be
            batched (every input and output has an unknown leading dim); None = never.
        max_tensor_bytes: largest input tensor a request may describe.
    """

    def __init__(self, name: str, signature_def, function, batching: BatchingOptions | None = None, max_tensor_bytes: int = 64 << 20):
        self.name = name
        self.method_name = signature_def.method_name
        self.inputs = {key: TensorSpec.from_tensor_info(key, info) for key, info in signature_def.inputs.items()}
        self.outputs = {key: TensorSpec.from_tensor_info(key, info) for key, info in signature_def.outputs.items()}
        self._function = function
        self._max_tensor_bytes = max_tensor_bytes
        batchable = bool(self.inputs) and all(spec.batched for spec in (*self.inputs.values(), *self.outputs.values()))
        self.batcher = Batcher(self.call, batching) if batching is not None and batchable else None

    def arrays_from_request(self, protos: Mapping) -> dict:
        """Checks and converts a request's `inputs` map (name -> TensorProto) to numpy."""
        unknown = sorted(set(protos) - set(self.inputs))
        if unknown:
            raise ServingError.invalid_argument(
                f"input {unknown[0]!r} is not an input of signature '{self.name}'; its inputs are {sorted(self.inputs)}"
            )
        missing = sorted(set(self.inputs) - set(protos))
        if missing:
            raise ServingError.invalid_argument(
                f"signature '{self.name}' needs input(s) {missing}; send all of {sorted(self.inputs)}"
            )
        arrays = {key: tensors.to_ndarray(proto, key, self._max_tensor_bytes) for key, proto in protos.items()}
        return self.check_arrays(arrays)

    def check_arrays(self, arrays: dict) -> dict:
        for key, array in arrays.items():
            self.inputs[key].check(array, self.name)
        batch_sizes = {array.shape[0] for key, array in arrays.items() if self.inputs[key].batched}
        if len(batch_sizes) > 1:
            raise ServingError.invalid_argument(
                f"inputs of signature '{self.name}' have different batch sizes {sorted(batch_sizes)}; dim 0 must match"
            )
        return arrays

    def run(self, arrays: dict) -> dict:
        """Outputs (name -> numpy) for checked inputs, through the batcher when there is one."""
        if self.batcher is not None:
            rows = next(iter(arrays.values())).shape[0]
            return self.batcher.submit(arrays, rows)
        return self.call(arrays)

    def call(self, arrays: Mapping) -> dict:
        """One direct call of the concrete function."""
        try:
            outputs = self._function(**{key: tf.constant(value) for key, value in arrays.items()})
        except tf.errors.OpError as error:
            raise ServingError.from_tf_error(error) from None
        except (TypeError, ValueError) as error:  # argument conversion, e.g. a shape TF rejects
            raise ServingError.invalid_argument(f"signature '{self.name}' rejected the inputs: {error}") from None
        return {key: value.numpy() for key, value in outputs.items()}
