"""Serving benchmark: the embedded model server against calling the model in-process.

    .venv/bin/python bench/serving_bench.py [--seconds 5] [--quick]

Two models exported with the serving contract (components.train.export): the digits CNN
(`create_model("digits_cnn")`, 8x8x1) and ResNet-20 (`create_model("resnet20")`,
32x32x3, random weights), each given its optimized ONNX artifact by the project's
ModelOptimizer (components/optimize: FP32 ONNX Runtime, parity and accuracy gates on a
synthetic eval split; the speed gate is reported, not required, so both backends always
run). Both backends serve them: `--backend=tensorflow` and `--backend=onnxruntime`.
For each:

* in-process: images/s calling the `serving_images` signature directly, at batch 1 and
  at each batch size up to 128, plus per-call latency. Measured in fresh processes, with
  TensorFlow's default threads and with the server's (1 intra-op, 1 inter-op thread),
  each both through the signature's `__call__` and through the server's own call path
  (`Signature.call`: flat arguments, no gRPC, no batching), and the ONNX Runtime backend's
  call (`Signature.call` on the artifact; 1 intra-op thread with the server's threads,
  ONNX Runtime's default otherwise); references: the best engine (best of all variants)
  and TensorFlow's best (TF variants only), per batch size;
* grpcio floor: a server process whose Predict returns a prebuilt response without any
  model work, at 1 and 32 clients, so the gRPC cost in the same run is known;
* server: `python -m serving serve` in its own process, driven by closed-loop clients in
  up to two separate processes (multiprocessing; asyncio gRPC; they never import
  TensorFlow and send a pre-serialized one-image PredictRequest), at 1, 8 and 32
  concurrent clients, with batching on and off; server and client CPU are measured;
* added latency: one client's round trip minus the in-process batch-1 call (p50, p99).

Goals (issue 16; ratios in one run): ResNet-20 server@32 (batching on) >= 1.0x TensorFlow's
in-process best and >= 0.6x the best engine's; digits CNN server@32 >= 0.9x the no-model
grpcio floor@32; one client p50 <= floor p50 + best engine batch-1 p50 + 0.25 ms.
Results: bench/results/serving.json and docs/bench-serving.md.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
from typing import Sequence

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)  # the serving package, when run as `python bench/serving_bench.py`
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from serving.contract import IMAGES_SIGNATURE  # noqa: E402
from serving.launcher import ModelServerProcess, wait_until_available  # noqa: E402

RESULTS = os.path.join(REPO, "bench", "results", "serving.json")
DOC = os.path.join(REPO, "docs", "bench-serving.md")
MODELS = {"digits_cnn": (8, 8, 1), "resnet20": (32, 32, 3)}
CLIENT_COUNTS = (1, 8, 32)
BATCH_SIZES = (1, 8, 16, 32, 64, 128)
PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
# Fewer client processes cost less CPU per request on 2 cores (measured: 1 x 32 asyncio
# clients used about a third of the CPU per request of 4 processes x 8 threads).
MAX_CLIENT_PROCESSES = 2
# Batching for the benchmark: batches up to the largest client count. The wait (10 ms at
# most) only happens while more requests are expected (see serving/server/batching.py),
# so one client never waits; measured on ResNet-20 at 32 clients: 1 ms -> mean batch 16,
# 20 ms -> mean batch 31 and +28% images/s.
# Two batch threads: with one TF thread per call (SERVER_FLAGS), two batches in flight use
# both cores; the batcher only waits for rows that are not already running elsewhere.
BATCHING_TEXT = "max_batch_size { value: 32 }\nbatch_timeout_micros { value: 10000 }\nnum_batch_threads { value: 2 }\n"
# TensorFlow's default thread pools (one intra-op thread per core, spinning while idle)
# cost a server that also runs gRPC on the same 2 cores more than they give: measured on
# the digits CNN at 1 client, 141 -> 407 req/s and 3.9 -> 1.9 ms of server CPU per request.
SERVER_FLAGS = ("--tensorflow_intra_op_parallelism=1", "--tensorflow_inter_op_parallelism=1")
THREAD_CONFIGS = {"tf_default_threads": (0, 0), "server_threads": (1, 1)}
BACKENDS = ("tensorflow", "onnxruntime")
# ONNX Runtime in the server: one intra-op thread per session call, for the same reason as
# TF's one thread: two batch threads already keep both cores busy, and a second ORT thread
# per call would fight them and the gRPC threads (see docs/bench-serving.md).
BACKEND_FLAGS = {"tensorflow": ("--backend=tensorflow",), "onnxruntime": ("--backend=onnxruntime", "--onnxruntime_intra_op_threads=1")}
SERVER_MODES = {"batching_on": CLIENT_COUNTS, "batching_off": (1, 32)}
IDLE_GAP_S = 0.002


# -- models ----------------------------------------------------------------------------
def export_models(root: str) -> dict:
    import keras

    from components.train.export import export_serving_model
    from models import create_model

    keras.utils.set_random_seed(0)
    paths = {}
    for name, shape in MODELS.items():
        base = os.path.join(root, name)
        model = create_model(name, shape, num_classes=10)
        plain = os.path.join(root, f"{name}-plain")
        export_serving_model(model, plain, image_shape=shape, label_names=[str(i) for i in range(10)])
        optimize(plain, shape, os.path.join(root, f"{name}-optimizer"), os.path.join(base, "1"))
        paths[name] = base
    return paths


def optimize(saved_model: str, shape: tuple, workdir: str, version_dir: str) -> None:
    """The ModelOptimizer's real artifact for `saved_model`, copied in as `version_dir`.

    Random weights have no real eval split: 256 random images with random labels stand in
    (the accuracy gate compares the artifact with the SavedModel on them, both at chance).
    """
    import shutil

    import tensorflow as tf

    from components.optimize.config import validate_optimize_config
    from components.optimize.executor import run_optimizer

    rng = np.random.default_rng(3)
    split = os.path.join(workdir, "examples", "Split-eval")
    os.makedirs(split)
    with tf.io.TFRecordWriter(os.path.join(split, "data_tfrecord-00000-of-00001.gz"), options="GZIP") as writer:
        for _ in range(256):
            image = rng.integers(0, 256, shape, dtype=np.uint8)
            features = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[tf.io.encode_png(image).numpy()])),
                        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(rng.integers(0, 10))]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())
    config = validate_optimize_config({"engine": "onnx", "precision": "FP32", "min_speedup": 0.0, "timing_seconds": 0.5, "timing_batch": 64})
    result = run_optimizer(saved_model, split, workdir, config)
    if result["status"] != "optimized":
        raise RuntimeError(f"the optimizer made no artifact for {saved_model}: {result.get('reason')}")
    shutil.copytree(os.path.join(workdir, "Format-Serving"), version_dir)


def _percentiles(seconds: list) -> dict:
    values = np.asarray(seconds) * 1e3
    return {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99))}


def _time_calls(call, seconds: float) -> list:
    for _ in range(3):
        call()
    calls, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(calls) < 5:
        begin = time.perf_counter()
        call()
        calls.append(time.perf_counter() - begin)
    return calls


def _in_process_worker(version_dir: str, shape: tuple, seconds: float, threads: tuple, out) -> None:
    """In a fresh process (TF threads are fixed at start): both call paths, every batch size."""
    import tensorflow as tf

    if threads[0]:
        tf.config.threading.set_intra_op_parallelism_threads(threads[0])
    if threads[1]:
        tf.config.threading.set_inter_op_parallelism_threads(threads[1])
    from serving.server.backends import BackendOptions
    from serving.server.servable import LoadedVersion

    function = tf.saved_model.load(version_dir).signatures[IMAGES_SIGNATURE]
    signature = LoadedVersion.load("bench", 1, version_dir, backend_options=BackendOptions("tensorflow")).signature(IMAGES_SIGNATURE)
    ort = LoadedVersion.load("bench", 1, version_dir, backend_options=BackendOptions("onnxruntime", threads[0])).signature(IMAGES_SIGNATURE)
    rng = np.random.default_rng(0)
    result = {}
    for path in ("signature_call", "server_call_path", "onnxruntime_call"):
        by_batch, latency = {}, None
        for batch in BATCH_SIZES:
            array = rng.integers(0, 256, (batch, *shape), dtype=np.uint8)
            if path == "signature_call":  # the usual in-process call; outputs fetched as numpy
                images = tf.constant(array)
                call = lambda: {key: value.numpy() for key, value in function(images=images).items()}  # noqa: E731
            elif path == "server_call_path":  # what the server runs per batch: numpy in, numpy out
                call = lambda: signature.call({"images": array})  # noqa: E731
            else:  # the ONNX Runtime backend's call on the optimized artifact
                call = lambda: ort.call({"images": array})  # noqa: E731
            calls = _time_calls(call, seconds / 4)
            by_batch[batch] = batch * len(calls) / sum(calls)
            if batch == 1:
                latency = _percentiles(calls)
        result[path] = {"images_per_s_by_batch": by_batch, "batch1_latency": latency}
    # Diagnostic, not a reference: the server's batch-1 call with the CPU idle for 2 ms
    # between calls, as it is between one client's requests (TF's threads park, caches cool).
    array = rng.integers(0, 256, (1, *shape), dtype=np.uint8)
    calls, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds / 2:
        time.sleep(IDLE_GAP_S)
        begin = time.perf_counter()
        signature.call({"images": array})
        calls.append(time.perf_counter() - begin)
    result["server_call_path_after_idle"] = {"batch1_latency": _percentiles(calls)}
    out.put(result)


def measure_in_process(version_dir: str, shape: tuple, seconds: float) -> dict:
    """{thread config: {call path: {images_per_s_by_batch, batch1_latency}}}, one process each."""
    context = multiprocessing.get_context("spawn")
    runs = {}
    for config, threads in THREAD_CONFIGS.items():
        queue = context.Queue()
        process = context.Process(target=_in_process_worker, args=(version_dir, shape, seconds, threads, queue))
        process.start()
        runs[config] = queue.get(timeout=900)
        process.join(timeout=60)
    return runs


def in_process_reference(runs: list) -> dict:
    """Each (config, path) averaged over the runs; the reference takes the best per batch size."""
    variants = {}
    idle = {config: {k: float(np.mean([run[config]["server_call_path_after_idle"]["batch1_latency"][k] for run in runs]))
                     for k in ("p50_ms", "p99_ms")} for config in runs[0]}
    for config in runs[0]:
        for path in ("signature_call", "server_call_path", "onnxruntime_call"):
            parts = [run[config][path] for run in runs]
            variants[f"{config}/{path}"] = {
                "images_per_s_by_batch": {b: float(np.mean([p["images_per_s_by_batch"][b] for p in parts])) for b in parts[0]["images_per_s_by_batch"]},
                "batch1_latency": {k: float(np.mean([p["batch1_latency"][k] for p in parts])) for k in parts[0]["batch1_latency"]},
            }
    tf_by_batch = {b: max(v["images_per_s_by_batch"][b] for k, v in variants.items() if "onnxruntime" not in k) for b in BATCH_SIZES}
    tf_best = max(tf_by_batch, key=tf_by_batch.get)
    by_batch = {b: max(v["images_per_s_by_batch"][b] for v in variants.values()) for b in BATCH_SIZES}
    best = max(by_batch, key=by_batch.get)
    latency = {k: min(v["batch1_latency"][k] for v in variants.values()) for k in ("p50_ms", "p99_ms")}
    def source(batch):
        return max(variants, key=lambda name: variants[name]["images_per_s_by_batch"][batch])
    return {"variants": variants, "images_per_s_by_batch": by_batch, "batch1_images_per_s": by_batch[1], "best_batch": best,
            "best_images_per_s": by_batch[best], "batch1_latency": latency,
            "batch1_source": source(1), "best_source": source(best),
            "latency_p50_source": min(variants, key=lambda name: variants[name]["batch1_latency"]["p50_ms"]),
            "batch1_latency_after_idle": idle, "tensorflow_best_batch": tf_best, "tensorflow_best_images_per_s": tf_by_batch[tf_best]}


# -- grpcio floor: the same RPC with no model work ------------------------------------------
def _empty_server(response: bytes, ready) -> None:
    import concurrent.futures

    import grpc

    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=32))
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: response)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", {"Predict": handler}),))
    ready.put(server.add_insecure_port("127.0.0.1:0"))
    server.start()
    server.wait_for_termination()


def measure_grpc_floor(response: bytes, request: bytes, seconds: float) -> dict:
    """A grpcio server (same thread-pool model as the embedded server) whose Predict returns
    a prebuilt response of the model's size: what gRPC alone costs, in this run."""
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    process = context.Process(target=_empty_server, args=(response, ready), daemon=True)
    process.start()
    try:
        port = ready.get(timeout=60)
        return {str(clients): run_load(f"127.0.0.1:{port}", request, clients, seconds, process.pid) for clients in (1, 32)}
    finally:
        process.kill()
        process.join(timeout=10)


