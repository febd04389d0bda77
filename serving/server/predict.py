"""The Predict RPC on one loaded version, with TF Serving's semantics.

Default signature `serving_default`; `output_filter` keeps only the named outputs (an
unknown name is INVALID_ARGUMENT); the response's model_spec says which version answered.

    response = predict(version, request)
"""
from __future__ import annotations

from tensorflow_serving.apis import predict_pb2

from serving.server import tensors
from serving.server.errors import ServingError
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


# TF Serving's Predict wording for Signature.select_outputs.
UNKNOWN_OUTPUT = "output_filter names '{name}', which is not an output of signature '{signature}'; outputs: {outputs}"
REPEATED_OUTPUT = "output_filter {names} repeats an output; name each once"


def output_keys(signature, output_filter) -> list:
    """The outputs to return: all, or those in `output_filter` (each must exist, once)."""
    return signature.select_outputs(output_filter, UNKNOWN_OUTPUT, REPEATED_OUTPUT)
