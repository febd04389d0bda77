"""The embedded model server: gRPC + REST + metrics + health around one ModelManager.

    with ModelServer(ServerOptions(model_name="digits", model_base_path="runs/serving/digits",
                                   port=0, rest_api_port=-1)) as server:
        print(server.grpc_port, server.rest_port)   # ephemeral ports, loaded models
        server.wait_for_termination()

`start()` loads the configured models first (like tensorflow_model_server), then binds
the ports. Health (gRPC `grpc.health.v1`, and `ready()` for REST) is SERVING only while
every configured model has an AVAILABLE version. `reload_config()` (the ModelService
reload RPC) only accepts base paths under `allowed_roots` and can be turned off.
`stop()` is graceful: health turns NOT_SERVING, no new RPCs are accepted, in-flight ones
get `shutdown_grace_seconds` to finish.
"""
from __future__ import annotations

import concurrent.futures
import logging
import os
import ssl
import threading

import grpc
from google.protobuf import text_format
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

from serving.server.backends import BackendOptions
from serving.server.batching import BatchingOptions
from serving.server.errors import ServingError
from serving.server.grpc_services import ModelServicer, PredictionServicer
from serving.server.kserve import KServeOptions, add_kserve_grpc
from serving.server.kserve.rest_routes import KServeRestApi
from serving.server.metrics import ServingMetrics
from serving.server.model_manager import ManagerOptions, ModelManager, single_model_config
from serving.server.options import ServerOptions
from serving.server.paths import allowed_roots
from serving.server.request_log import (
    RequestLogCollector, RequestLogLimits, ServerRequestLogger, flags_logging_config, logging_configs,
)
from serving.server.rest import METRICS_PATH, make_rest_server

_log = logging.getLogger(__name__)
HEALTH_SERVICES = ("", "tensorflow.serving.PredictionService", "tensorflow.serving.ModelService")
# Services that need a loaded version of every model; ModelService (status, reload) works without.
READINESS_SERVICES = ("", "tensorflow.serving.PredictionService")


def read_model_config(path: str) -> model_server_config_pb2.ModelServerConfig:
    """Parses a ModelServerConfig text proto (--model_config_file); errors name the file and line."""
    config = model_server_config_pb2.ModelServerConfig()
    try:
        with open(path) as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read --model_config_file {path}: {error}") from None
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        line, column = error.GetLine(), error.GetColumn()
        where = f"{path}:{line}:{column}" if line else path
        raise ValueError(f"{where}: invalid ModelServerConfig text proto (--model_config_file): {error}") from None
    return config


def _metrics_path(options: ServerOptions) -> bool:
    """Whether the REST port serves metrics: yes, unless a MonitoringConfig disables it."""
    if not options.monitoring_config_file:
        return True
    from serving.tfs_protos import MonitoringConfig

    config = MonitoringConfig()
    with open(options.monitoring_config_file) as f:
        text_format.Parse(f.read(), config)
    if config.prometheus_config.path not in ("", METRICS_PATH):
        raise ValueError(f"the embedded server serves metrics at {METRICS_PATH}; set prometheus_config.path to it")
    return config.prometheus_config.enable


def _batching(options: ServerOptions) -> BatchingOptions | None:
    if not options.enable_batching:
        return None
    if options.batching_parameters_file:
        return BatchingOptions.from_file(options.batching_parameters_file)
    return BatchingOptions()


def grpc_server_options(options: ServerOptions) -> list:
    """gRPC server arguments: message sizes, no port sharing, then --grpc_channel_arguments (which win)."""
    size = options.grpc_max_message_bytes
    defaults = {
        "grpc.max_send_message_length": size,
        "grpc.max_receive_message_length": size,
        "grpc.so_reuseport": 0,  # a second server on the same port must fail, not share it
    }
    given = options.channel_arguments
    overridden = {key for key, _ in given}
    return [(key, value) for key, value in defaults.items() if key not in overridden] + given


