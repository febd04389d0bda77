"""The Open Inference Protocol's REST API as aiohttp routes (KServe v2 / Triton HTTP).

    GET  /v2/health/live | /v2/health/ready                 200, or 400 when not ready
    GET  /v2                                                server metadata
    GET  /v2/models/{name}[/versions/{v}]                   model metadata
    GET  /v2/models/{name}[/versions/{v}]/ready             200, or 400 when not ready
    POST /v2/models/{name}[/versions/{v}]/infer             inference

Infer bodies are JSON, or JSON followed by binary tensor data (Triton's binary tensor
extension: the `Inference-Header-Content-Length` header gives the JSON's length, inputs
name their byte count in `parameters.binary_data_size`, BYTES elements carry 4-byte
length prefixes). Outputs come back as JSON `data` unless binary is asked for
(`parameters.binary_data_output` on the request, or `binary_data` on an output), as
tritonclient.http does by default. Errors are `{"error": "..."}` with the HTTP status of
the gRPC code (400 bad request, 404 unknown model or version). Model work runs on
`executor`, never on the event loop.

    app = web.Application(client_max_size=16 << 20)
    add_kserve_routes(app, manager, executor, metrics=metrics)

The model server's REST port (rest.py) serves the same routes through `KServeRestApi`.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import types

from aiohttp import web

from serving.server.errors import ServingError
from serving.server.kserve import convert, core

HEADER_LENGTH = "Inference-Header-Content-Length"
BINARY_DATA_SIZE = "binary_data_size"
_log = logging.getLogger(__name__)


def _bad(message: str) -> ServingError:
    return ServingError.invalid_argument(message)


def _dict_field(body: dict, key: str, where: str) -> dict:
    value = body.get(key) or {}
    if not isinstance(value, dict):
        raise _bad(f"{where} '{key}' must be a JSON object")
    return value


def _split_body(body: bytes, header_length: str | None) -> tuple:
    """(parsed JSON header, binary tail) of an infer request body."""
    binary = b""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise _bad(f"{HEADER_LENGTH} is {header_length!r}, but the body has {len(body)} bytes; send the JSON header's byte length")
        body, binary = body[:int(header_length)], body[int(header_length):]
    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _bad(f"the infer request is not valid JSON: {error}") from None
    except RecursionError:
        raise _bad("the infer request's JSON is nested too deeply") from None
    if not isinstance(request, dict):
        raise _bad('the infer request must be a JSON object with "inputs"')
    return request, memoryview(binary)


def _request_inputs(request: dict, binary: memoryview, max_bytes: int) -> list:
    tensors = request.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise _bad('the infer request needs "inputs": a list of {"name", "shape", "datatype", "data"}')
    inputs, offset = [], 0
    for tensor in tensors:
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str) or not isinstance(tensor.get("datatype"), str):
            raise _bad('each input needs "name" and "datatype" strings, "shape" and "data"')
        name, datatype, shape = tensor["name"], tensor["datatype"], tensor.get("shape")
        size = _dict_field(tensor, "parameters", f"input '{name}'").get(BINARY_DATA_SIZE)
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
                raise _bad(f"input '{name}': {BINARY_DATA_SIZE} {size!r} does not fit the {len(binary) - offset} binary bytes left")
            raw = binary[offset:offset + size]
            offset += size
            decode = (lambda n=name, d=datatype, s=shape, r=raw: convert.array_from_raw(n, d, s, r, max_bytes))
        elif "data" in tensor:
            data = tensor["data"] if isinstance(tensor["data"], list) else [tensor["data"]]
            decode = (lambda n=name, d=datatype, s=shape, v=data: convert.array_from_values(n, d, s, v, max_bytes))
        else:
            raise _bad(f"input '{name}' has neither \"data\" nor parameters.{BINARY_DATA_SIZE}")
        inputs.append(core.RequestInput(name, datatype, shape, decode))
    if offset != len(binary):
        raise _bad(f"{len(binary) - offset} bytes of binary data are not claimed by any input's {BINARY_DATA_SIZE}")
    return inputs


def _requested_outputs(request: dict, binary_default: bool):
    """(names or None for all, {name: binary?})."""
    outputs = request.get("outputs")
    if outputs is None:
        return None, {}
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
        raise _bad('"outputs" must be a list of {"name": ...} objects')
    binary = {}
    for output in outputs:
        parameters = _dict_field(output, "parameters", f"output '{output['name']}'")
        if parameters.get("classification"):
            raise ServingError.unimplemented("the classification extension is not supported; request the output tensor itself")
        binary[output["name"]] = bool(parameters.get("binary_data", binary_default))
    return [o["name"] for o in outputs], binary


def _response(result: core.InferResult, request_id, binary_default: bool, binary: dict) -> tuple:
    """(body bytes, JSON header length or None) of an infer response."""
    header = {"model_name": result.version.name, "model_version": str(result.version.version)}
    if request_id is not None:
        header["id"] = request_id
    header["outputs"], blobs = [], []
    for name, array in result.outputs:
        output = {"name": name, "datatype": convert.array_datatype(array), "shape": list(array.shape)}
        if binary.get(name, binary_default):
            blobs.append(convert.raw_from_array(array))
            output["parameters"] = {BINARY_DATA_SIZE: len(blobs[-1])}
        else:
            output["data"] = convert.json_values(name, array)
        header["outputs"].append(output)
    text = json.dumps(header).encode("utf-8")
    if not blobs:
        return text, None
    return b"".join([text, *blobs]), len(text)


def infer_body(manager, options: core.KServeOptions, metrics, model: str, version: str, body: bytes, header_length: str | None) -> tuple:
    """Handles one infer request body (blocking: run it on an executor); returns (body, header length)."""
    with metrics.track(model, "REST.v2.infer") as call:
        request, binary = _split_body(body, header_length)
        parameters = _dict_field(request, "parameters", "request")
        request_id = request.get("id")
        if request_id is not None and not isinstance(request_id, str):
            raise _bad('"id" must be a string')
        binary_default = bool(parameters.get("binary_data_output", False))
        names, binary_outputs = _requested_outputs(request, binary_default)
        inputs = _request_inputs(request, binary, manager.options.max_tensor_bytes)
        result = core.infer(manager, options, core.InferCall(model, version, parameters, inputs, names))
        call.version = result.version.version
        return _response(result, request_id, binary_default, binary_outputs)


class _NoMetrics:
    @staticmethod
    def track(model: str, method: str):
        return contextlib.nullcontext(types.SimpleNamespace(version=None))


_JSON = "application/json"
_ROUTE = re.compile(
    r"^/v2(?:/health/(?P<health>live|ready)"
    r"|/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<verb>/ready|/infer)?)?/?$"
)


def _json(payload, status: int = 200) -> tuple:
    return status, json.dumps(payload).encode("utf-8"), _JSON, {}


def _error(error: Exception) -> tuple:
    if isinstance(error, ServingError):
        return _json({"error": error.message}, error.http_status)
    _log.error("internal error in a KServe v2 REST handler", exc_info=error)
    return _json({"error": f"internal server error ({type(error).__name__}); see the server log"}, 500)


class KServeRestApi:
    """The /v2 routes, synchronous (run it on a thread pool): request -> (status, body, type, headers).

    `ready` answers server readiness ((ready, why)); default: every configured model has a
    loaded version. TF Serving's REST server (rest.py) dispatches /v2 paths here, so its
    body, connection and timeout limits hold for /v2 too.
    """

    def __init__(self, manager, *, metrics=None, options: core.KServeOptions | None = None, ready=None):
        self.manager = manager
        self.metrics = metrics or _NoMetrics()
        self.options = options or core.KServeOptions()
        self._ready = ready or (lambda: (core.server_ready(manager),
                                         f"models without a loaded version: {core.not_ready_models(manager)}"))

    @staticmethod
    def _ready_response(ready: bool, why: str) -> tuple:
        return (200, b"", _JSON, {}) if ready else _json({"error": why}, 400)

    def handle(self, method: str, path: str, headers, body: bytes | None) -> tuple:
        match = _ROUTE.match(path)
        if match is None:
            return _json({"error": f"no route for {method} {path[:200]}; see the KServe v2 REST API (/v2/...)"}, 404)
        post = match["verb"] == "/infer"
        if method != ("POST" if post else "GET"):
            return _json({"error": f"{method} is not allowed on {path[:200]}"}, 405)
        try:
            if match["health"] == "live":
                return 200, b"", _JSON, {}
            if match["health"] == "ready":
                return self._ready_response(*self._ready())
            if match["name"] is None:
                return _json(core.server_metadata())
            name, version = match["name"], match["version"] or ""
            if match["verb"] == "/ready":
                ready = core.model_ready(self.manager, name, version)
                what = f"model '{name}'" + (f" version {version}" if version else "")
                available = self.manager.available_versions().get(name, "model not served")
                return self._ready_response(ready, f"{what} is not ready (available versions: {available})")
            if post:
                payload, header_length = infer_body(self.manager, self.options, self.metrics, name, version, body or b"",
                                                    headers.get(HEADER_LENGTH))
                if header_length is None:
                    return 200, payload, _JSON, {}
                return 200, payload, "application/octet-stream", {HEADER_LENGTH: str(header_length)}
            with self.metrics.track(name, "REST.v2.metadata"):
                return _json(core.model_metadata(self.manager, self.options, name, version))
        except Exception as error:  # noqa: BLE001  (every failure becomes a JSON error)
            return _error(error)


def add_kserve_routes(app: web.Application, manager, executor, *, metrics=None, options: core.KServeOptions | None = None) -> None:
    """Adds the /v2 routes to `app` (whose `client_max_size` bounds infer bodies)."""
    api = KServeRestApi(manager, metrics=metrics, options=options)

    async def route(request):
        try:
            body = await request.read() if request.method == "POST" else None
        except web.HTTPRequestEntityTooLarge:
            return web.json_response(
                {"error": f"the body exceeds the {request.client_max_size}-byte limit; send smaller batches"}, status=413
            )
        status, payload, content_type, headers = await asyncio.get_running_loop().run_in_executor(
            executor, api.handle, request.method, request.path, request.headers, body
        )
        return web.Response(status=status, body=payload, headers={"Content-Type": content_type, **headers})

    app.router.add_route("*", "/v2", route)
    app.router.add_route("*", "/v2/{tail:.*}", route)
