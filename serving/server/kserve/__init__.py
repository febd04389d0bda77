"""KServe v2 / Open Inference Protocol beside TF Serving's API (what Triton and KServe speak).

Same ModelManager (models, versions, labels), same signatures and the same dynamic
batcher as the TF Serving API; see docs/serving-server.md ("KServe v2"). Wiring:

    add_kserve_grpc(grpc_server, manager, metrics)          # before grpc_server.start()
    add_kserve_routes(app, manager, executor, metrics=metrics)  # aiohttp Application

The gRPC service uses the generated protos tritonclient ships; it is imported only here,
so TF Serving's API keeps working where tritonclient is not installed.
"""
from __future__ import annotations

import logging

from serving.server.kserve.core import KServeOptions, server_ready

__all__ = ["KServeOptions", "add_kserve_grpc", "add_kserve_routes", "server_ready"]
_log = logging.getLogger(__name__)


def add_kserve_grpc(grpc_server, manager, metrics, options: KServeOptions | None = None) -> bool:
    """Registers `inference.GRPCInferenceService`; False (and a warning) without tritonclient."""
    try:
        from tritonclient.grpc import service_pb2_grpc

        from serving.server.kserve.grpc_service import InferenceServicer
    except ImportError as error:
        _log.warning("KServe v2 gRPC service disabled: %s (install tritonclient, see requirements-nodeps.txt)", error)
        return False
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(manager, metrics, options), grpc_server)
    return True


def add_kserve_routes(app, manager, executor, *, metrics=None, options: KServeOptions | None = None) -> None:
    """Adds the /v2 REST routes to an aiohttp Application (see rest_routes.py)."""
    from serving.server.kserve.rest_routes import add_kserve_routes as add

    add(app, manager, executor, metrics=metrics, options=options)