def model_response(version_dir: str, request: bytes) -> bytes:
    """The serialized PredictResponse the embedded server gives for `request` (for the floor)."""
    from tensorflow_serving.apis import predict_pb2

    from serving.server.predict import predict
    from serving.server.servable import LoadedVersion

    version = LoadedVersion.load("bench", 1, version_dir)
    return predict(version, predict_pb2.PredictRequest.FromString(request)).SerializeToString()


# -- load generation (client processes: no TensorFlow) ----------------------------------
def _client_process(target: str, request: bytes, concurrency: int, start_at: float, warmup: float, seconds: float, out):
    """`concurrency` closed-loop clients on one asyncio loop (cheaper per call than threads)."""
    import asyncio

    import grpc

    async def run():
        channel = grpc.aio.insecure_channel(target, options=[("grpc.max_receive_message_length", 16 << 20)])
        predict = channel.unary_unary(PREDICT_METHOD, request_serializer=None, response_deserializer=None)
        measure_from, measure_to = start_at + warmup, start_at + warmup + seconds
        latencies, errors = [], [0]

        async def client():
            while True:
                begin = time.time()
                if begin >= measure_to:
                    return
                try:
                    await predict(request, timeout=30)
                except grpc.RpcError:
                    errors[0] += 1
                    continue
                if begin >= measure_from:
                    latencies.append(time.time() - begin)

        await asyncio.sleep(max(0.0, start_at - time.time()))
        tasks = [asyncio.ensure_future(client()) for _ in range(concurrency)]
        await asyncio.sleep(max(0.0, measure_from - time.time()))
        cpu_start = resource.getrusage(resource.RUSAGE_SELF)
        await asyncio.gather(*tasks)
        cpu_end = resource.getrusage(resource.RUSAGE_SELF)
        await channel.close()
        cpu = (cpu_end.ru_utime - cpu_start.ru_utime) + (cpu_end.ru_stime - cpu_start.ru_stime)
        return {"latencies": latencies, "errors": errors[0], "cpu_s": cpu}

    out.put(asyncio.run(run()))


