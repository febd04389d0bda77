"""Prometheus metrics: requests, latency and errors by model, version, method and code.

Each server has its own registry (several servers can live in one test process). The
text exposition is served on the REST port at /monitoring/prometheus/metrics and, with
--monitoring_port, on a port of its own.

    metrics = ServingMetrics(manager)
    with metrics.track("digits", "Predict") as call:
        call.version = 3
        ...                                   # raise ServingError to count an error
    text = metrics.exposition()
"""
from __future__ import annotations

import threading
import time

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from serving.server.errors import ServingError

CONTENT_TYPE = CONTENT_TYPE_LATEST
_UNKNOWN = "-"
# Latency buckets from 100 us to 10 s: the interesting range for a CPU model server.
_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class _Call:
    __slots__ = ("version",)

    def __init__(self):
        self.version = None


class ServingMetrics:
    """Counters and histograms for one server.

    Args:
        manager: the ModelManager, to report available versions and to keep label values
            to served models (an unknown name from a request is recorded as "-").
    """

    def __init__(self, manager):
        self._manager = manager
        self.registry = CollectorRegistry()
        labels = ("model", "version", "method")
        self.requests = Counter("serving_requests", "Requests handled", (*labels, "code"), registry=self.registry)
        self.errors = Counter("serving_request_errors", "Requests that failed", (*labels, "code"), registry=self.registry)
        self.latency = Histogram("serving_request_latency_seconds", "Request latency", labels, buckets=_BUCKETS, registry=self.registry)
        self.versions = Gauge("serving_model_versions_available", "Available versions per model", ("model",), registry=self.registry)
        self._children = {}
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        Gauge("serving_requests_in_flight", "Requests being handled", registry=self.registry).set_function(self.inflight)
        self.registry.register(_BatchingCollector(manager))

    def inflight(self) -> int:
        return self._inflight

    def _enter(self) -> None:
        with self._inflight_lock:
            self._inflight += 1

    def _leave(self) -> None:
        with self._inflight_lock:
            self._inflight -= 1

    def track(self, model: str, method: str) -> "_Tracker":
        return _Tracker(self, model, method)

    def record(self, model: str, version, method: str, code: grpc.StatusCode, seconds: float) -> None:
        if not self._manager.has_model(model):
            model = _UNKNOWN
        key = (model, version, method, code)
        children = self._children.get(key)
        if children is None:  # label lookups cost microseconds; cache the children
            version_label = _UNKNOWN if version is None else str(version)
            labels = (model, version_label, method)
            children = (
                self.requests.labels(*labels, code.name),
                self.latency.labels(*labels),
                self.errors.labels(*labels, code.name) if code != grpc.StatusCode.OK else None,
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if children[2] is not None:
            children[2].inc()

    def exposition(self) -> bytes:
        for model, versions in self._manager.available_versions().items():
            self.versions.labels(model).set(len(versions))
        return generate_latest(self.registry)


class _BatchingCollector:
    """Batches run and rows batched, per model/version/signature (mean batch = rows / batches), and backends."""

    def __init__(self, manager):
        self._manager = manager

    def collect(self):
        batches = CounterMetricFamily("serving_batches", "Signature calls made by the batcher", labels=("model", "version", "signature"))
        rows = CounterMetricFamily("serving_batched_rows", "Rows run through the batcher", labels=("model", "version", "signature"))
        for version in self._manager.loaded_versions():
            for name, signature in sorted(version.signatures.items()):
                if signature.batcher is not None:
                    labels = (version.name, str(version.version), name)
                    batches.add_metric(labels, signature.batcher.batches_run)
                    rows.add_metric(labels, signature.batcher.rows_run)
        yield batches
        yield rows
        backends = GaugeMetricFamily("serving_signature_backend", "1 for the backend serving each signature of each version",
                                     labels=("model", "version", "signature", "backend"))
        for version in self._manager.loaded_versions():
            for name, signature in sorted(version.signatures.items()):
                backends.add_metric((version.name, str(version.version), name, signature.backend.name), 1)
        yield backends


class _Tracker:
    """Context manager: times a call and records its outcome (OK, or the error's code)."""

    __slots__ = ("_metrics", "_model", "_method", "_start", "call")

    def __init__(self, metrics: ServingMetrics, model: str, method: str):
        self._metrics, self._model, self._method = metrics, model, method
        self.call = _Call()

    def __enter__(self) -> _Call:
        self._metrics._enter()
        self._start = time.perf_counter()
        return self.call

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            code = grpc.StatusCode.OK
        elif isinstance(exc, ServingError):
            code = exc.code
        else:
            code = grpc.StatusCode.INTERNAL
        self._metrics.record(self._model, self.call.version, self._method, code, time.perf_counter() - self._start)
        self._metrics._leave()
        return False
