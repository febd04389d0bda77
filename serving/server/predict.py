"""The Predict RPC on one loaded version, with TF Serving's semantics.

Default signature `serving_default`; `output_filter` keeps only the named outputs (an
unknown name is INVALID_ARGUMENT); the response's model_spec says which version answered.

    response = predict(version, request)
"""
from __future__ import annotations

from tensorflow_serving.apis import predict_pb2

from serving.server import tensors
from serving.server.errors import ServingError, clip
from serving.server.servable import LoadedVersion


def predict(version: LoadedVersion, request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
    signature = version.signature(request.model_spec.signature_name)
    arrays = signature.arrays_from_request(request.inputs)
    wanted = output_keys(signature, request.output_filter)
    outputs = signature.run(arrays)
    response = predict_pb2.PredictResponse()
    version.fill_model_spec(response.model_spec, signature.name)
    for key in wanted:
        tensors.fill_tensor_proto(response.outputs[key], outputs[key])
    return response


def output_keys(signature, output_filter) -> list:
    """The outputs to return: all, or those in `output_filter` (each must exist, once)."""
    if not output_filter:
        return sorted(signature.outputs)
    keys = list(output_filter)
    for key in keys:
        if key not in signature.outputs:
            raise ServingError.invalid_argument(
                f"output_filter names '{clip(key)}', which is not an output of signature '{signature.name}'; "
                f"outputs: {sorted(signature.outputs)}"
            )
    if len(set(keys)) != len(keys):
        raise ServingError.invalid_argument(f"output_filter {clip(keys)} repeats an output; name each once")
    return keys