def backend_options(options: ServerOptions) -> BackendOptions:
    """--backend; ONNX Runtime threads: --onnxruntime_intra_op_threads, else TF's intra-op flag."""
    threads = options.onnxruntime_intra_op_threads or options.tensorflow_intra_op_parallelism
    return BackendOptions(mode=options.backend, onnxruntime_intra_op_threads=threads)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ModelServer:
    """A TF Serving-compatible server in this process.

    Args:
        options: a `ServerOptions` (the `serve` command's flags).
        manager_options: overrides the ModelManager options derived from `options`.
    """

    def __init__(self, options: ServerOptions, manager_options: ManagerOptions | None = None):
        self.options = options
        self._metrics_on_rest = _metrics_path(options)
        self.manager = ModelManager(manager_options or ManagerOptions(
            file_system_poll_wait_seconds=options.file_system_poll_wait_seconds,
            max_num_load_retries=options.max_num_load_retries,
            load_retry_interval_seconds=options.load_retry_interval_micros / 1e6,
            batching=_batching(options),
            enable_model_warmup=options.enable_model_warmup,
            max_tensor_bytes=4 * options.grpc_max_message_bytes,
            max_request_rows=options.max_request_rows,
            load_budget_seconds=options.load_budget_seconds,
            enable_signature_method_name_check=options.enable_signature_method_name_check,
            prefer_tflite_model=options.prefer_tflite_model,
            allow_version_labels_for_unavailable_models=options.allow_version_labels_for_unavailable_models,
            backends=backend_options(options),
        ))
        self.metrics = ServingMetrics(self.manager)
        self._grpc = None
        self._health = None
        self._http = []  # (RestServer, thread)
        self._config_thread = None
        self._applied_config = b""
        self._stopped = threading.Event()
        self.grpc_port = self.rest_port = self.monitoring_port = None
        self.allowed_roots: tuple = ()  # set by start(): where reloads may point
        self._was_ready = None
        self.manager.add_listener(self._update_health)
        self.request_logger = None

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> "ModelServer":
        self._configure_tf_threads()
        extra_roots = allowed_roots((), self.options.allowed_model_base_path_roots)  # bad flag: fail before loading
        config = self._model_config()
        self.manager.configure(config)
        self._applied_config = config.SerializeToString()  # the config file poll compares against this
        self.allowed_roots = tuple(sorted(set(extra_roots) | set(self.manager.base_paths().values())))
        self.request_logger = ServerRequestLogger(self._request_log_configs(config), RequestLogLimits(
            max_file_bytes=self.options.request_log_max_file_bytes, max_files=self.options.request_log_max_files,
            max_total_bytes=self.options.request_log_max_files * self.options.request_log_max_file_bytes,
            queue_size=self.options.request_log_queue_size))
        self.metrics.registry.register(RequestLogCollector(self.request_logger))
        self.manager.start()
        self._start_grpc()
        tls = self._ssl_context()
        if self.options.rest_api_port:
            self.rest_port = self._start_http(self.options.rest_api_port, tls, metrics_only=False)
        if self.options.monitoring_port:
            self.monitoring_port = self._start_http(self.options.monitoring_port, tls, metrics_only=True)
        if self.options.model_config_file and self.options.model_config_file_poll_wait_seconds > 0:
            self._config_thread = threading.Thread(target=self._watch_config_file, name="config-file-poller", daemon=True)
            self._config_thread.start()
        _log.info("serving %s on gRPC %s (REST %s)", self.manager.model_names, self.grpc_port, self.rest_port)
        return self

    def stop(self, grace: float | None = None) -> None:
        """Graceful stop: refuse new requests, let in-flight ones finish, then unload."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace = self.options.shutdown_grace_seconds if grace is None else grace
        if self._health is not None:
            self._health.enter_graceful_shutdown()
        for http, _ in self._http:
            http.shutdown()  # stops accepting; running handlers continue
        done = self._grpc.stop(grace) if self._grpc is not None else None
        for http, _ in self._http:
            http.drain(grace)
            http.server_close()
        if done is not None:
            done.wait(grace + 1)
        if self.request_logger is not None:
            self.request_logger.close(timeout=max(grace, 1.0))  # writes what was queued
        self.manager.stop()
        _log.info("server stopped")

    # -- reload and readiness --------------------------------------------------------
    def reload_config(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        """ModelService.HandleReloadConfigRequest: UNIMPLEMENTED when reloads are off,
        PERMISSION_DENIED for a base path outside `allowed_roots`, else `manager.configure`."""
        if not self.options.enable_model_config_reload:
            raise ServingError.unimplemented(
                "HandleReloadConfigRequest is disabled on this server (--enable_model_config_reload=false); "
                "change the models by editing --model_config_file or restarting the server"
            )
        try:
            log_configs = self._request_log_configs(config)  # a bad logging_config changes nothing
        except ValueError as error:
            raise ServingError.invalid_argument(f"logging_config: {error}") from None
        self.manager.configure(config, allowed_roots=self.allowed_roots)
        if self.request_logger is not None:
            self.request_logger.update(log_configs)

    def ready(self) -> tuple:
        """(True, "") when every configured model has an AVAILABLE version, else (False, why).

        The REST readiness endpoint should answer 200 / 503 from this."""
        if self._stopped.is_set():
            return False, "the server is shutting down"
        missing = self.manager.not_ready_models()
        if missing:
            return False, f"no version of model(s) {missing} is available; see GetModelStatus for load errors"
        return True, ""

    def _update_health(self) -> None:
        if self._health is None:
            return
        from grpc_health.v1 import health_pb2

        ready, why = self.ready()
        status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in READINESS_SERVICES:
            self._health.set(service, status)  # ignored once graceful shutdown began
        if ready != self._was_ready:
            self._was_ready = ready
            _log.log(logging.INFO if ready else logging.WARNING, "health %s%s", "SERVING" if ready else "NOT_SERVING: ", why)

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop(grace=1.0)

    # -- parts -----------------------------------------------------------------------
    def _configure_tf_threads(self) -> None:
        import tensorflow as tf

        try:
            if self.options.intra_op_threads:
                tf.config.threading.set_intra_op_parallelism_threads(self.options.intra_op_threads)
            if self.options.inter_op_threads:
                tf.config.threading.set_inter_op_parallelism_threads(self.options.inter_op_threads)
        except RuntimeError as error:  # TF already initialized in this process (tests)
            _log.warning("TF thread settings ignored: %s", error)

    def _model_config(self) -> model_server_config_pb2.ModelServerConfig:
        if self.options.model_config_file:
            return read_model_config(self.options.model_config_file)
        return single_model_config(self.options.model_name, self.options.model_base_path)

    def _watch_config_file(self) -> None:
        last = self._applied_config  # not re-read here: a change made before this thread ran must count
        while not self._stopped.wait(self.options.model_config_file_poll_wait_seconds):
            try:
                config = self._model_config()
                if config.SerializeToString() != last:
                    self.manager.configure(config)
                    self._update_request_log(config)
                    last = config.SerializeToString()
                    _log.info("applied the changed %s", self.options.model_config_file)
            except Exception as error:  # noqa: BLE001  (keep serving the previous config)
                _log.error("not applying %s: %s", self.options.model_config_file, error)

    def _request_log_configs(self, config) -> dict:
        """models.config logging_configs; --request_log_dir covers the models without one."""
        configs = logging_configs(config)
        if self.options.request_log_dir:
            for model in config.model_config_list.config:
                configs.setdefault(model.name, flags_logging_config(
                    model.name, self.options.request_log_dir, self.options.request_log_sampling_rate))
        return configs

    def _update_request_log(self, config) -> None:
        if self.request_logger is not None:
            self.request_logger.update(self._request_log_configs(config))

    def _start_grpc(self) -> None:
        self._grpc = grpc.server(
            concurrent.futures.ThreadPoolExecutor(max_workers=self.options.grpc_max_threads, thread_name_prefix="grpc"),
            options=grpc_server_options(self.options),
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(self.manager, self.metrics, self.request_logger), self._grpc)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(self.manager, self.metrics, reload=self.reload_config), self._grpc)
        add_kserve_grpc(self._grpc, self.manager, self.metrics, KServeOptions.parse(self.options.kserve_signature_def))
        self._add_health()
        address = _host_port(self.options.host, self.options.port)
        if self.options.ssl_cert:
            with open(self.options.ssl_key, "rb") as key, open(self.options.ssl_cert, "rb") as cert:
                credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
            self.grpc_port = self._grpc.add_secure_port(address, credentials)
        else:
            self.grpc_port = self._grpc.add_insecure_port(address)
        if self.options.grpc_socket_path:  # TF Serving's gRPC on a Unix socket, beside the TCP port
            socket_path = os.path.abspath(self.options.grpc_socket_path)
            if not self._grpc.add_insecure_port(f"unix:{socket_path}"):
                raise OSError(f"cannot listen on --grpc_socket_path {socket_path}; check that its directory exists and is writable")
        self._grpc.start()

    def _add_health(self) -> None:
        try:
            from grpc_health.v1 import health, health_pb2, health_pb2_grpc
        except ImportError:
            _log.warning("grpcio-health-checking is not installed: no grpc.health.v1 service")
            return
        self._health = health.HealthServicer()
        for service in HEALTH_SERVICES:
            self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        self._update_health()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._grpc)

    def _ssl_context(self):
        if not self.options.ssl_cert:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.options.ssl_cert, self.options.ssl_key)
        return context

    def _start_http(self, port: int, tls, metrics_only: bool) -> int:
        server = make_rest_server(
            self.options.host, max(port, 0), self.manager, self.metrics,  # port -1 = any free port
            max_body_bytes=self.options.max_body_bytes,
            metrics_path_enabled=self._metrics_on_rest or metrics_only,
            metrics_only=metrics_only, ssl_context=tls, request_logger=self.request_logger, num_threads=self.options.rest_api_num_threads,
            body_timeout=self.options.rest_api_timeout_in_ms / 1000, call_timeout=self.options.rest_api_timeout_in_ms / 1000,
            kserve=None if metrics_only else KServeRestApi(
                self.manager, metrics=self.metrics, options=KServeOptions.parse(self.options.kserve_signature_def), ready=self.ready),
        )
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="rest", daemon=True)
        thread.start()
        self._http.append((server, thread))
        return server.port
