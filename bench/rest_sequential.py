"""REST :predict latency of the embedded server, one client, sequential requests.

A before/after check for the REST front end (not a load test; bench/serving_bench.py is that):
the digits CNN (bench/serving_bench.py's export), `python -m serving serve` in a subprocess,
N sequential one-image :predict calls on one keep-alive connection, then N on a new
connection each. Besides wall-clock latency it reports the server process's CPU time per
request, which other processes on a shared machine disturb far less.

    .venv/bin/python bench/rest_sequential.py --requests 200 [--models_dir /tmp/rest-bench]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # the bench and serving packages, when run as `python bench/rest_sequential.py`

from bench.serving_bench import MODELS, export_models, start_server, write_config  # noqa: E402
from serving.contract import IMAGES_SIGNATURE  # noqa: E402

MODEL = "digits_cnn"


def _time(port: int, body: bytes, count: int, keep_alive: bool) -> list:
    seconds, connection = [], None
    for _ in range(count):
        if connection is None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        begin = time.perf_counter()
        connection.request("POST", f"/v1/models/{MODEL}:predict", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        payload = response.read()
        seconds.append(time.perf_counter() - begin)
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {payload[:200]!r}")
        if not keep_alive:
            connection.close()
            connection = None
    if connection is not None:
        connection.close()
    return seconds


def _measure(process, port: int, body: bytes, count: int, keep_alive: bool) -> dict:
    import numpy as np
    import psutil

    server = psutil.Process(process.pid)
    cpu_before = sum(server.cpu_times()[:2])
    values = np.asarray(_time(port, body, count, keep_alive)) * 1e3
    cpu_ms = (sum(server.cpu_times()[:2]) - cpu_before) * 1e3
    return {"p50_ms": round(float(np.percentile(values, 50)), 3), "p99_ms": round(float(np.percentile(values, 99)), 3),
            "req_per_s": round(len(values) / float(values.sum() / 1e3), 1), "server_cpu_ms_per_req": round(cpu_ms / count, 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--models_dir", default="", help="reuse an export here (made if missing)")
    args = parser.parse_args(argv)
    root = args.models_dir or tempfile.mkdtemp(prefix="rest-bench-")
    base = os.path.join(root, MODEL)
    if not os.path.isdir(os.path.join(base, "1")):
        export_models(root)
    config = write_config({MODEL: base}, root)
    process = start_server(config, batching=False, batching_file="", models=[MODEL], log_path=os.path.join(root, "server.log"))
    rest_port = process.rest_port
    try:
        image = [[[int((r * 8 + c) % 256)] for c in range(MODELS[MODEL][1])] for r in range(MODELS[MODEL][0])]
        body = json.dumps({"signature_name": IMAGES_SIGNATURE, "instances": [image]}).encode()
        _time(rest_port, body, 20, keep_alive=True)  # warm-up
        result = {
            "requests": args.requests,
            "keep_alive": _measure(process, rest_port, body, args.requests, keep_alive=True),
            "new_connection_each": _measure(process, rest_port, body, args.requests, keep_alive=False),
        }
    finally:
        process.stop(grace_seconds=30)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
