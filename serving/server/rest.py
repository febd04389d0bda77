"""TF Serving's REST API on aiohttp, in its own thread and event loop.

    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signature defs
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    {"instances": ...} or {"inputs": ...}
    POST /v1/models/{name}[...]:classify | :regress              {"examples": [...], "context": {...}}
    GET  /monitoring/prometheus/metrics                           Prometheus text
    /v2/...                                                       KServe v2 REST (kserve/rest_routes.py)

Every error, malformed HTTP included, is `{"error": "..."}` with the HTTP status of its
gRPC code. The event loop only moves bytes: JSON parsing and model execution run in a
thread pool (`num_threads`, TF Serving's `--rest_api_num_threads` default of 4 x CPUs).
Limits: bodies above `max_body_bytes` are refused (413) before they are read, a body
must arrive within `body_timeout` s, idle connections close after `idle_timeout` s, and
beyond `max_connections` the longest-idle connections are closed to make room.

    server = make_rest_server("127.0.0.1", 8501, manager, metrics, max_body_bytes=16 << 20)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ...; server.shutdown(); server.drain(10); server.server_close()
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import re
import socket
import threading
import urllib.parse
from http import HTTPStatus

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from google.protobuf import json_format
from tensorflow_serving.apis import classification_pb2, get_model_metadata_pb2, model_pb2, regression_pb2

from serving.server import inference, rest_json
from serving.server.errors import ServingError
from serving.server.grpc_services import SIGNATURE_DEF_FIELD
from serving.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

METRICS_PATH = "/monitoring/prometheus/metrics"
IDLE_TIMEOUT_S = 30.0  # keep-alive (and never-used) connections close after this
BODY_TIMEOUT_S = 30.0  # a body must arrive within this (TF Serving's --rest_api_timeout_in_ms default)
TLS_HANDSHAKE_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 1024
LISTEN_BACKLOG = 1024  # capped by the kernel's net.core.somaxconn
MAX_VERSION = 2**63 - 1  # versions are int64
_MAX_ERROR_CHARS = 300
_MODEL_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[0-9]{1,19})|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>predict|classify|regress))?$"
)
_JSON = "application/json"
_log = logging.getLogger(__name__)


def default_num_threads() -> int:
    """TF Serving's --rest_api_num_threads default: 4 x the CPUs this process may use."""
    return 4 * len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 4 * (os.cpu_count() or 1)


def _model_spec(match) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=match["name"])
    if match["version"] is not None:
        version = int(match["version"])
        if version > MAX_VERSION:
            raise ServingError.invalid_argument(f"version {version} is out of range: versions are int64, at most {MAX_VERSION}")
        spec.version.value = version
    elif match["label"] is not None:
        spec.version_label = match["label"]
    return spec


