"""In-process timing of inference engines: batch-1 latency and large-batch images/s.

Engines are interleaved round by round, so load from other processes on a shared machine
hits all of them alike; every loop is bounded in iterations and seconds.

    rows = time_engines({"tensorflow": tf_predict, "onnxruntime": ort_predict}, images,
                        latency_iters=200, throughput_batch=256, throughput_seconds=1.0)
    rows["onnxruntime"]["p50_ms_batch1"], rows["onnxruntime"]["images_per_s_batch256"]
    speedups(rows["tensorflow"], rows["onnxruntime"], 256)   # {"1": 12.3, "256": 1.7}
"""
from __future__ import annotations

import time
from typing import Callable, Mapping

import numpy as np

MAX_THROUGHPUT_CALLS_PER_ROUND = 10_000


def time_engines(engines: Mapping[str, Callable], inputs: np.ndarray, *, latency_iters: int, throughput_batch: int, throughput_seconds: float, rounds: int = 10, warmup: int = 20) -> dict[str, dict]:
    """p50/p95 latency (ms) at batch 1 and images/s at `throughput_batch`, per engine."""
    batch = np.resize(inputs, (throughput_batch, *inputs.shape[1:]))
    for predict in engines.values():  # graph tracing, kernel selection, allocator
        for _ in range(warmup):
            predict(inputs[:1])
        predict(batch)
    latencies = {name: [] for name in engines}
    counted = {name: [0, 0.0] for name in engines}  # images, seconds
    for r in range(rounds):
        for name, predict in engines.items():
            for i in range(r, latency_iters, rounds):
                start = time.perf_counter()
                predict(inputs[i % len(inputs) : i % len(inputs) + 1])
                latencies[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            for _ in range(MAX_THROUGHPUT_CALLS_PER_ROUND):
                predict(batch)
                counted[name][0] += throughput_batch
                if time.perf_counter() - start >= throughput_seconds / rounds:
                    break
            counted[name][1] += time.perf_counter() - start
    return {
        name: {
            "p50_ms_batch1": 1000 * float(np.percentile(latencies[name], 50)),
            "p95_ms_batch1": 1000 * float(np.percentile(latencies[name], 95)),
            f"images_per_s_batch{throughput_batch}": counted[name][0] / counted[name][1],
        }
        for name in engines
    }


def speedups(original: Mapping[str, float], optimized: Mapping[str, float], large_batch: int) -> dict[str, float]:
    """{"1": batch-1 p50 ratio, "<large>": images/s ratio}; > 1 means the optimized one is faster."""
    key = f"images_per_s_batch{large_batch}"
    return {"1": original["p50_ms_batch1"] / optimized["p50_ms_batch1"], str(large_batch): optimized[key] / original[key]}
