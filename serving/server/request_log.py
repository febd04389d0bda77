"""Sampled request logging: TF Serving's `logging_config`, PredictionLog records in TFRecord files.

Configuration is TF Serving's own: a `models.config` entry's
`logging_config { sampling_config { sampling_rate } log_collector_config { type, filename_prefix } }`
(type "tfrecord", or empty), or, for the single-model flags, `--request_log_dir` and
`--request_log_sampling_rate` (files under `<dir>/<model name>/`). Each sampled call becomes
one `tensorflow.serving.PredictionLog` (predict_log / classify_log / regress_log /
multi_inference_log with request and response; log_metadata with the answering model_spec,
the sampling_config, saved_model_tags and timestamp_secs), the format TF Serving's own
warmup files and log collectors use.

Off the request path: `log_*` only samples and appends to a bounded queue (references, no
copy or serialization); one writer thread builds and writes the records. When the queue is
full the record is dropped and counted; a request is never blocked or failed by logging.
Files rotate at `max_file_bytes`; per model, at most `max_files` files / `max_total_bytes`
stay on disk (oldest deleted, files left by earlier server processes included).

    logger = ServerRequestLogger.from_flags("digits", "/var/log/serving", sampling_rate=0.1)
    logger.log_predict(response.model_spec, request, response)     # after the response is computed
    logger.stats()   # {"logged": .., "dropped": .., "bytes_written": .., "files_deleted": ..}
    logger.close()
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import glob
import logging
import os
import queue
import random
import threading
import time

from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
from tensorflow_serving.config import logging_config_pb2

COLLECTOR_TYPES = ("", "tfrecord")  # "" = tfrecord; the only collector this server has
FILE_SUFFIX = ".tfrecord"
SAVED_MODEL_TAGS = ("serve",)
LOG_KINDS = ("predict_log", "classify_log", "regress_log", "multi_inference_log")
_RECORD_OVERHEAD = 16  # TFRecord framing: length (8) + two masked CRC32C (4 + 4)
_log = logging.getLogger(__name__)


class RequestLogConfigError(ValueError):
    """A bad logging_config / request-log flag; the message names the field and the fix."""


@dataclasses.dataclass(frozen=True)
class RequestLogLimits:
    """Bounds shared by every model's log: file rotation, disk use and the in-memory queue."""

    max_file_bytes: int = 64 << 20
    max_files: int = 64
    max_total_bytes: int = 1 << 30
    queue_size: int = 1024

    def __post_init__(self):
        for name, lowest in (("max_file_bytes", 1024), ("max_files", 1), ("max_total_bytes", 1024), ("queue_size", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
                raise RequestLogConfigError(f"request log {name}={value!r}: use an integer >= {lowest}")
        if self.max_total_bytes < self.max_file_bytes:
            raise RequestLogConfigError(
                f"request log max_total_bytes={self.max_total_bytes} is below max_file_bytes={self.max_file_bytes}; "
                "raise max_total_bytes or lower max_file_bytes")


def validate_logging_config(model_name: str, config: logging_config_pb2.LoggingConfig) -> logging_config_pb2.LoggingConfig:
    """Checks a model's LoggingConfig as TF Serving would, with an error naming the field."""
    rate = config.sampling_config.sampling_rate
    if not 0.0 <= rate <= 1.0:
        raise RequestLogConfigError(f"model {model_name!r}: logging_config.sampling_config.sampling_rate={rate}; valid range is [0, 1.0]")
    kind = config.log_collector_config.type
    if kind not in COLLECTOR_TYPES:
        raise RequestLogConfigError(f"model {model_name!r}: logging_config.log_collector_config.type={kind!r} has no log collector; "
                                    "use type: \"tfrecord\"")
    if not config.log_collector_config.filename_prefix:
        raise RequestLogConfigError(f"model {model_name!r}: logging_config.log_collector_config.filename_prefix is empty; "
                                    "set it to a path prefix such as \"/var/log/serving/digits/requests\"")
    return config


def flags_logging_config(model_name: str, log_dir: str, sampling_rate: float) -> logging_config_pb2.LoggingConfig:
    """The LoggingConfig that `--request_log_dir DIR --request_log_sampling_rate R` mean: files `DIR/<model>/requests-*`."""
    config = logging_config_pb2.LoggingConfig()
    config.sampling_config.sampling_rate = sampling_rate
    config.log_collector_config.type = "tfrecord"
    config.log_collector_config.filename_prefix = os.path.join(log_dir, model_name, "requests")
    return validate_logging_config(model_name, config)


def logging_configs(config) -> dict[str, logging_config_pb2.LoggingConfig]:
    """Model name -> LoggingConfig of the entries of a ModelServerConfig that have one."""
    return {m.name: m.logging_config for m in config.model_config_list.config if m.HasField("logging_config")}


class _FileSink:
    """One model's rotated TFRecord files `<prefix>-<UTC start>-<pid>-<seq>.tfrecord` (writer thread only)."""

    def __init__(self, prefix: str, limits: RequestLogLimits, on_delete):
        self.prefix = os.path.abspath(prefix)
        self._limits, self._on_delete = limits, on_delete
        self._writer, self._path, self._size, self._seq = None, None, 0, 0

    def files(self) -> list[str]:
        """This prefix's log files, oldest first (names sort by start time)."""
        return sorted(glob.glob(glob.escape(self.prefix) + "-*" + FILE_SUFFIX))

    def write(self, record: bytes) -> int:
        import tensorflow as tf  # the stock TFRecord writer; imported by the writer thread only

        size = len(record) + _RECORD_OVERHEAD
        if self._writer is not None and self._size + size > self._limits.max_file_bytes:
            self.close()
        if self._writer is None:
            stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
            self._path = f"{self.prefix}-{stamp}-{os.getpid()}-{self._seq:05d}{FILE_SUFFIX}"
            self._seq += 1
            os.makedirs(os.path.dirname(self.prefix), exist_ok=True)
            self._enforce_disk_bound(reserve=1)
            self._writer, self._size = tf.io.TFRecordWriter(self._path), 0
        self._writer.write(record)
        self._size += size
        return size

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            self._enforce_disk_bound(reserve=0)

    def _enforce_disk_bound(self, reserve: int) -> None:
        """Deletes the oldest closed files until `reserve` more files fit in max_files / max_total_bytes."""
        files = [f for f in self.files() if f != self._path or self._writer is None]
        sizes = {f: _size(f) for f in files}
        budget = self._limits.max_total_bytes - (self._limits.max_file_bytes if reserve else 0)
        while files and (len(files) + reserve > self._limits.max_files or sum(sizes[f] for f in files) > budget):
            oldest = files.pop(0)
            try:
                os.remove(oldest)
                self._on_delete()
            except OSError as error:
                _log.warning("request log: cannot delete %s: %s", oldest, error)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


class ServerRequestLogger:
    """Request logging for all models of one server: per-model sampling and files, one writer thread.

    Args:
        configs: model name -> LoggingConfig (models without an entry are not logged).
        limits: rotation, disk and queue bounds (RequestLogLimits).

        logger = ServerRequestLogger.from_model_server_config(model_server_config)
        logger.log_predict(response.model_spec, request, response)
    """

    def __init__(self, configs: dict[str, logging_config_pb2.LoggingConfig], limits: RequestLogLimits | None = None):
        self.limits = limits or RequestLogLimits()
        self._configs: dict[str, logging_config_pb2.LoggingConfig] = {}
        self.update(configs)
        self._sinks: dict[str, _FileSink] = {}  # by absolute filename prefix; writer thread only
        self._queue: queue.Queue = queue.Queue(maxsize=self.limits.queue_size)
        self.logged = self.dropped = self.bytes_written = self.files_deleted = self.write_errors = 0
        self._random = random.Random()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="request-log-writer", daemon=True)
        self._thread.start()

    def update(self, configs: dict[str, logging_config_pb2.LoggingConfig]) -> None:
        """New per-model configs (a reloaded models.config); calls already queued keep their old config."""
        checked = {name: validate_logging_config(name, config) for name, config in configs.items()}
        self._configs = checked  # one reference swap: request threads see the old or the new map

    @classmethod
    def from_flags(cls, model_name: str, log_dir: str, sampling_rate: float = 1.0, limits: RequestLogLimits | None = None):
        return cls({model_name: flags_logging_config(model_name, log_dir, sampling_rate)}, limits)

    @classmethod
    def from_model_server_config(cls, config, limits: RequestLogLimits | None = None):
        """From a ModelServerConfig: the models whose entry has a logging_config."""
        return cls(logging_configs(config), limits)

    @property
    def model_names(self) -> list[str]:
        return sorted(self._configs)

    # ------------------------------------------------------------------ request path

    def log_predict(self, model_spec, request, response) -> bool:
        return self._offer("predict_log", model_spec, request, response)

    def log_classify(self, model_spec, request, response) -> bool:
        return self._offer("classify_log", model_spec, request, response)

    def log_regress(self, model_spec, request, response) -> bool:
        return self._offer("regress_log", model_spec, request, response)

    def log_multi_inference(self, model_spec, request, response) -> bool:
        return self._offer("multi_inference_log", model_spec, request, response)

    def log_predict_arrays(self, model_spec, inputs: dict, outputs: dict) -> bool:
        """A REST :predict call, logged as the equivalent PredictRequest/PredictResponse.

        `inputs`/`outputs` are the name -> array dicts the REST handler fed / got from the
        signature; they are turned into TensorProtos on the writer thread.
        """
        return self._offer("predict_arrays", model_spec, inputs, outputs)

    def _offer(self, kind: str, model_spec, request, response) -> bool:
        """Samples and enqueues; never blocks. True when the call was queued for writing."""
        config = self._configs.get(model_spec.name)
        if config is None:
            return False
        rate = config.sampling_config.sampling_rate
        if not rate or (rate < 1.0 and self._random.random() >= rate):
            return False
        try:
            self._queue.put_nowait((kind, model_spec, request, response, int(time.time()), config))
            return True
        except queue.Full:
            self.dropped += 1  # one writer of this counter per request thread; a lost increment is tolerable
            return False

    # ------------------------------------------------------------------ writer thread

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=0.5)
            except queue.Empty:
                if self._stopping.is_set():
                    break
                continue
            batch = [item]
            while len(batch) < 256:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            touched = set()
            for kind, model_spec, request, response, stamp, config in batch:
                try:
                    record = self._record(kind, model_spec, request, response, stamp, config)
                    sink = self._sink(config.log_collector_config.filename_prefix)
                    self.bytes_written += sink.write(record)
                    touched.add(sink)
                    self.logged += 1
                except Exception as error:  # noqa: BLE001  (a bad record or a full disk must not kill logging)
                    self.write_errors += 1
                    _log.warning("request log: cannot write a %s record for %r: %s", kind, model_spec.name, error)
            for sink in touched:  # readers see whole records without waiting for rotation
                sink.flush()
            for _ in batch:
                self._queue.task_done()
        for sink in self._sinks.values():
            sink.close()

    def _sink(self, prefix: str) -> _FileSink:
        key = os.path.abspath(prefix)
        sink = self._sinks.get(key)
        if sink is None:
            sink = self._sinks[key] = _FileSink(key, self.limits, self._count_deleted)
        return sink

    @staticmethod
    def _record(kind, model_spec, request, response, stamp: int, config) -> bytes:
        log = prediction_log_pb2.PredictionLog()
        meta = log.log_metadata
        meta.model_spec.CopyFrom(model_spec)
        meta.sampling_config.CopyFrom(config.sampling_config)
        meta.saved_model_tags.extend(SAVED_MODEL_TAGS)
        meta.timestamp_secs = stamp
        if kind == "predict_arrays":
            request, response = _predict_protos(model_spec, request, response)
            kind = "predict_log"
        entry = getattr(log, kind)
        entry.request.CopyFrom(request)
        entry.response.CopyFrom(response)
        return log.SerializeToString()

    def _count_deleted(self) -> None:
        self.files_deleted += 1

    # ------------------------------------------------------------------ metrics and shutdown

    def stats(self) -> dict[str, int]:
        """Counters for the metrics registry: records logged/dropped, bytes written, files deleted."""
        return {"logged": self.logged, "dropped": self.dropped, "bytes_written": self.bytes_written,
                "files_deleted": self.files_deleted, "write_errors": self.write_errors, "queued": self._queue.qsize()}

    def files(self, model_name: str) -> list[str]:
        """The log files of `model_name`'s current filename_prefix, oldest first."""
        prefix = os.path.abspath(self._configs[model_name].log_collector_config.filename_prefix)
        return sorted(glob.glob(glob.escape(prefix) + "-*" + FILE_SUFFIX))

    def flush(self, timeout: float = 10.0) -> bool:
        """Waits (bounded) until everything queued so far is written; True when it was."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.01)
        return False

    def close(self, timeout: float = 10.0) -> None:
        """Writes what is queued (up to `timeout` seconds), closes the files, stops the thread."""
        self._stopping.set()
        self._thread.join(timeout)


class RequestLogCollector:
    """Prometheus counters of a ServerRequestLogger: `registry.register(RequestLogCollector(logger))`.

    serving_request_log_records_total{outcome="logged|dropped|write_error"},
    serving_request_log_bytes_written_total, serving_request_log_files_deleted_total.
    """

    def __init__(self, logger: ServerRequestLogger):
        self._logger = logger

    def collect(self):
        from prometheus_client.core import CounterMetricFamily

        stats = self._logger.stats()
        records = CounterMetricFamily("serving_request_log_records", "Sampled calls by outcome (dropped: the queue was full)",
                                      labels=("outcome",))
        for outcome, key in (("logged", "logged"), ("dropped", "dropped"), ("write_error", "write_errors")):
            records.add_metric((outcome,), stats[key])
        yield records
        yield CounterMetricFamily("serving_request_log_bytes_written", "Bytes written to request-log files",
                                  value=stats["bytes_written"])
        yield CounterMetricFamily("serving_request_log_files_deleted", "Request-log files deleted by the disk bound",
                                  value=stats["files_deleted"])


def _predict_protos(model_spec, inputs: dict, outputs: dict):
    import tensorflow as tf

    request = predict_pb2.PredictRequest()
    request.model_spec.CopyFrom(model_spec)  # pinned to the version that answered: replayable as is
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(model_spec)
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    for name, value in outputs.items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request, response


def model_spec(name: str, version: int | None = None, signature_name: str = "") -> model_pb2.ModelSpec:
    """A ModelSpec for callers that have a name and version only (tests, REST)."""
    spec = model_pb2.ModelSpec(name=name, signature_name=signature_name)
    if version is not None:
        spec.version.value = version
    return spec
