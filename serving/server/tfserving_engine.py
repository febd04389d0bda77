"""`--engine tfserving`: run the real tensorflow_model_server with the same flags.

The C++ model server is on neither PyPI nor Debian (it ships as TF Serving's Docker
image and its own apt repository), so it is usually absent here; then the command fails
with that explanation instead of a bare "not found".

    argv = model_server_argv(options)       # what would run
    exec_model_server(options)              # replaces this process (signals go to it)
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile

from serving.server.options import ServerOptions

BINARY = "tensorflow_model_server"
_log = logging.getLogger(__name__)


class EngineNotInstalled(RuntimeError):
    pass


def _text_string(value: str) -> str:
    """A text-proto string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _ssl_config_file(options: ServerOptions) -> str:
    """TF Serving takes TLS as an SSLConfig text proto holding the PEM contents."""
    with open(options.ssl_key) as key, open(options.ssl_cert) as cert:
        text = f"server_key: {_text_string(key.read())}\nserver_cert: {_text_string(cert.read())}\n"
    handle, path = tempfile.mkstemp(prefix="ssl_config_", suffix=".txt")
    with os.fdopen(handle, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)  # it holds a private key
    return path


def model_server_argv(options: ServerOptions, binary: str = BINARY, extra_argv=()) -> list:
    """tensorflow_model_server's command line for `options`, then `extra_argv` (the TF Serving flags
    this server ignores but the real binary honours, as given)."""
    if options.rest_api_port < 0 or options.monitoring_port:
        raise ValueError("tensorflow_model_server needs fixed ports and has no --monitoring_port; "
                         "use --rest_api_port N and a --monitoring_config_file")
    if options.host not in ("0.0.0.0", "::"):
        _log.warning("tensorflow_model_server binds gRPC on all interfaces; --host %s is not applied", options.host)
    size = options.grpc_max_message_bytes
    argv = [
        binary,
        f"--port={options.port}",
        f"--rest_api_port={options.rest_api_port}",
        f"--file_system_poll_wait_seconds={options.file_system_poll_wait_seconds:g}",
        f"--enable_batching={'true' if options.enable_batching else 'false'}",
        f"--max_num_load_retries={options.max_num_load_retries}",
        f"--load_retry_interval_micros={options.load_retry_interval_micros}",
        f"--enable_model_warmup={'true' if options.enable_model_warmup else 'false'}",
        f"--grpc_max_threads={options.grpc_max_threads}",
        f"--grpc_channel_arguments=grpc.max_receive_message_length={size},grpc.max_send_message_length={size}"
        + (f",{options.grpc_channel_arguments}" if options.grpc_channel_arguments else ""),
    ]
    if options.model_config_file:
        argv.append(f"--model_config_file={options.model_config_file}")
        if options.model_config_file_poll_wait_seconds:
            argv.append(f"--model_config_file_poll_wait_seconds={options.model_config_file_poll_wait_seconds:g}")
    else:
        argv += [f"--model_name={options.model_name}", f"--model_base_path={os.path.abspath(options.model_base_path)}"]
    if options.batching_parameters_file:
        argv.append(f"--batching_parameters_file={options.batching_parameters_file}")
    if options.monitoring_config_file:
        argv.append(f"--monitoring_config_file={options.monitoring_config_file}")
    if options.ssl_cert:
        argv.append(f"--ssl_config_file={_ssl_config_file(options)}")
    for flag in ("tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism", "tensorflow_session_parallelism",
                 "grpc_socket_path", "rest_api_num_threads", "enable_signature_method_name_check",
                 "allow_version_labels_for_unavailable_models", "prefer_tflite_model"):
        value = getattr(options, flag)
        if value:
            argv.append(f"--{flag}={'true' if value is True else value}")
    if options.rest_api_timeout_in_ms != 30000:
        argv.append(f"--rest_api_timeout_in_ms={options.rest_api_timeout_in_ms}")
    return argv + list(extra_argv)


def find_binary() -> str:
    path = shutil.which(BINARY)
    if path is None:
        raise EngineNotInstalled(
            f"--engine tfserving needs the `{BINARY}` binary on PATH, and it is not installed. It is a C++ "
            "program that is on neither PyPI nor Debian (TF Serving ships it as the tensorflow/serving Docker "
            "image and in its own apt repository). Install it from there, or use the default --engine embedded."
        )
    return path


def exec_model_server(options: ServerOptions, extra_argv=()) -> None:
    """Replaces this process with tensorflow_model_server (so SIGTERM reaches it directly)."""
    binary = find_binary()
    argv = model_server_argv(options, binary, extra_argv)
    _log.info("exec %s", " ".join(argv))
    os.execv(binary, argv)
