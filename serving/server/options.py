"""`python -m serving serve` flags, named after tensorflow_model_server's where they overlap.

    options = ServerOptions(model_name="digits", model_base_path="runs/serving/digits", port=0)
    parser = argparse.ArgumentParser(); add_arguments(parser)
    options = options_from_args(parser.parse_args(["--model_name=digits", "--model_base_path=/m"]))
"""
from __future__ import annotations

import argparse
import dataclasses

from serving.server.tfs_flags import add_tfs_flags, parse_bool as _bool, parse_grpc_channel_arguments

DEFAULT_MAX_MESSAGE_BYTES = 16 << 20
# Request limits (ours: TF Serving has none). 65536 rows is 1024 batches of the default
# max_batch_size (64) and far above any online request; one value can fill a TensorProto's
# whole shape, so without a limit a 139-byte request describes a million rows.
DEFAULT_MAX_REQUEST_ROWS = 65536
BACKENDS = ("auto", "tensorflow", "onnxruntime")  # serving/server/backends


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    """Everything `ModelServer` needs; see `add_arguments` for each field's meaning.

    Ports: gRPC `port=0` binds a free port; `rest_api_port`/`monitoring_port` 0 means off
    (as in tensorflow_model_server) and -1 binds a free port. `ModelServer` reports the
    bound ports.
    """

    host: str = "127.0.0.1"
    port: int = 8500
    rest_api_port: int = 0
    monitoring_port: int = 0
    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: float = 0.0
    file_system_poll_wait_seconds: float = 1.0
    enable_batching: bool = True
    batching_parameters_file: str = ""
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 1_000_000
    enable_model_warmup: bool = True
    grpc_max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    rest_api_max_body_bytes: int = 0  # 0 = grpc_max_message_bytes
    grpc_max_threads: int = 32
    ssl_cert: str = ""
    ssl_key: str = ""
    monitoring_config_file: str = ""
    shutdown_grace_seconds: float = 10.0
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    engine: str = "embedded"
    kserve_signature_def: str = ""  # KServe v2: SIG or MODEL=SIG,... ("" = serving_default)
    max_request_rows: int = DEFAULT_MAX_REQUEST_ROWS
    # Reload API and loading bounds (not tensorflow_model_server flags; see docs/serving-server.md).
    enable_model_config_reload: bool = True
    allowed_model_base_path_roots: str = ""  # comma-separated; start-up base paths are always allowed
    load_budget_seconds: float = 30.0
    request_log_dir: str = ""  # "" = no request log (a models.config logging_config still applies)
    request_log_sampling_rate: float = 1.0
    request_log_max_file_bytes: int = 64 << 20
    request_log_max_files: int = 64
    request_log_queue_size: int = 1024
    # TF Serving flags added by tfs_flags.TFS_FLAGS (see there for each one's meaning).
    grpc_socket_path: str = ""
    grpc_channel_arguments: str = ""
    rest_api_num_threads: int = 0  # 0 = 4 x CPUs
    rest_api_timeout_in_ms: int = 30000
    tensorflow_session_parallelism: int = 0
    enable_signature_method_name_check: bool = False
    allow_version_labels_for_unavailable_models: bool = False
    prefer_tflite_model: bool = False
    # Backends (this server's; see serving/server/backends and docs/serving-server.md).
    backend: str = "auto"  # auto | tensorflow | onnxruntime
    onnxruntime_intra_op_threads: int = 0  # 0 = --tensorflow_intra_op_parallelism if set, else ONNX Runtime's default

    def __post_init__(self):
        for name, lowest in (("port", 0), ("rest_api_port", -1), ("monitoring_port", -1)):
            value = getattr(self, name)
            if not lowest <= value <= 65535:
                raise ValueError(f"--{name}={value} is not a TCP port; use 0-65535 (see --help)")
        if bool(self.model_base_path) == bool(self.model_config_file):
            raise ValueError(
                "give exactly one model source: --model_name NAME --model_base_path DIR, or --model_config_file FILE"
            )
        if bool(self.ssl_cert) != bool(self.ssl_key):
            raise ValueError("TLS needs both --ssl_cert and --ssl_key (PEM files)")
        if self.grpc_max_message_bytes < 1024:
            raise ValueError(f"--grpc_max_message_bytes={self.grpc_max_message_bytes} is too small; use at least 1024")
        if self.grpc_max_threads < 1:
            raise ValueError("--grpc_max_threads must be >= 1")
        if self.max_request_rows < 1:
            raise ValueError(f"--max_request_rows={self.max_request_rows} must be >= 1")
        if not 0.0 <= self.request_log_sampling_rate <= 1.0:
            raise ValueError(f"--request_log_sampling_rate={self.request_log_sampling_rate}: use a number in [0, 1]")
        if self.engine not in ("embedded", "tfserving"):
            raise ValueError(f"--engine={self.engine!r}: use 'embedded' or 'tfserving'")
        if not self.load_budget_seconds > 0:
            raise ValueError(f"--load_budget_seconds={self.load_budget_seconds} must be > 0 (e.g. 30)")
        if self.rest_api_num_threads < 0:
            raise ValueError(f"--rest_api_num_threads={self.rest_api_num_threads} must be >= 0 (0 = 4 x CPUs)")
        if self.rest_api_timeout_in_ms <= 0:
            raise ValueError(f"--rest_api_timeout_in_ms={self.rest_api_timeout_in_ms} must be > 0 (TF Serving's default: 30000)")
        if self.backend not in BACKENDS:
            raise ValueError(f"--backend={self.backend!r}: use one of {', '.join(BACKENDS)}")
        if self.onnxruntime_intra_op_threads < 0:
            raise ValueError(f"--onnxruntime_intra_op_threads={self.onnxruntime_intra_op_threads} must be >= 0 (0 = default)")
        self.channel_arguments  # noqa: B018  (a malformed --grpc_channel_arguments fails here, before loading)

    @property
    def channel_arguments(self) -> list:
        """--grpc_channel_arguments as [(key, int or str)]."""
        return parse_grpc_channel_arguments(self.grpc_channel_arguments)

    @property
    def intra_op_threads(self) -> int:
        """--tensorflow_intra_op_parallelism, else --tensorflow_session_parallelism (TF Serving's precedence)."""
        return self.tensorflow_intra_op_parallelism or self.tensorflow_session_parallelism

    @property
    def inter_op_threads(self) -> int:
        return self.tensorflow_inter_op_parallelism or self.tensorflow_session_parallelism

    @property
    def max_body_bytes(self) -> int:
        return self.rest_api_max_body_bytes or self.grpc_max_message_bytes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = ServerOptions.__dataclass_fields__
    add = parser.add_argument
    add("--engine", choices=("embedded", "tfserving"), default=d["engine"].default,
        help="embedded: this Python server; tfserving: exec tensorflow_model_server with the same flags")
    add("--host", default=d["host"].default, help="address to bind (default 127.0.0.1; 0.0.0.0 exposes the server)")
    add("--port", type=int, default=d["port"].default, help="gRPC port (0 = pick a free port)")
    add("--rest_api_port", type=int, default=0, help="REST port (0 = no REST API, -1 = any free port)")
    add("--monitoring_port", type=int, default=0, help="port for Prometheus metrics only (0 = off, -1 = any free port; REST also serves them)")
    add("--model_name", default=d["model_name"].default, help="name clients use for the model")
    add("--model_base_path", default="", help="directory holding integer version directories")
    add("--model_config_file", default="", help="ModelServerConfig text proto (several models, policies, labels)")
    add("--model_config_file_poll_wait_seconds", type=float, default=0.0, help="re-read the config file this often (0 = never)")
    add("--file_system_poll_wait_seconds", type=float, default=d["file_system_poll_wait_seconds"].default,
        help="seconds between polls for new versions (0 = poll once at start)")
    add("--enable_batching", type=_bool, nargs="?", const=True, default=True,
        help="batch concurrent requests to signatures with a None batch dim (default true)")
    add("--batching_parameters_file", default="", help="BatchingParameters text proto")
    add("--max_num_load_retries", type=int, default=d["max_num_load_retries"].default, help="extra attempts to load a version")
    add("--load_retry_interval_micros", type=int, default=d["load_retry_interval_micros"].default, help="pause between load attempts")
    add("--enable_model_warmup", type=_bool, nargs="?", const=True, default=True,
        help="replay assets.extra/tf_serving_warmup_requests before serving a version")
    add("--grpc_max_message_bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES, help="max gRPC message size, both directions")
    add("--rest_api_max_body_bytes", type=int, default=0, help="max REST body (0 = --grpc_max_message_bytes)")
    add("--grpc_max_threads", type=int, default=d["grpc_max_threads"].default, help="gRPC handler threads")
    add("--ssl_cert", default="", help="PEM certificate chain: serve gRPC and REST over TLS")
    add("--ssl_key", default="", help="PEM private key for --ssl_cert")
    add("--monitoring_config_file", default="", help="MonitoringConfig text proto (Prometheus path on the REST port)")
    add("--shutdown_grace_seconds", type=float, default=d["shutdown_grace_seconds"].default,
        help="on SIGTERM, how long in-flight requests may take to finish")
    # Request size limits (this server's; TF Serving has none).
    add("--max_request_rows", type=int, default=DEFAULT_MAX_REQUEST_ROWS,
        help="most rows (dim 0 / tf.Examples) in one request; more is RESOURCE_EXHAUSTED. Materialized bytes "
             "are limited to 4x --grpc_max_message_bytes")
    add("--tensorflow_intra_op_parallelism", type=int, default=0, help="TF intra-op threads (0 = TF's default)")
    add("--request_log_dir", default="", help="log sampled requests as PredictionLog TFRecords under DIR/<model>/ (default off)")
    add("--request_log_sampling_rate", type=float, default=d["request_log_sampling_rate"].default,
        help="fraction of requests logged with --request_log_dir (0-1, default 1.0)")
    add("--request_log_max_file_bytes", type=int, default=d["request_log_max_file_bytes"].default, help="rotate a request-log file at this size")
    add("--request_log_max_files", type=int, default=d["request_log_max_files"].default,
        help="keep at most this many request-log files per model (oldest deleted; total also <= 16 x max_file_bytes)")
    add("--request_log_queue_size", type=int, default=d["request_log_queue_size"].default,
        help="calls waiting for the log writer; beyond it calls are dropped (counted), never delayed")
    add("--tensorflow_inter_op_parallelism", type=int, default=0, help="TF inter-op threads (0 = TF's default)")
    add("--kserve_signature_def", default="",
        help="signature the KServe v2 API exposes: SIG for every model, MODEL=SIG,... per model (default serving_default)")
    # Reload API and loading bounds (this server's own flags; tensorflow_model_server has none).
    add("--enable_model_config_reload", type=_bool, nargs="?", const=True, default=True,
        help="serve ModelService.HandleReloadConfigRequest (default true; false answers UNIMPLEMENTED)")
    add("--allowed_model_base_path_roots", default="",
        help="comma-separated directories a reload's base_path may be in, besides the start-up base paths "
             "(anything else gets PERMISSION_DENIED)")
    add("--load_budget_seconds", type=float, default=d["load_budget_seconds"].default,
        help="a poll or reload starts no new load or retry after this many seconds; later polls load the rest")
    add_tfs_flags(parser)  # every other tensorflow_model_server flag: implemented or accepted-and-ignored
    # Backends (this server's own flags; see docs/serving-server.md).
    add("--backend", choices=BACKENDS, default=d["backend"].default,
        help="auto: serve a version's gated optimized artifact (assets.extra/optimized) with ONNX Runtime, TensorFlow "
             "where it has none or it is invalid; tensorflow: never use it; onnxruntime: require it (versions "
             "without a valid artifact fail to load)")
    add("--onnxruntime_intra_op_threads", type=int, default=0,
        help="ONNX Runtime intra-op threads per session (0 = --tensorflow_intra_op_parallelism if set, else one per core)")


def options_from_args(args: argparse.Namespace) -> ServerOptions:
    names = set(ServerOptions.__dataclass_fields__)
    return ServerOptions(**{key: value for key, value in vars(args).items() if key in names})