def _to_json(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def _error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode("utf-8")


class _HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = int(status)
        self.message = message


class _Api:
    """The REST API proper, synchronous (runs in the thread pool): request -> (status, body, type)."""

    def __init__(self, manager, metrics, *, metrics_path_enabled: bool, metrics_only: bool, kserve=None,
                 request_logger=None):
        self.manager = manager
        self.metrics = metrics
        self.request_logger = request_logger  # serving/server/request_log.py; None = no request log
        self.metrics_path_enabled = metrics_path_enabled
        self.metrics_only = metrics_only
        self.kserve = kserve  # KServeRestApi for /v2 paths, or None

    def handle(self, method: str, path: str, body: bytes | None, headers=None) -> tuple:
        """(status, body, content type, extra headers)."""
        if self.kserve is not None and not self.metrics_only and (path == "/v2" or path.startswith("/v2/")):
            return self.kserve.handle(method, path, headers or {}, body)
        return (*self._tf_serving(method, path, body), {})

    def _tf_serving(self, method: str, path: str, body: bytes | None) -> tuple:
        try:
            if path == METRICS_PATH and method == "GET" and self.metrics_path_enabled:
                return 200, self.metrics.exposition(), METRICS_CONTENT_TYPE
            match = _MODEL_PATH.match(path) if not self.metrics_only else None
            if match is None:
                raise _HttpError(HTTPStatus.NOT_FOUND, f"no route for {method} {path[:200]}; see TF Serving's REST API (/v1/models/...)")
            if method == "GET" and match["verb"] is None:
                payload = self._get(match)
            elif method == "POST" and match["verb"] is not None:
                payload = self._post(match, body)
            else:
                raise _HttpError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed on {path[:200]}")
            return 200, json.dumps(payload).encode("utf-8"), _JSON
        except _HttpError as error:
            return error.status, _error_body(error.message), _JSON
        except ServingError as error:
            return error.http_status, _error_body(error.message), _JSON
        except Exception as error:  # noqa: BLE001  (never let a request kill the server)
            _log.exception("internal error in REST handler")
            return 500, _error_body(f"internal server error ({type(error).__name__}); see the server log"), _JSON

    def _get(self, match) -> dict:
        spec = _model_spec(match)
        if match["metadata"]:
            with self.metrics.track(spec.name, "REST.GetModelMetadata") as call:
                version = self.manager.resolve(spec)
                call.version = version.version
                response = get_model_metadata_pb2.GetModelMetadataResponse()
                version.fill_model_spec(response.model_spec)
                return {
                    "model_spec": _to_json(response.model_spec),
                    "metadata": {SIGNATURE_DEF_FIELD: _to_json(version.signature_def_map)},
                }
        with self.metrics.track(spec.name, "REST.GetModelStatus"):
            return _to_json(self.manager.status(spec))

    def _post(self, match, raw: bytes) -> dict:
        spec = _model_spec(match)
        verb = match["verb"]
        with self.metrics.track(spec.name, f"REST.{verb}") as call:
            body = rest_json.parse_body(raw)
            version = self.manager.resolve(spec)
            call.version = version.version
            signature_name = body.get("signature_name", "") if isinstance(body, dict) else ""
            if not isinstance(signature_name, str):
                raise ServingError.invalid_argument("\"signature_name\" must be a string")
            if verb == "predict":
                signature = version.signature(signature_name)
                arrays, row_format = rest_json.arrays_from_predict_body(signature, body)
                outputs = signature.run(arrays)
                if self.request_logger is not None:  # logged as the equivalent PredictRequest
                    answered = model_pb2.ModelSpec()
                    version.fill_model_spec(answered, signature.name)
                    self.request_logger.log_predict_arrays(answered, arrays, outputs)
                return rest_json.predict_body(outputs, row_format)
            if verb == "classify":
                request = classification_pb2.ClassificationRequest()
                rest_json.examples_input(body, request.input)
                response = inference.classify(version, _with_signature(request, signature_name))
                if self.request_logger is not None:
                    self.request_logger.log_classify(response.model_spec, request, response)
                return {"results": [[[c.label, c.score] for c in row.classes] for row in response.result.classifications]}
            request = regression_pb2.RegressionRequest()
            rest_json.examples_input(body, request.input)
            response = inference.regress(version, _with_signature(request, signature_name))
            if self.request_logger is not None:
                self.request_logger.log_regress(response.model_spec, request, response)
            return {"results": [r.value for r in response.result.regressions]}


def _with_signature(request, signature_name: str):
    request.model_spec.signature_name = signature_name
    return request


class _Protocol(RequestHandler):
    """aiohttp's connection handler, answering malformed HTTP with a JSON error (no traceback)."""

    def handle_error(self, request, status: int = 500, exc=None, message=None) -> web.StreamResponse:
        if status >= 500:
            _log.error("REST connection error (%s): %s", status, exc or message)
            text = "internal server error; see the server log"
        else:
            _log.debug("bad HTTP request from %s: %s", request.remote, message or exc)
            text = f"bad HTTP request: {str(message or exc or HTTPStatus(status).phrase)[:_MAX_ERROR_CHARS]}"
        if request.writer.output_size > 0:
            raise ConnectionError("the response is already being sent; cannot send an error")
        response = web.Response(status=status, body=_error_body(text), headers={"Content-Type": _JSON})
        response.force_close()
        return response


class _Connections(web.Server):
    """aiohttp's low-level server plus a connection cap that evicts the longest-idle first."""

    def __init__(self, handler, *, max_connections: int, loop, **kwargs):
        super().__init__(handler, loop=loop, **kwargs)
        self.max_connections = max_connections
        self.busy: set = set()  # connections inside a request
        self.last_active: dict = {}  # connection -> loop time of its last request end (or connect)

    def __call__(self) -> RequestHandler:
        return _Protocol(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler, transport) -> None:
        super().connection_made(handler, transport)
        self.last_active[handler] = self._loop.time()
        if len(self._connections) <= self.max_connections:
            return
        # Closed connections stay listed until their task ends; count the open ones.
        open_connections = [c for c in self._connections if c.transport is not None]
        excess = len(open_connections) - self.max_connections
        if excess <= 0:
            return
        idle = sorted((c for c in open_connections if c not in self.busy and c is not handler),
                      key=lambda c: self.last_active.get(c, 0.0))
        for connection in idle[:excess]:
            connection.force_close()
        if len(idle) < excess:  # every other connection is busy: refuse this one
            body = _error_body(f"the server is at its limit of {self.max_connections} busy connections; retry later")
            transport.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
                            b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            handler.force_close()

    def connection_lost(self, handler, exc=None) -> None:
        self.last_active.pop(handler, None)
        self.busy.discard(handler)
        super().connection_lost(handler, exc)


class _Inflight:
    """Counts requests being handled, so a graceful stop can wait for them."""

    def __init__(self):
        self._count = 0
        self._idle = threading.Condition()

    def acquire(self) -> None:
        with self._idle:
            self._count += 1

    def release(self) -> None:
        with self._idle:
            self._count -= 1
            if self._count == 0:
                self._idle.notify_all()

    @property
    def count(self) -> int:
        return self._count

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout)


