"""Fixtures: real SavedModels (exported once per session) and in-process servers."""
from __future__ import annotations

import contextlib
import os

import pytest

from serving.server import ModelServer, ServerOptions
from serving.server.model_manager import ManagerOptions
from serving.server.server import backend_options
from serving.server.batching import BatchingOptions
from tests.serving import helpers


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """Two versions of the tiny CNN (different weights), exported with the serving contract."""
    root = tmp_path_factory.mktemp("exports")
    return {
        1: helpers.export_version(str(root / "v1"), seed=1),
        2: helpers.export_version(str(root / "v2"), seed=2),
    }


@pytest.fixture(scope="session")
def optimized_export(exported, tmp_path_factory):
    """Version 1's SavedModel plus a real ONNX artifact from the ModelOptimizer (assets.extra/optimized)."""
    return helpers.optimize_version(exported[1], str(tmp_path_factory.mktemp("optimized")))


def start_server(base_path: str, *, poll: float = 0.1, batching: BatchingOptions | None = BatchingOptions(), **options):
    """An in-process server on ephemeral ports (gRPC and REST) serving `digits`."""
    server_options = ServerOptions(model_name="digits", model_base_path=base_path, port=0, rest_api_port=-1,
                                   file_system_poll_wait_seconds=poll, **options)
    manager_options = ManagerOptions(
        file_system_poll_wait_seconds=poll, max_num_load_retries=0, batching=batching,
        max_tensor_bytes=4 * server_options.grpc_max_message_bytes, backends=backend_options(server_options),
    )
    return ModelServer(server_options, manager_options).start()


@contextlib.contextmanager
def running_server(base_path, **options):
    """`start_server` with gRPC stubs, both closed on exit: `with running_server(base) as (server, stubs):`."""
    server = start_server(os.fspath(base_path), **options)
    stubs = helpers.Stubs(server.grpc_port)
    try:
        yield server, stubs
    finally:
        stubs.close()
        server.stop(grace=1.0)


@pytest.fixture(scope="module")
def serving_backend():
    """The --backend of the shared `server`; a module parametrizes it to run its tests on every backend:

        @pytest.fixture(scope="module", params=BACKENDS_UNDER_TEST)
        def serving_backend(request): return request.param
    """
    return "tensorflow"


BACKENDS_UNDER_TEST = ("tensorflow", "onnxruntime")


def version_one(request, backend: str) -> str:
    """Version 1 of `digits` for `backend`: with its optimized artifact for onnxruntime."""
    return request.getfixturevalue("optimized_export") if backend == "onnxruntime" else request.getfixturevalue("exported")[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory, serving_backend, request):
    """A shared server with version 1 of `digits`, for tests that do not change versions."""
    base = tmp_path_factory.mktemp("shared") / "digits"
    helpers.push_version(version_one(request, serving_backend), str(base), 1)
    running = start_server(str(base), backend=serving_backend)
    yield running
    running.stop(grace=1.0)


@pytest.fixture(scope="module")
def stubs(server):
    connection = helpers.Stubs(server.grpc_port)
    yield connection
    connection.close()
