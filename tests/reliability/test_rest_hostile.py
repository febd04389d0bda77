"""Hostile REST clients: every client error is a 4xx `{"error": ...}`, idle sockets cannot starve the server.

Each case here was a 500, a dropped connection or a starved client on the http.server
front end (issue 11, item 5). Loopback only; every socket and wait is bounded.
"""
import concurrent.futures
import contextlib
import http.client
import json
import socket
import threading
import time

import pytest

from serving.server.rest import make_rest_server
from tests.serving import helpers
from tests.serving.conftest import start_server

IDLE_SOCKETS = 300


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return helpers.export_version(str(tmp_path_factory.mktemp("exports") / "v1"), seed=1)


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile") / "digits"
    helpers.push_version(exported, str(base), 1)
    running = start_server(str(base))
    yield running
    running.stop(grace=1.0)


def _raw(port: int, request: bytes, timeout: float = 10.0) -> tuple:
    """Sends raw bytes, returns (status, headers text, body bytes) of the one response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed without a response; got {data[:200]!r}")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        headers = head.decode("latin-1")
        length = int(next(line.split(":", 1)[1] for line in headers.split("\r\n")[1:] if line.lower().startswith("content-length:")))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    return int(headers.split(" ", 2)[1]), headers, body


def _post(port: int, path: str, body: bytes, timeout: float = 30.0) -> tuple:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def _get(port: int, path: str, timeout: float = 10.0) -> tuple:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def _assert_client_error(result, status: int, *words: str) -> str:
    code, content_type, body = result
    assert code == status, (code, body[:300])
    assert content_type.startswith("application/json"), content_type
    message = json.loads(body)["error"]
    assert isinstance(message, str) and 0 < len(message) < 1000
    assert "Traceback" not in message
    for word in words:
        assert word.lower() in message.lower(), message
    return message


def _assert_serving(server) -> None:
    image = helpers.images(1)[0].tolist()
    body = json.dumps({"signature_name": "serving_images", "instances": [image]}).encode()
    code, _, payload = _post(server.rest_port, "/v1/models/digits:predict", body)
    assert code == 200, payload[:300]


# -- client errors are 4xx with a JSON body ----------------------------------------------------
@pytest.mark.parametrize("method, suffix", [("GET", ""), ("GET", "/metadata"), ("POST", ":predict")])
def test_version_beyond_int64_is_400(server, method, suffix):
    path = f"/v1/models/digits/versions/9999999999999999999{suffix}"  # 19 digits, > 2**63 - 1
    if method == "GET":
        result = _get(server.rest_port, path)
    else:
        result = _post(server.rest_port, path, b'{"instances": [1]}')
    _assert_client_error(result, 400, "version")
    _assert_serving(server)


def test_json_integer_with_5000_digits_is_400(server):
    body = b'{"signature_name": "serving_images", "instances": [' + b"9" * 5000 + b"]}"
    _assert_client_error(_post(server.rest_port, "/v1/models/digits:predict", body), 400, "digits")
    _assert_serving(server)


@pytest.mark.parametrize("depth", [500, 5000, 200_000])
@pytest.mark.parametrize("signature", ["serving_default", "serving_images"])
def test_deeply_nested_json_is_400(server, depth, signature):
    nested = "[" * depth + '"x"' + "]" * depth if signature == "serving_default" else "[" * depth + "1" + "]" * depth
    body = f'{{"signature_name": "{signature}", "instances": {nested}}}'.encode()
    _assert_client_error(_post(server.rest_port, "/v1/models/digits:predict", body), 400, "nest")
    _assert_serving(server)


@pytest.mark.parametrize("depth", [500, 200_000])
def test_deeply_nested_classify_feature_is_400(server, depth):
    body = f'{{"signature_name": "classification", "examples": [{{"image": {"[" * depth}"x"{"]" * depth}}}]}}'.encode()
    _assert_client_error(_post(server.rest_port, "/v1/models/digits:classify", body), 400, "nest")


@pytest.mark.parametrize("value", [2**63, 2**64, -(2**63) - 1, 10**30])
def test_classify_feature_beyond_int64_is_400(server, value):
    body = json.dumps({"signature_name": "classification", "examples": [{"image": "x", "count": value}]}).encode()
    _assert_client_error(_post(server.rest_port, "/v1/models/digits:classify", body), 400, "int64")
    body = json.dumps({"signature_name": "classification", "examples": [{"image": "x", "count": [1, value]}]}).encode()
    _assert_client_error(_post(server.rest_port, "/v1/models/digits:regress", body), 400, "int64")


def test_content_length_with_5000_digits_is_4xx(server):
    request = b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n{}"
    status, headers, body = _raw(server.rest_port, request)
    assert 400 <= status < 500, (status, body[:200])
    assert "application/json" in headers.lower()
    assert json.loads(body)["error"]
    _assert_serving(server)


@pytest.mark.parametrize("request_bytes", [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n",  # a TLS hello on the plain port
    b"GET /v1/models/digits HTTP/1.1\r\nHost: x\r\n" + b"X-Long: " + b"a" * 70000 + b"\r\n\r\n",
    b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
])
def test_malformed_http_gets_a_json_4xx(server, request_bytes):
    status, headers, body = _raw(server.rest_port, request_bytes)
    assert 400 <= status < 500, (status, body[:200])
    assert "application/json" in headers.lower()
    assert json.loads(body)["error"]
    _assert_serving(server)


# -- connections -----------------------------------------------------------------------------
def _open_idle(port: int, count: int) -> list:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sockets.append(sock)
    return sockets


def test_300_idle_connections_do_not_starve_a_real_client(server):
    sockets = _open_idle(server.rest_port, IDLE_SOCKETS)
    # Half of them start a request and stall inside the headers (slowloris).
    for sock in sockets[::2]:
        sock.sendall(b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\n")
    try:
        begin = time.monotonic()
        for _ in range(3):
            _assert_serving(server)
            assert _get(server.rest_port, "/v1/models/digits")[0] == 200
        assert time.monotonic() - begin < 10.0
    finally:
        for sock in sockets:
            sock.close()


@contextlib.contextmanager
def _rest_front_end(server, **limits):
    """A second REST front end on the same models with tight limits, to reach them quickly."""
    rest = make_rest_server("127.0.0.1", 0, server.manager, server.metrics, max_body_bytes=1 << 20, num_threads=2, **limits)
    thread = threading.Thread(target=rest.serve_forever, daemon=True)
    thread.start()
    try:
        yield rest
    finally:
        rest.shutdown()
        rest.drain(2.0)
        rest.server_close()
        thread.join(10)
    assert not thread.is_alive()


@pytest.fixture
def small_server(server):
    with _rest_front_end(server, max_connections=16, idle_timeout=0.5) as rest:
        yield rest


@pytest.mark.parametrize("sent", [b"", b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\n"])
def test_idle_and_stalled_connections_are_closed_after_the_idle_timeout(small_server, sent):
    sock = socket.create_connection(("127.0.0.1", small_server.port), timeout=5)
    try:
        sock.sendall(sent)
        begin = time.monotonic()
        assert sock.recv(1) == b""  # the server closed it
        assert time.monotonic() - begin < 4.0
    finally:
        sock.close()


def test_a_body_that_never_arrives_gets_408(server):
    with _rest_front_end(server, body_timeout=0.5) as rest:
        request = b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{"
        begin = time.monotonic()
        status, headers, body = _raw(rest.port, request)
        assert status == 408 and "10-byte body" in json.loads(body)["error"]
        assert time.monotonic() - begin < 4.0


def test_when_every_connection_is_busy_a_new_one_gets_503(server):
    with _rest_front_end(server, max_connections=2, body_timeout=5.0) as rest:
        busy = _open_idle(rest.port, 2)
        try:
            for sock in busy:  # inside a request: waiting for a body that does not come
                sock.sendall(b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
            helpers.wait_until(lambda: rest.inflight.count == 2, timeout=5, what="two busy connections")
            status, _, body = _raw(rest.port, b"GET /v1/models/digits HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status == 503 and "limit of 2" in json.loads(body)["error"]
        finally:
            for sock in busy:
                sock.close()
        helpers.wait_until(lambda: rest.inflight.count == 0, timeout=5, what="the busy requests to end")
        assert _get(rest.port, "/v1/models/digits")[0] == 200


def test_max_connections_closes_idle_ones_to_let_a_request_in(small_server):
    sockets = _open_idle(small_server.port, 40)  # well above max_connections=16
    try:
        status, _, body = _get(small_server.port, "/v1/models/digits")
        assert status == 200, body[:200]
        closed = 0
        for sock in sockets:
            sock.settimeout(0.2)
            try:
                closed += sock.recv(1) == b""
            except (socket.timeout, ConnectionError):
                pass
        assert closed >= 40 - 16  # the oldest idle connections made room
    finally:
        for sock in sockets:
            sock.close()


def test_model_runs_off_the_event_loop(server):
    """While a large predict runs, a status call on another connection still answers quickly."""
    images = helpers.images(4000).tolist()
    body = json.dumps({"signature_name": "serving_images", "instances": images}).encode()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(_post, server.rest_port, "/v1/models/digits:predict", body, 60.0)
        helpers.wait_until(lambda: server.metrics.inflight() > 0 or slow.done(), what="the large predict to start")
        begin = time.monotonic()
        assert _get(server.rest_port, "/v1/models/digits")[0] == 200
        fast = time.monotonic() - begin
        assert slow.result(60)[0] == 200
    assert fast < 2.0, fast  # the large predict takes several seconds
