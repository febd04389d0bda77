"""What request logging costs: gRPC throughput at 32 clients with logging at rate 1.0 vs off.

One run, the digits CNN (random weights, same export as bench/serving_bench.py), the
embedded server in a subprocess with the benchmark's server flags, closed-loop load from
client processes (serving_bench.run_load). Rounds alternate off / on so a drift in the
machine's load hits both; the ratio is median(on) / median(off). Goal (issue #15): >= 0.9.

    .venv/bin/python bench/request_log_bench.py [--seconds 5] [--rounds 3] [--clients 32]

Writes bench/results/request_log.json and prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo, for `serving`
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # bench/, for serving_bench

import serving_bench  # noqa: E402

from serving.atomic import atomic_write_text  # noqa: E402
from serving.launcher import ModelServerProcess, wait_until_available  # noqa: E402

MODEL = "digits_cnn"
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "request_log.json")


def start(base: str, log_path: str, request_log_dir: str | None) -> ModelServerProcess:
    import grpc

    flags = ["--file_system_poll_wait_seconds=30", "--enable_batching=true", *serving_bench.SERVER_FLAGS]
    if request_log_dir:
        flags += [f"--request_log_dir={request_log_dir}", "--request_log_sampling_rate=1.0"]
    server = ModelServerProcess(MODEL, base, log_path, rest=True, flags=flags, engine="embedded").__enter__()
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        wait_until_available(server, channel, 300)
    return server


def log_counters(rest_port: int) -> dict:
    """logged / dropped / bytes from the server's Prometheus metrics (serving/server/request_log.py)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics", timeout=10).read().decode()
    out = {"logged": 0.0, "dropped": 0.0, "bytes": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "serving_request_log_records_total" and sample.labels.get("outcome") in out:
                out[sample.labels["outcome"]] += sample.value
            elif sample.name == "serving_request_log_bytes_written_total":
                out["bytes"] += sample.value
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args(argv)
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as root:
        base = serving_bench.export_models(root)[MODEL]
        request = serving_bench.one_image_request(MODEL, serving_bench.MODELS[MODEL])
        rounds = []
        for i in range(args.rounds):
            for logging_on in (False, True):
                log_dir = os.path.join(root, f"log-{i}") if logging_on else None
                server = start(base, os.path.join(root, f"server-{i}-{logging_on}.log"), log_dir)
                try:
                    point = serving_bench.run_load(f"127.0.0.1:{server.port}", request, args.clients, args.seconds, server.pid)
                    counters = log_counters(server.rest_port) if logging_on else {}
                finally:
                    server.stop()
                rounds.append({"round": i, "logging": logging_on, **point, **counters})
                print(f"round {i} logging={'on ' if logging_on else 'off'} {point['images_per_s']:8.0f} req/s "
                      f"errors {point['errors']} {counters}", flush=True)
    off = statistics.median(r["images_per_s"] for r in rounds if not r["logging"])
    on = statistics.median(r["images_per_s"] for r in rounds if r["logging"])
    result = {
        "command": "python bench/request_log_bench.py " + " ".join(argv or sys.argv[1:]),
        "clients": args.clients, "seconds": args.seconds, "rounds": rounds,
        "median_req_per_s_off": off, "median_req_per_s_on": on, "ratio_on_off": on / off, "goal": 0.9,
        "load_average_start": load_start, "load_average_end": os.getloadavg()[0], "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic_write_text(RESULTS, json.dumps(result, indent=2) + "\n")
    print(f"\n| logging | median req/s ({args.clients} clients) | errors | logged | dropped |\n|---|---|---|---|---|")
    for logging_on, median in ((False, off), (True, on)):
        rows = [r for r in rounds if r["logging"] == logging_on]
        print(f"| {'rate 1.0' if logging_on else 'off'} | {median:,.0f} | {sum(r['errors'] for r in rows)} | "
              f"{sum(r.get('logged', 0) for r in rows):,.0f} | {sum(r.get('dropped', 0) for r in rows):,.0f} |")
    print(f"\nratio on/off {on / off:.2f} (goal >= 0.9); load average {load_start:.1f} -> {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
