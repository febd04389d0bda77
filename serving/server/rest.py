"""TF Serving's REST API on the standard library's ThreadingHTTPServer.

    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]            model status
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata   signature defs
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict    {"instances": ...} or {"inputs": ...}
    POST /v1/models/{name}[...]:classify | :regress              {"examples": [...], "context": {...}}
    GET  /monitoring/prometheus/metrics                           Prometheus text

Errors are `{"error": "..."}` with the HTTP status of the gRPC code. Bodies above
`max_body_bytes` are refused (413) before they are read; idle connections time out.

    server = make_rest_server("127.0.0.1", 8501, manager, metrics, max_body_bytes=16 << 20)
    threading.Thread(target=server.serve_forever, daemon=True).start()
"""
from __future__ import annotations

import json
import logging
import re
import socket
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf import json_format
from tensorflow_serving.apis import classification_pb2, get_model_metadata_pb2, model_pb2, regression_pb2

from serving.server import inference, rest_json
from serving.server.errors import ServingError
from serving.server.grpc_services import SIGNATURE_DEF_FIELD
from serving.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

METRICS_PATH = "/monitoring/prometheus/metrics"
_MODEL_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[0-9]{1,19})|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>predict|classify|regress))?$"
)
_log = logging.getLogger(__name__)


def _model_spec(match) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=match["name"])
    if match["version"] is not None:
        spec.version.value = int(match["version"])
    elif match["label"] is not None:
        spec.version_label = match["label"]
    return spec


def _to_json(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse the connection
    server_version = "EmbeddedModelServer"
    timeout = 60  # seconds a connection may idle or dribble (slow clients cannot pin threads)

    # -- plumbing --------------------------------------------------------------------
    def log_message(self, fmt, *args):  # access log at debug level, not on stderr
        _log.debug("%s - %s", self.address_string(), fmt % args)

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, status: int, payload) -> None:
        self._send(status, json.dumps(payload).encode("utf-8"))

    def _send_error(self, error: ServingError) -> None:
        self._send_json(error.http_status, {"error": error.message})

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise _HttpError(HTTPStatus.LENGTH_REQUIRED, "chunked bodies are not supported; send Content-Length")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise _HttpError(HTTPStatus.LENGTH_REQUIRED, "send a Content-Length header with the JSON body")
        if int(length) > self.server.max_body_bytes:
            raise _HttpError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"body of {length} bytes exceeds the {self.server.max_body_bytes}-byte limit; send smaller batches",
            )
        raw = self.rfile.read(int(length))
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ServingError.invalid_argument(f"the body is not valid JSON: {error}") from None

    def _route(self, method: str) -> None:
        self.server.inflight.acquire()
        try:
            self._dispatch(method)
        finally:
            self.server.inflight.release()

    def _dispatch(self, method: str) -> None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        try:
            if path == METRICS_PATH and method == "GET" and self.server.metrics_path_enabled:
                self._send(200, self.server.metrics.exposition(), METRICS_CONTENT_TYPE)
                return
            match = _MODEL_PATH.match(path) if not self.server.metrics_only else None
            if match is None:
                raise _HttpError(HTTPStatus.NOT_FOUND, f"no route for {method} {path}; see TF Serving's REST API (/v1/models/...)")
            if method == "GET" and match["verb"] is None:
                self._get(match)
            elif method == "POST" and match["verb"] is not None:
                self._post(match)
            else:
                raise _HttpError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed on {path}")
        except _HttpError as error:
            self.close_connection = error.status in (HTTPStatus.REQUEST_ENTITY_TOO_LARGE, HTTPStatus.LENGTH_REQUIRED)
            self._send_json(error.status, {"error": error.message})
        except ServingError as error:
            self._send_error(error)
        except (ConnectionError, socket.timeout):
            self.close_connection = True
        except Exception as error:  # noqa: BLE001  (never let a request kill the server)
            _log.exception("internal error in REST handler")
            self._send_json(500, {"error": f"internal server error ({type(error).__name__}); see the server log"})

    def do_GET(self):  # noqa: N802 (http.server naming)
        self._route("GET")

    def do_POST(self):  # noqa: N802
        self._route("POST")

    # -- API -------------------------------------------------------------------------
    def _get(self, match) -> None:
        spec = _model_spec(match)
        manager, metrics = self.server.manager, self.server.metrics
        if match["metadata"]:
            with metrics.track(spec.name, "REST.GetModelMetadata") as call:
                version = manager.resolve(spec)
                call.version = version.version
                response = get_model_metadata_pb2.GetModelMetadataResponse()
                version.fill_model_spec(response.model_spec)
                payload = {
                    "model_spec": _to_json(response.model_spec),
                    "metadata": {SIGNATURE_DEF_FIELD: _to_json(version.signature_def_map)},
                }
        else:
            with metrics.track(spec.name, "REST.GetModelStatus"):
                payload = _to_json(manager.status(spec))
        self._send_json(200, payload)

    def _post(self, match) -> None:
        spec = _model_spec(match)
        verb = match["verb"]
        with self.server.metrics.track(spec.name, f"REST.{verb}") as call:
            body = self._read_body()
            version = self.server.manager.resolve(spec)
            call.version = version.version
            signature_name = body.get("signature_name", "") if isinstance(body, dict) else ""
            if not isinstance(signature_name, str):
                raise ServingError.invalid_argument("\"signature_name\" must be a string")
            if verb == "predict":
                signature = version.signature(signature_name)
                arrays, row_format = rest_json.arrays_from_predict_body(signature, body)
                payload = rest_json.predict_body(signature.run(arrays), row_format)
            elif verb == "classify":
                request = classification_pb2.ClassificationRequest()
                rest_json.examples_input(body, request.input)
                result = inference.classify(version, _with_signature(request, signature_name)).result
                payload = {"results": [[[c.label, c.score] for c in row.classes] for row in result.classifications]}
            else:
                request = regression_pb2.RegressionRequest()
                rest_json.examples_input(body, request.input)
                result = inference.regress(version, _with_signature(request, signature_name)).result
                payload = {"results": [r.value for r in result.regressions]}
        self._send_json(200, payload)


