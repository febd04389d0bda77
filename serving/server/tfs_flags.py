"""Every flag of tensorflow_model_server 2.19/2.20, in one table: implemented here, or accepted and ignored.

The list is TF Serving's `tensorflow_serving/model_servers/main.cc` (defaults from its
`server.h` Options), so a deployment file written for TF Serving starts this server
unchanged. Flags marked IMPLEMENTED are served by `options.py`/`server.py`; IGNORED flags
parse (with TF Serving's syntax) and log one line saying why they do nothing here.

    parser = argparse.ArgumentParser(); add_arguments(parser)   # options.py, which calls add_tfs_flags
    args = parser.parse_args(["--rest_api_enable_cors_support=true"])
    log_ignored_flags(args)   # one warning: "--rest_api_enable_cors_support=True is accepted and ignored: ..."

Boolean flags take TF Serving's forms: `--flag`, `--flag=true`, `--flag=false` (also 1/0).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging

_log = logging.getLogger(__name__)

IMPLEMENTED, IGNORED = "implemented", "ignored"


def parse_bool(text: str) -> bool:
    """TF Serving's boolean flag values (tensorflow::Flag accepts true/false and 1/0)."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean; use true or false")


@dataclasses.dataclass(frozen=True)
class TfsFlag:
    """One tensorflow_model_server flag: its type and default there, and what it does here."""

    name: str
    type: type
    tfs_default: object
    status: str
    note: str  # implemented: what it does here; ignored: why it has no effect

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """Adds the flag unless options.py already defines it (with this server's default)."""
        option = f"--{self.name}"
        if option in parser._option_string_actions:  # pylint: disable=protected-access
            return
        # Ignored flags default to None, so only flags a user gave are logged.
        default = self.tfs_default if self.status == IMPLEMENTED else None
        if self.type is bool:
            parser.add_argument(option, type=parse_bool, nargs="?", const=True, default=default, help=self._help())
        else:
            parser.add_argument(option, type=self.type, default=default, help=self._help())

    def _help(self) -> str:
        prefix = "" if self.status == IMPLEMENTED else "TF Serving flag, accepted and ignored: "
        return f"{prefix}{self.note} (TF Serving default: {self.tfs_default!r})".replace("%", "%%")


def _flag(name, type_, default, status, note) -> TfsFlag:
    return TfsFlag(name, type_, default, status, note)


