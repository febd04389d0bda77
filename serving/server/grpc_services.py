"""TF Serving's gRPC services on the real `tensorflow_serving.apis` servicer classes.

PredictionService: Predict, Classify, Regress, MultiInference, GetModelMetadata.
ModelService: GetModelStatus, HandleReloadConfigRequest. Errors carry TF Serving's codes
(NOT_FOUND for unknown models/versions, INVALID_ARGUMENT for bad requests); nothing a
client sends can make a handler raise past `_serve`, so the server stays up. A request
that is not a valid protobuf is answered by grpcio (INTERNAL, before any handler runs, as
in TF Serving's C++ server) and logged as one line, not grpcio's traceback.

    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionServicer(manager, metrics), grpc_server)
"""
from __future__ import annotations

import logging

import grpc
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from serving.server import inference
from serving.server.errors import ServingError, clip, ok_status_proto
from serving.server.predict import predict

SIGNATURE_DEF_FIELD = "signature_def"
_log = logging.getLogger(__name__)


class _OneLineDeserializeErrors(logging.Filter):
    """grpcio logs every undecodable request with a full traceback (14 lines each, for
    any client that sends garbage); keep one line with the decoder's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and str(record.msg).startswith("Exception deserializing"):
            error = record.exc_info[1]
            record.msg, record.args = "%s: %s: %s", (record.msg, type(error).__name__, clip(str(error), 200))
            record.exc_info = record.exc_text = None
        return True


_GRPC_COMMON_LOG = logging.getLogger("grpc._common")
if not any(isinstance(f, _OneLineDeserializeErrors) for f in _GRPC_COMMON_LOG.filters):
    _GRPC_COMMON_LOG.addFilter(_OneLineDeserializeErrors())


def _abort(context, error: Exception):
    if isinstance(error, ServingError):
        context.abort(error.code, error.message)
    _log.exception("internal error while handling a request", exc_info=error)
    context.abort(grpc.StatusCode.INTERNAL, f"internal server error ({type(error).__name__}); see the server log")


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Predict/Classify/Regress/MultiInference/GetModelMetadata over a ModelManager."""

    def __init__(self, manager, metrics, request_logger=None):
        self._manager = manager
        self._metrics = metrics
        self._request_logger = request_logger

    def _logged(self, kind: str, request, response):
        if self._request_logger is not None:
            spec = response.model_spec if kind != "multi_inference" else response.results[0].model_spec
            getattr(self._request_logger, f"log_{kind}")(spec, request, response)
        return response

    def _serve(self, method: str, model_spec, context, handler):
        try:
            with self._metrics.track(model_spec.name, method) as call:
                version = self._manager.resolve(model_spec)
                call.version = version.version
                return handler(version)
        except Exception as error:  # noqa: BLE001  (every failure becomes a status code)
            _abort(context, error)

    def Predict(self, request, context):
        return self._serve("Predict", request.model_spec, context, lambda version: self._logged("predict", request, predict(version, request)))

    def Classify(self, request, context):
        return self._serve("Classify", request.model_spec, context, lambda version: self._logged("classify", request, inference.classify(version, request)))

    def Regress(self, request, context):
        return self._serve("Regress", request.model_spec, context, lambda version: self._logged("regress", request, inference.regress(version, request)))

    def MultiInference(self, request, context):
        if not request.tasks:
            _abort(context, ServingError.invalid_argument("MultiInference needs at least one task"))
        first = request.tasks[0].model_spec
        for task in request.tasks[1:]:
            spec = task.model_spec
            if (spec.name, spec.WhichOneof("version_choice"), spec.version.value, spec.version_label) != (
                first.name, first.WhichOneof("version_choice"), first.version.value, first.version_label
            ):
                _abort(context, ServingError.invalid_argument(
                    "all tasks of a MultiInferenceRequest must name the same model and version"
                ))
        return self._serve("MultiInference", first, context, lambda version: self._logged("multi_inference", request, inference.multi_inference(version, request)))

    def GetModelMetadata(self, request, context):
        def metadata(version):
            fields = list(request.metadata_field)
            if not fields:
                raise ServingError.invalid_argument(f"metadata_field is empty; request ['{SIGNATURE_DEF_FIELD}']")
            unsupported = [f for f in fields if f != SIGNATURE_DEF_FIELD]
            if unsupported:
                raise ServingError.invalid_argument(
                    f"metadata field {clip(unsupported[0])!r} is not supported; the only field is '{SIGNATURE_DEF_FIELD}'"
                )
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            version.fill_model_spec(response.model_spec)
            response.metadata[SIGNATURE_DEF_FIELD].Pack(version.signature_def_map)
            return response

        return self._serve("GetModelMetadata", request.model_spec, context, metadata)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus and HandleReloadConfigRequest over a ModelManager.

    `reload(config)` applies a reload (default: `manager.configure`, unchecked); the
    server passes `ModelServer.reload_config`, which enforces the base-path allow-list
    and the --enable_model_config_reload switch.
    """

    def __init__(self, manager, metrics, reload=None):
        self._manager = manager
        self._metrics = metrics
        self._reload = reload or manager.configure

    def GetModelStatus(self, request, context):
        try:
            with self._metrics.track(request.model_spec.name, "GetModelStatus"):
                return self._manager.status(request.model_spec)
        except Exception as error:  # noqa: BLE001
            _abort(context, error)

    def HandleReloadConfigRequest(self, request, context):
        try:
            with self._metrics.track("", "HandleReloadConfigRequest"):
                self._reload(request.config)
                return model_management_pb2.ReloadConfigResponse(status=ok_status_proto())
        except Exception as error:  # noqa: BLE001
            _abort(context, error)