def _with_signature(request, signature_name: str):
    request.model_spec.signature_name = signature_name
    return request


class _HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = int(status)
        self.message = message


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

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout)


class RestServer(ThreadingHTTPServer):
    """ThreadingHTTPServer carrying the manager, metrics and limits for its handlers."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    max_connections = 256  # beyond this, new connections are closed at once (one thread each)

    def __init__(self, address, manager, metrics, *, max_body_bytes: int, metrics_path_enabled: bool = True, metrics_only: bool = False, ssl_context=None):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, _Handler)
        if ssl_context is not None:
            # Handshake in the connection's thread (with its timeout), not in accept():
            # a client that never finishes it must not block the accept loop.
            self.socket = ssl_context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self._connections = threading.BoundedSemaphore(self.max_connections)
        self.manager = manager
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        self.metrics_path_enabled = metrics_path_enabled
        self.metrics_only = metrics_only
        self.inflight = _Inflight()

    def process_request(self, request, client_address):
        if not self._connections.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._connections.release()

    def drain(self, timeout: float) -> bool:
        """After `shutdown()`: waits up to `timeout` s for running requests; True if none remain."""
        return self.inflight.wait_idle(timeout)

    @property
    def port(self) -> int:
        return self.server_address[1]


def make_rest_server(host: str, port: int, manager, metrics, *, max_body_bytes: int, **kwargs) -> RestServer:
    """A REST server bound to host:port (0 = an ephemeral port, see `.port`); not yet serving."""
    return RestServer((host, port), manager, metrics, max_body_bytes=max_body_bytes, **kwargs)