# Order and defaults as in tensorflow_model_server 2.19 main.cc / server.h.
TFS_FLAGS = (
    _flag("port", int, 8500, IMPLEMENTED, "gRPC port (0 here = pick a free port; TF Serving: 0 disables gRPC over TCP)"),
    _flag("grpc_socket_path", str, "", IMPLEMENTED, "also serve gRPC on this Unix socket path"),
    _flag("rest_api_port", int, 0, IMPLEMENTED, "REST port (0 = no REST API)"),
    _flag("rest_api_num_threads", int, 0, IMPLEMENTED, "REST worker threads (0 = 4 x CPUs, TF Serving's auto value)"),
    _flag("rest_api_timeout_in_ms", int, 30000, IMPLEMENTED,
          "REST deadline: the body must arrive and the call finish within it, else 408 / 504 DEADLINE_EXCEEDED"),
    _flag("rest_api_enable_cors_support", bool, False, IGNORED,
          "no CORS headers: the REST API is meant for servers, not browsers (put a proxy in front for CORS)"),
    _flag("enable_batching", bool, False, IMPLEMENTED, "batch concurrent requests (default true here)"),
    _flag("allow_version_labels_for_unavailable_models", bool, False, IMPLEMENTED,
          "let version_labels name versions that are not loaded (else FAILED_PRECONDITION, as TF Serving)"),
    _flag("batching_parameters_file", str, "", IMPLEMENTED, "BatchingParameters text proto"),
    _flag("enable_per_model_batching_parameters", bool, False, IGNORED,
          "one batching configuration for all models (--batching_parameters_file); per-model batching_params.pbtxt is not read"),
    _flag("model_config_file", str, "", IMPLEMENTED, "ModelServerConfig text proto"),
    _flag("model_config_file_poll_wait_seconds", int, 0, IMPLEMENTED, "re-read --model_config_file this often (0 = never)"),
    _flag("model_name", str, "default", IMPLEMENTED, "name of the model"),
    _flag("model_base_path", str, "", IMPLEMENTED, "directory of integer version directories"),
    _flag("num_load_threads", int, 0, IGNORED, "versions load one at a time, bounded by --load_budget_seconds"),
    _flag("num_unload_threads", int, 0, IGNORED, "unloading is dropping Python references; no thread pool is needed"),
    _flag("max_num_load_retries", int, 5, IMPLEMENTED, "extra attempts to load a version"),
    _flag("load_retry_interval_micros", int, 60_000_000, IMPLEMENTED, "pause between load attempts"),
    _flag("file_system_poll_wait_seconds", int, 1, IMPLEMENTED, "seconds between polls for new versions"),
    _flag("flush_filesystem_caches", bool, True, IGNORED, "TensorFlow's Python file systems keep no caches to flush"),
    _flag("tensorflow_session_parallelism", int, 0, IMPLEMENTED,
          "sets both intra- and inter-op threads (the specific flags win), as TF Serving does"),
    _flag("tensorflow_session_config_file", str, "", IGNORED,
          "no ConfigProto is applied: TF2 eager runtime; use the parallelism flags"),
    _flag("tensorflow_intra_op_parallelism", int, 0, IMPLEMENTED, "TF intra-op threads (0 = TF's default)"),
    _flag("tensorflow_inter_op_parallelism", int, 0, IMPLEMENTED, "TF inter-op threads (0 = TF's default)"),
    _flag("use_alts_credentials", bool, False, IGNORED, "ALTS only works on Google Cloud; use --ssl_cert/--ssl_key"),
    _flag("ssl_config_file", str, "", IGNORED, "use --ssl_cert/--ssl_key (PEM files) for TLS on gRPC and REST"),
    _flag("platform_config_file", str, "", IGNORED, "only the TensorFlow SavedModel platform is served"),
    _flag("per_process_gpu_memory_fraction", float, 0.0, IGNORED, "no GPU on this server's machines; TF grows GPU memory"),
    _flag("saved_model_tags", str, "serve", IGNORED, "MetaGraphDefs tagged 'serve' are loaded"),
    _flag("grpc_channel_arguments", str, "", IMPLEMENTED,
          "comma-separated key=value gRPC server arguments; integer values are passed as ints, as TF Serving does"),
    _flag("grpc_max_threads", int, 0, IMPLEMENTED, "gRPC handler threads"),
    _flag("enable_model_warmup", bool, True, IMPLEMENTED, "replay assets.extra/tf_serving_warmup_requests"),
    _flag("num_request_iterations_for_warmup", int, 1, IGNORED, "each warmup request is replayed once"),
    _flag("version", bool, False, IMPLEMENTED, "print the server and TensorFlow versions and exit"),
    _flag("monitoring_config_file", str, "", IMPLEMENTED, "MonitoringConfig text proto (Prometheus)"),
    _flag("remove_unused_fields_from_bundle_metagraph", bool, True, IGNORED,
          "the MetaGraphDef is not kept in memory; only the SignatureDefs are"),
    _flag("prefer_tflite_model", bool, False, IMPLEMENTED,
          "serve <version>/model.tflite through tf.lite.Interpreter when present (else the SavedModel)"),
    _flag("num_tflite_pools", int, 0, IGNORED, "one TFLite interpreter per model version, calls serialized"),
    _flag("num_tflite_interpreters_per_pool", int, 1, IGNORED, "one TFLite interpreter per model version, calls serialized"),
    _flag("enable_signature_method_name_check", bool, False, IMPLEMENTED,
          "Classify/Regress/MultiInference require the classify/regress method_name"),
    _flag("xla_cpu_compilation_enabled", bool, False, IGNORED, "TensorFlow's own XLA settings apply (jit_compile in the model)"),
    _flag("xla_gpu_compilation_enabled", bool, False, IGNORED, "no GPU on this server's machines"),
    _flag("enable_profiler", bool, True, IGNORED, "no profiler service; profile with tf.profiler in a test process"),
    _flag("thread_pool_factory_config_file", str, "", IGNORED, "no custom inter/intra-op thread pool factories"),
    _flag("mixed_precision", str, "", IGNORED, "models run in the precision they were exported with"),
    _flag("skip_initialize_tpu", bool, False, IGNORED, "no TPU support"),
    _flag("enable_grpc_healthcheck_service", bool, False, IGNORED, "grpc.health.v1 is always served (readiness per model)"),
    _flag("enable_serialization_as_tensor_content", bool, False, IGNORED,
          "Predict responses always use tensor_content for numeric tensors"),
)
TFS_FLAG_NAMES = frozenset(flag.name for flag in TFS_FLAGS)


def add_tfs_flags(parser: argparse.ArgumentParser) -> None:
    """Adds every TF Serving flag options.py does not define itself."""
    for flag in TFS_FLAGS:
        flag.add_to(parser)


def ignored_flags_given(args: argparse.Namespace) -> list:
    """(flag, value) of the IGNORED flags the command line set."""
    return [(flag, getattr(args, flag.name)) for flag in TFS_FLAGS
            if flag.status == IGNORED and getattr(args, flag.name, None) is not None]


def log_ignored_flags(args: argparse.Namespace) -> list:
    """One warning per ignored flag that was given; returns the lines."""
    lines = [f"--{flag.name}={value} is accepted and ignored: {flag.note}" for flag, value in ignored_flags_given(args)]
    for line in lines:
        _log.warning("%s", line)
    return lines


def parse_grpc_channel_arguments(text: str) -> list:
    """`--grpc_channel_arguments`: "k=v,k2=v2" -> [(k, v)], values that parse as int32 become ints (TF Serving's rule).

    TF Serving crashes on an item without '='; here it is a ValueError naming the item.
    """
    arguments = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--grpc_channel_arguments item {item!r} is not key=value (e.g. grpc.max_connection_age_ms=2000)")
        key, value = key.strip(), value.strip()
        try:
            number = int(value, 10)
        except ValueError:
            arguments.append((key, value))
            continue
        arguments.append((key, number if -2**31 <= number < 2**31 else value))  # safe_strto32
    return arguments