def run_load(target: str, request: bytes, clients: int, seconds: float, server_pid: int, warmup: float = 1.5) -> dict:
    """Closed-loop load from client processes; throughput, latency and CPU in the window."""
    import psutil

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes_count = min(clients, MAX_CLIENT_PROCESSES)
    per_process = [clients // processes_count + (1 if i < clients % processes_count else 0) for i in range(processes_count)]
    start_at = time.time() + 3.0  # time for the client processes to start
    processes = [context.Process(target=_client_process, args=(target, request, n, start_at, warmup, seconds, queue))
                 for n in per_process]
    for process in processes:
        process.start()
    server = psutil.Process(server_pid)
    time.sleep(max(0.0, start_at + warmup - time.time()))
    server_cpu_start = sum(server.cpu_times()[:2])
    time.sleep(seconds)
    server_cpu = sum(server.cpu_times()[:2]) - server_cpu_start
    parts = [queue.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    latencies = [x for part in parts for x in part["latencies"]]
    return {
        "clients": clients,
        "client_processes": processes_count,
        "images_per_s": len(latencies) / seconds,
        "errors": sum(part["errors"] for part in parts),
        **_percentiles(latencies or [0.0]),
        "server_cpu_cores": server_cpu / seconds,
        "client_cpu_cores": sum(part["cpu_s"] for part in parts) / seconds,
    }


def one_image_request(model: str, shape: tuple) -> bytes:
    from tensorflow_serving.apis import predict_pb2

    from serving.server.tensors import to_tensor_proto

    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = IMAGES_SIGNATURE
    image = np.random.default_rng(1).integers(0, 256, (1, *shape), dtype=np.uint8)
    request.inputs["images"].CopyFrom(to_tensor_proto(image))
    return request.SerializeToString()


# -- server process ----------------------------------------------------------------------
def start_server(config_file: str, batching: bool, batching_file: str, models: Sequence[str], log_path: str,
                 timeout_seconds: float = 300, backend: str = "tensorflow") -> ModelServerProcess:
    """`python -m serving serve` (serving/launcher.py) on free ports, once every model is AVAILABLE.

    `server.port` is gRPC, `server.rest_port` REST, `server.pid` the process; stop it with `server.stop()`.
    """
    import grpc

    flags = [f"--model_config_file={config_file}", f"--enable_batching={'true' if batching else 'false'}",
             "--file_system_poll_wait_seconds=30", *SERVER_FLAGS, *BACKEND_FLAGS[backend]]
    if batching:
        flags.append(f"--batching_parameters_file={batching_file}")
    server = ModelServerProcess(None, None, log_path, rest=True, flags=flags, engine="embedded").__enter__()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            for model in models:
                wait_until_available(server, channel, timeout_seconds, model_name=model)
    except BaseException:
        server.stop()
        raise
    return server


def batch_counters(rest_port: int, model: str) -> tuple:
    """(batches, rows) the server's batcher ran for `model`, from its Prometheus metrics."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{rest_port}/monitoring/prometheus/metrics", timeout=10).read().decode()
    totals = {"serving_batches": 0.0, "serving_batched_rows": 0.0}
    for family in text_string_to_metric_families(text):
        if family.name in totals:
            totals[family.name] += sum(sample.value for sample in family.samples
                                       if sample.labels.get("model") == model and sample.name.endswith("_total"))
    return totals["serving_batches"], totals["serving_batched_rows"]


def write_config(paths: dict, root: str) -> str:
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    for name, base in paths.items():
        config.model_config_list.config.add(name=name, base_path=base, model_platform="tensorflow")
    path = os.path.join(root, "models.config")
    with open(path, "w") as f:
        f.write(text_format.MessageToString(config))
    return path


# -- report ------------------------------------------------------------------------------
LATENCY_SLACK_MS = 0.25  # the handler, batcher and backend hand-off may add this much (issue 16)


def ratios(result: dict) -> dict:
    """Per model and backend: the goal quantities of issue 16."""
    out = {}
    for name, model in result["models"].items():
        inproc, floor = model["in_process"], model.get("grpc_floor") or {}
        out[name] = {}
        for backend, modes in model["server"].items():
            at32, one = modes["batching_on"]["32"]["images_per_s"], modes["batching_on"]["1"]
            out[name][backend] = {
                "server32_over_tensorflow_best": at32 / inproc["tensorflow_best_images_per_s"],
                "server32_over_best_engine": at32 / inproc["best_images_per_s"],
                "server32_over_floor32": at32 / floor["32"]["images_per_s"] if floor else float("nan"),
                "p50_1client_ms": one["p50_ms"],
                "p50_budget_ms": (floor["1"]["p50_ms"] if floor else float("nan")) + inproc["batch1_latency"]["p50_ms"] + LATENCY_SLACK_MS,
            }
    return out


GOALS = [  # (model or None = every model, goal, key, target or None = the key's budget, sense)
    ("resnet20", "server@32 / TensorFlow in-process best", "server32_over_tensorflow_best", 1.0, ">="),
    ("resnet20", "server@32 / best engine in-process best", "server32_over_best_engine", 0.6, ">="),
    ("digits_cnn", "server@32 / grpcio floor@32", "server32_over_floor32", 0.9, ">="),
    (None, "1-client p50 ms <= floor p50 + best engine batch-1 p50 + 0.25", "p50_1client_ms", None, "<="),
]


def markdown(result: dict, command: str) -> str:
    lines = [
        "## Serving benchmark (embedded server, both backends)", "",
        f"Command: `{command}` ({result['machine']}; one run, {result['seconds']} s per point; "
        "server and client processes share the same cores; in-process numbers are the mean of a run "
        f"before and one after the server runs; 1-min load average {result.get('load_average_at_start', float('nan')):.1f} "
        f"at start, {result.get('load_average_at_end', float('nan')):.1f} at end).", "",
        f"Server: `python -m serving serve {' '.join(result.get('server_flags', []))}` plus, per backend, "
        + ", ".join(f"{b}: `{' '.join(f)}`" for b, f in BACKEND_FLAGS.items())
        + f"; batching parameters `{' '.join(result['batching_parameters'].split())}` when on. Both backends serve the same "
        "version directories (SavedModel + the optimizer's FP32 ONNX artifact). Clients: closed loop, up to "
        f"{MAX_CLIENT_PROCESSES} processes, each one asyncio loop (grpc.aio) with its share of the clients, "
        "sending one pre-serialized one-image PredictRequest; no TensorFlow in the client processes.", "",
        "| model | backend | mode | clients | images/s | p50 ms | p99 ms | errors | mean batch | server CPU (cores) | client CPU (cores) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def point_row(name, backend, label, clients, point, batch):
        return (f"| {name} | {backend} | {label} | {clients} | {point['images_per_s']:.0f} | {point['p50_ms']:.2f} | {point['p99_ms']:.2f} | "
                f"{point['errors']} | {batch} | {point['server_cpu_cores']:.2f} | {point['client_cpu_cores']:.2f} |")

    for name, model in result["models"].items():
        inproc = model["in_process"]
        engine = lambda source: "onnxruntime" if "onnxruntime" in source else "tensorflow"  # noqa: E731
        lines.append(f"| {name} | {engine(inproc['batch1_source'])} | in-process batch 1, best engine (reference) | - | {inproc['batch1_images_per_s']:.0f} | "
                     f"{inproc['batch1_latency']['p50_ms']:.2f} | {inproc['batch1_latency']['p99_ms']:.2f} | - | 1 | - | - |")
        lines.append(f"| {name} | {engine(inproc['best_source'])} | in-process batch {inproc['best_batch']}, best engine (reference) | - | "
                     f"{inproc['best_images_per_s']:.0f} | - | - | - | {inproc['best_batch']} | - | - |")
        lines.append(f"| {name} | tensorflow | in-process batch {inproc['tensorflow_best_batch']}, TensorFlow best (reference) | - | "
                     f"{inproc['tensorflow_best_images_per_s']:.0f} | - | - | - | {inproc['tensorflow_best_batch']} | - | - |")
        for backend, modes in model["server"].items():
            for mode, points in modes.items():
                for clients, point in points.items():
                    lines.append(point_row(name, backend, f"server, {mode.replace('_', ' ')}", clients, point, f"{point['mean_batch_rows']:.1f}"))
        for clients, point in model.get("grpc_floor", {}).items():
            lines.append(point_row(name, "-", "grpcio floor (no model)", clients, point, "-"))
    lines += ["", "In-process variants (each the mean of its two runs; the references above take the best per column):", "",
              "| model | threads / call path | batch 1 images/s | batch 1 p50 ms | batch 1 p99 ms | best batch | its images/s |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for name, model in result["models"].items():
        for variant, values in model["in_process"]["variants"].items():
            by_batch = {int(batch): rate for batch, rate in values["images_per_s_by_batch"].items()}  # str keys from JSON
            best = max(by_batch, key=by_batch.get)
            lines.append(f"| {name} | {variant} | {by_batch[1]:.0f} | {values['batch1_latency']['p50_ms']:.2f} | "
                         f"{values['batch1_latency']['p99_ms']:.2f} | {best} | {by_batch[best]:.0f} |")
    lines += ["", "Goals (issue 16), per backend, batching on:", "", "| model | backend | goal | measured | target | met |", "|---|---|---|---:|---:|---|"]
    for model_name, goal, key, target, sense in GOALS:
        for name in result["ratios"]:
            if model_name not in (None, name):
                continue
            for backend, values in result["ratios"][name].items():
                value, bound = values[key], values["p50_budget_ms"] if target is None else target
                met = value >= bound if sense == ">=" else value <= bound
                lines.append(f"| {name} | {backend} | {goal} | {value:.2f} | {sense} {bound:.2f} | {'yes' if met else 'no'} |")
    lines += ["", NOTES]
    return "\n".join(lines) + "\n"


NOTES = """How to read the rows. Both backends serve the same version directories; the
reference rows are in-process calls with nothing else in the process: "best engine" is the
best of every variant (TensorFlow's call paths and the ONNX Runtime backend's call, with
the default threads and with the server's 1 thread per call), "TensorFlow best" the best
of the TensorFlow variants only. Every point shares the 2 cores with the client
processes and with whatever else the machine runs (the load averages above): in-process
numbers are the mean of a run before and after the server points, so a load change
during the run moves references and server points differently.

Thread settings (the server's flags above): one TensorFlow intra-op and inter-op thread,
one ONNX Runtime intra-op thread per call, two batch threads (= cores): two batches in
flight keep both cores busy, and a second thread per call would compete with them and
with gRPC's threads. The in-process variant rows show what each engine does alone with
its default threads (two for ONNX Runtime here) and with one.

Where a goal is missed, the rows that show why: the floor rows are a grpcio server that
does no model work (its server CPU per request = server CPU / images/s); the server rows'
CPU per request minus the floor's is what the embedded server's Python (handler, checks,
tensor conversion, batcher hand-off, metrics) costs per request; the model's own cost is
the in-process variant with one thread. BENCHMARKS.md (Serving) works these out for the
run it reports."""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement window per point")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--render", action="store_true", help=f"only rewrite {os.path.relpath(DOC, REPO)} from {os.path.relpath(RESULTS, REPO)}")
    args = parser.parse_args(argv)
    if args.render:
        with open(RESULTS) as f:
            result = json.load(f)
        text = markdown(result, result["command"])
        with open(DOC, "w") as f:
            f.write(text)
        print(text)
        return 0
    command = "python bench/serving_bench.py" + "".join(f" {a}" for a in (argv if argv is not None else sys.argv[1:]))
    import psutil

    result = {"machine": f"{psutil.cpu_count()} CPU cores, {platform.python_implementation()} {platform.python_version()}",
              "seconds": args.seconds, "batching_parameters": BATCHING_TEXT, "server_flags": list(SERVER_FLAGS), "models": {},
              "load_average_at_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as root:
        paths = {name: base for name, base in export_models(root).items() if name in args.models}
        for name in paths:
            print(f"[bench] in-process {name}", flush=True)
            result["models"][name] = {"in_process_runs": [measure_in_process(os.path.join(paths[name], "1"), MODELS[name], args.seconds)], "server": {}}
        config = write_config(paths, root)
        batching_file = os.path.join(root, "batching.txt")
        with open(batching_file, "w") as f:
            f.write(BATCHING_TEXT)
        for backend, mode in [(b, m) for b in BACKENDS for m in SERVER_MODES]:
            server = start_server(config, mode == "batching_on", batching_file, list(paths),
                                  os.path.join(root, f"server-{backend}-{mode}.log"), backend=backend)
            port, rest_port = server.port, server.rest_port
            try:
                for name in paths:
                    request = one_image_request(name, MODELS[name])
                    points = {}
                    for clients in SERVER_MODES[mode]:
                        print(f"[bench] {name} {backend} {mode} clients={clients}", flush=True)
                        before = batch_counters(rest_port, name)
                        points[str(clients)] = point = run_load(f"127.0.0.1:{port}", request, clients, args.seconds, server.pid)
                        batches, rows = (after - start for after, start in zip(batch_counters(rest_port, name), before))
                        point["mean_batch_rows"] = rows / batches if batches else 1.0
                    result["models"][name]["server"].setdefault(backend, {})[mode] = points
            finally:
                server.stop(grace_seconds=60)
        for name in paths:  # gRPC alone, with this model's request and response sizes
            print(f"[bench] grpcio floor {name}", flush=True)
            request = one_image_request(name, MODELS[name])
            response = model_response(os.path.join(paths[name], "1"), request)
            result["models"][name]["grpc_floor"] = measure_grpc_floor(response, request, args.seconds)
        for name in paths:  # again after the server runs: other load on the machine drifts
            print(f"[bench] in-process {name} (again)", flush=True)
            model = result["models"][name]
            model["in_process_runs"].append(measure_in_process(os.path.join(paths[name], "1"), MODELS[name], args.seconds))
            model["in_process"] = in_process_reference(model["in_process_runs"])
    result["load_average_at_end"] = os.getloadavg()[0]  # includes this benchmark's own processes
    result["ratios"] = ratios(result)
    result["command"] = command
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump(result, f, indent=2)
    text = markdown(result, command)
    os.makedirs(os.path.dirname(DOC), exist_ok=True)
    with open(DOC, "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
