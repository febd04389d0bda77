"""`inference.GRPCInferenceService` (KServe v2 / Triton gRPC) on tritonclient's protos.

ServerLive, ServerReady, ModelReady, ServerMetadata, ModelMetadata and ModelInfer; the
other Triton RPCs (repository control, shared memory, statistics, ...) answer
UNIMPLEMENTED. Inputs come as `raw_input_contents` (one entry per input, in order, BYTES
length-prefixed) or as typed `contents`; outputs go back as `raw_output_contents`, as
Triton sends them. Errors carry the same codes as TF Serving's API (NOT_FOUND for an
unknown model or version, INVALID_ARGUMENT for a bad request).

The protos are the generated modules tritonclient ships (`tritonclient.grpc.service_pb2`),
so a client importing tritonclient in the same process sees the same message classes.

    add_kserve_grpc(grpc_server, manager, metrics)   # see serving/server/kserve/__init__.py
"""
from __future__ import annotations

from tritonclient.grpc import service_pb2, service_pb2_grpc

from serving.server.errors import ServingError
from serving.server.grpc_services import _abort
from serving.server.kserve import convert, core


def _parameter_value(parameter):
    kind = parameter.WhichOneof("parameter_choice")
    return None if kind is None else getattr(parameter, kind)


def _request_inputs(request, max_bytes: int) -> list:
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise ServingError.invalid_argument(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; send one per input, in input order"
        )
    inputs = []
    for index, tensor in enumerate(request.inputs):
        name, datatype, shape = tensor.name, tensor.datatype, list(tensor.shape)
        if raw:
            if tensor.HasField("contents"):
                raise ServingError.invalid_argument(
                    f"input '{name}': contents must not be set when raw_input_contents is used; use one or the other"
                )
            decode = (lambda n=name, d=datatype, s=shape, r=raw[index]: convert.array_from_raw(n, d, s, r, max_bytes))
        else:
            field = convert.CONTENTS_FIELD.get(datatype)
            if field is None:
                convert.numpy_dtype(datatype, name)  # unknown datatype: that error first
                raise ServingError.invalid_argument(f"input '{name}': {datatype} data can only be sent in raw_input_contents")
            values = getattr(tensor.contents, field)
            if not values and any(shape) and all(shape):
                raise ServingError.invalid_argument(
                    f"input '{name}' has no data: send {datatype} values in contents.{field} or the tensor in raw_input_contents"
                )
            decode = (lambda n=name, d=datatype, s=shape, v=values: convert.array_from_values(n, d, s, v, max_bytes))
        inputs.append(core.RequestInput(name, datatype, shape, decode))
    return inputs


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """The v2 inference service over a ModelManager (the same one TF Serving's API uses)."""

    def __init__(self, manager, metrics, options: core.KServeOptions | None = None):
        self._manager = manager
        self._metrics = metrics
        self._options = options or core.KServeOptions()

    def _serve(self, model: str, method: str, context, handler):
        try:
            with self._metrics.track(model, method) as call:
                return handler(call)
        except Exception as error:  # noqa: BLE001  (every failure becomes a status code)
            _abort(context, error)

    def ServerLive(self, request, context):
        return service_pb2.ServerLiveResponse(live=True)

    def ServerReady(self, request, context):
        return service_pb2.ServerReadyResponse(ready=core.server_ready(self._manager))

    def ModelReady(self, request, context):
        return self._serve(request.name, "ModelReady", context, lambda call: service_pb2.ModelReadyResponse(
            ready=core.model_ready(self._manager, request.name, request.version)
        ))

    def ServerMetadata(self, request, context):
        return service_pb2.ServerMetadataResponse(**core.server_metadata())

    def ModelMetadata(self, request, context):
        def metadata(call):
            found = core.model_metadata(self._manager, self._options, request.name, request.version)
            response = service_pb2.ModelMetadataResponse(name=found["name"], versions=found["versions"], platform=found["platform"])
            for field in ("inputs", "outputs"):
                for tensor in found[field]:
                    getattr(response, field).add(**tensor)
            return response

        return self._serve(request.name, "ModelMetadata", context, metadata)

    def ModelInfer(self, request, context):
        def infer(call):
            parameters = {key: _parameter_value(value) for key, value in request.parameters.items()}
            result = core.infer(self._manager, self._options, core.InferCall(
                request.model_name, request.model_version, parameters,
                _request_inputs(request, self._manager.options.max_tensor_bytes),
                [output.name for output in request.outputs] or None,
            ))
            call.version = result.version.version
            response = service_pb2.ModelInferResponse(
                model_name=result.version.name, model_version=str(result.version.version), id=request.id,
            )
            for name, array in result.outputs:
                response.outputs.add(name=name, datatype=convert.array_datatype(array), shape=list(array.shape))
                response.raw_output_contents.append(convert.raw_from_array(array))
            return response

        return self._serve(request.model_name, "ModelInfer", context, infer)