class RestServer:
    """The REST API on `address`, bound at construction; `serve_forever()` runs it in the calling thread.

    Stop: `shutdown()` (stop accepting; idle connections close), `drain(grace)` (wait for
    running requests), `server_close()` (close everything, end `serve_forever`).
    """

    def __init__(self, address, manager, metrics, *, max_body_bytes: int, metrics_path_enabled: bool = True,
                 metrics_only: bool = False, ssl_context=None, num_threads: int = 0, max_connections: int = MAX_CONNECTIONS,
                 idle_timeout: float = IDLE_TIMEOUT_S, body_timeout: float = BODY_TIMEOUT_S, backlog: int = LISTEN_BACKLOG,
                 kserve=None, call_timeout: float | None = None, request_logger=None):
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self._socket = socket.create_server(address, family=family, backlog=backlog)  # SO_REUSEADDR on POSIX
        self.server_address = self._socket.getsockname()
        self._api = _Api(manager, metrics, metrics_path_enabled=metrics_path_enabled, metrics_only=metrics_only, kserve=kserve,
                         request_logger=request_logger)
        self.max_body_bytes = max_body_bytes
        self._ssl_context = ssl_context
        self._max_connections = max_connections
        self._idle_timeout = idle_timeout
        self._body_timeout = body_timeout
        self._call_timeout = call_timeout  # --rest_api_timeout_in_ms: answer 504 if the call takes longer
        self._backlog = backlog
        self._executor = concurrent.futures.ThreadPoolExecutor(num_threads or default_num_threads(), thread_name_prefix="rest")
        self._loop = asyncio.new_event_loop()
        self._web = self._listener = None
        self._started, self._finished = threading.Event(), threading.Event()
        self._closing = False
        self.inflight = _Inflight()

    @property
    def port(self) -> int:
        return self.server_address[1]

    # -- lifecycle (called from other threads) ---------------------------------------------
    def serve_forever(self, poll_interval: float | None = None) -> None:
        """Serves until `server_close()`; `poll_interval` is ignored (socketserver's signature)."""
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
            self._started.set()
            self._loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self._loop)  # connections still open at close
            for task in pending:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.close()
            self._finished.set()

    def shutdown(self) -> None:
        """Stops accepting connections; idle ones close, running requests continue."""
        self._closing = True
        self._call(self._stop_accepting)

    def drain(self, timeout: float) -> bool:
        """After `shutdown()`: waits up to `timeout` s for running requests; True if none remain."""
        return self.inflight.wait_idle(timeout)

    def server_close(self) -> None:
        self._closing = True
        if self._call(self._close_connections):
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._finished.wait(10)
        self._socket.close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _call(self, coroutine_function, timeout: float = 10.0) -> bool:
        """Runs a coroutine on the server's loop and waits for it; False if the loop is not serving."""
        if not self._started.wait(timeout if not self._finished.is_set() else 0) or self._finished.is_set():
            return False
        try:
            asyncio.run_coroutine_threadsafe(coroutine_function(), self._loop).result(timeout)
        except (concurrent.futures.TimeoutError, RuntimeError) as error:
            _log.warning("REST server stop step %s: %s", coroutine_function.__name__, error)
        return True

    # -- on the loop -----------------------------------------------------------------------
    async def _start(self) -> None:
        self._web = _Connections(self._handle, loop=self._loop, max_connections=self._max_connections,
                                 keepalive_timeout=self._idle_timeout, access_log=None)
        self._listener = await self._loop.create_server(
            self._web, sock=self._socket, backlog=self._backlog, ssl=self._ssl_context,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_S if self._ssl_context else None,
        )

    async def _stop_accepting(self) -> None:
        self._listener.close()
        self._web.pre_shutdown()  # idle connections close now, busy ones after their response

    async def _close_connections(self) -> None:
        self._listener.close()
        await self._web.shutdown(1.0)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        connection = request.protocol
        self._web.busy.add(connection)
        self.inflight.acquire()
        close = self._closing
        work = None
        try:
            body = await self._read_body(request) if request.method == "POST" else None
            path = urllib.parse.unquote(urllib.parse.urlsplit(request.raw_path).path)
            work = self._loop.run_in_executor(self._executor, self._api.handle, request.method, path, body, request.headers)
            try:
                async with asyncio.timeout(self._call_timeout):
                    status, payload, content_type, headers = await asyncio.shield(work)
            except TimeoutError:
                raise _HttpError(HTTPStatus.GATEWAY_TIMEOUT, f"DEADLINE_EXCEEDED: the call did not finish within "
                                 f"{self._call_timeout * 1000:g} ms (--rest_api_timeout_in_ms)") from None
        except _HttpError as error:
            status, payload, content_type, headers = error.status, _error_body(error.message), _JSON, {}
            close = close or error.status != HTTPStatus.GATEWAY_TIMEOUT  # else the unread body is still on the connection
        finally:
            if work is not None and not work.done():  # timed out: a graceful stop still waits for the work
                work.add_done_callback(lambda _: self.inflight.release())
            else:
                self.inflight.release()
            self._web.busy.discard(connection)
            self._web.last_active[connection] = self._loop.time()
        response = web.Response(status=status, body=payload, headers={"Content-Type": content_type, **headers})
        if close:
            response.force_close()
        return response

    async def _read_body(self, request: web.BaseRequest) -> bytes:
        if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
            raise _HttpError(HTTPStatus.LENGTH_REQUIRED, "chunked bodies are not supported; send Content-Length")
        length = request.content_length
        if length is None:
            raise _HttpError(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length header with the JSON body")
        if length > self.max_body_bytes:
            raise _HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                             f"body of {length} bytes exceeds the {self.max_body_bytes}-byte limit; send smaller batches")
        try:
            async with asyncio.timeout(self._body_timeout):
                if request.headers.get("Content-Encoding", "identity").lower() != "identity":
                    return await self._read_decoded(request)
                return await request.content.readexactly(length)
        except TimeoutError:
            raise _HttpError(HTTPStatus.REQUEST_TIMEOUT, f"the {length}-byte body did not arrive within {self._body_timeout:g} s") from None
        except asyncio.IncompleteReadError:
            raise _HttpError(HTTPStatus.BAD_REQUEST, f"the connection ended before the {length}-byte body did") from None


    async def _read_decoded(self, request: web.BaseRequest) -> bytes:
        """A compressed body (aiohttp inflates gzip/deflate): read to its end, at most max_body_bytes inflated."""
        chunks, size = [], 0
        while chunk := await request.content.read(1 << 16):
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                 f"the inflated body exceeds the {self.max_body_bytes}-byte limit; send smaller batches")
            chunks.append(chunk)
        return b"".join(chunks)


def make_rest_server(host: str, port: int, manager, metrics, *, max_body_bytes: int, **kwargs) -> RestServer:
    """A REST server bound to host:port (0 = an ephemeral port, see `.port`); not yet serving."""
    return RestServer((host, port), manager, metrics, max_body_bytes=max_body_bytes, **kwargs)
