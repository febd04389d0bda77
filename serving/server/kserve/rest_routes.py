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
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
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


def _error(error: Exception) -> web.Response:
    if isinstance(error, ServingError):
        return web.json_response({"error": error.message}, status=error.http_status)
    _log.exception("internal error in a KServe v2 REST handler", exc_info=error)
    return web.json_response({"error": f"internal server error ({type(error).__name__}); see the server log"}, status=500)


def add_kserve_routes(app: web.Application, manager, executor, *, metrics=None, options: core.KServeOptions | None = None) -> None:
    """Adds the /v2 routes to `app` (whose `client_max_size` bounds infer bodies)."""
    options = options or core.KServeOptions()
    metrics = metrics or _NoMetrics()

    def ready_response(ready: bool, why: str) -> web.Response:
        return web.Response(status=200) if ready else web.json_response({"error": why}, status=400)

    async def live(request):
        return web.Response(status=200)

    async def server_ready(request):
        return ready_response(core.server_ready(manager), f"models without a loaded version: {core.not_ready_models(manager)}")

    async def server_metadata(request):
        return web.json_response(core.server_metadata())

    async def model_metadata(request):
        name, version = request.match_info["name"], request.match_info.get("version", "")
        try:
            with metrics.track(name, "REST.v2.metadata"):
                return web.json_response(core.model_metadata(manager, options, name, version))
        except Exception as error:  # noqa: BLE001  (every failure becomes a JSON error)
            return _error(error)

    async def model_ready(request):
        name, version = request.match_info["name"], request.match_info.get("version", "")
        try:
            ready = core.model_ready(manager, name, version)
        except Exception as error:  # noqa: BLE001
            return _error(error)
        what = f"model '{name}'" + (f" version {version}" if version else "")
        return ready_response(ready, f"{what} is not ready (available versions: {manager.available_versions().get(name, 'model not served')})")

    async def infer(request):
        name, version = request.match_info["name"], request.match_info.get("version", "")
        try:
            body = await request.read()
            payload, header_length = await asyncio.get_running_loop().run_in_executor(
                executor, infer_body, manager, options, metrics, name, version, body, request.headers.get(HEADER_LENGTH)
            )
        except web.HTTPRequestEntityTooLarge:
            return web.json_response(
                {"error": f"the body exceeds the {request.client_max_size}-byte limit; send smaller batches"}, status=413
            )
        except Exception as error:  # noqa: BLE001
            return _error(error)
        if header_length is None:
            return web.Response(body=payload, content_type="application/json")
        return web.Response(body=payload, content_type="application/octet-stream", headers={HEADER_LENGTH: str(header_length)})

    router = app.router
    router.add_get("/v2/health/live", live)
    router.add_get("/v2/health/ready", server_ready)
    router.add_get("/v2", server_metadata)
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        router.add_get(prefix, model_metadata)
        router.add_get(prefix + "/ready", model_ready)
        router.add_post(prefix + "/infer", infer)
