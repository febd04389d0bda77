"""Start a model server in a subprocess and wait until its model is AVAILABLE.

`tensorflow_model_server` when it is on PATH, else the project's embedded server
(`python -m serving serve`, same flags), on free loopback ports, its log in a file. Used
by infra validation (components/infra_validate/), the serving benchmark and the tests.

    with ModelServerProcess("digits", "/tmp/base/digits", "/tmp/server.log", rest=True) as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            wait_until_available(server, channel, timeout_seconds=60)
        server.rest_port, server.exit_code, server.log_tail()
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from typing import Sequence

import grpc
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_SERVER_BINARY = "tensorflow_model_server"
LOG_TAIL_LINES = 12
_AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
_END = get_model_status_pb2.ModelVersionStatus.END


class ServerNotAvailable(RuntimeError):
    """The server exited, could not load the model, or did not make it AVAILABLE in time."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ModelServerProcess:
    """The serving engine in a subprocess on a free loopback port, with its log in a file.

    `rest=True` also opens the REST API on a free port (`server.rest_port`). Without a
    `model_name`/`model_base_path`, pass the model flags in `flags` (e.g.
    `--model_config_file=...`). Defaults: no load retries (a model that fails once fails)
    and no file-system polling (one version, loaded once); `flags` may override them.
    """

    def __init__(self, model_name: str | None, model_base_path: str | None, log_path: str, *, rest: bool = False,
                 flags: Sequence[str] = (), engine: str | None = None):
        self.model_name, self.model_base_path, self.log_path = model_name, model_base_path, log_path
        self.port = free_port()
        self.rest_port = free_port() if rest else 0  # 0: no REST API
        self.flags = tuple(flags)
        self.engine = engine or ("tensorflow_model_server" if shutil.which(MODEL_SERVER_BINARY) else "embedded")
        self._proc = None

    def command(self) -> list[str]:
        model = [f"--model_name={self.model_name}", f"--model_base_path={self.model_base_path}"] if self.model_name else []
        defaults = {
            "--max_num_load_retries": "0",  # a model that fails once fails validation
            "--file_system_poll_wait_seconds": "0",  # one version, loaded once
        }
        given = {flag.split("=", 1)[0] for flag in self.flags}
        flags = [
            f"--port={self.port}", *model, f"--rest_api_port={self.rest_port}",
            *(f"{name}={value}" for name, value in defaults.items() if name not in given), *self.flags,
        ]
        if self.engine == "tensorflow_model_server":
            return [shutil.which(MODEL_SERVER_BINARY), *flags]
        return [sys.executable, "-m", "serving", "serve", *flags]

    def __enter__(self):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self._log = open(self.log_path, "wb")
        self._proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        return self

    def __exit__(self, *exc):
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def exit_code(self):
        return self._proc.poll() if self._proc else None

    def stop(self, grace_seconds: float = 10.0) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(grace_seconds)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc:
            self._log.close()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                text = [line.rstrip() for line in f if line.strip()]
        except OSError:
            return ""
        return "\n".join(text[-lines:])


def wait_until_available(server: ModelServerProcess, channel, timeout_seconds: float, model_name: str | None = None) -> float:
    """Seconds until the model (default: the server's) is AVAILABLE; ServerNotAvailable otherwise."""
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model_name or server.model_name
    started = time.monotonic()
    last = "no answer yet"
    while time.monotonic() - started < timeout_seconds:
        if server.exit_code is not None:
            raise ServerNotAvailable(f"the model server exited with code {server.exit_code} before the model was AVAILABLE")
        try:
            statuses = stub.GetModelStatus(request, timeout=2).model_version_status
        except grpc.RpcError as error:  # server still importing, or model not known yet
            last = f"{error.code().name}: {error.details()}"
            time.sleep(0.25)
            continue
        if any(s.state == _AVAILABLE for s in statuses):
            return time.monotonic() - started
        failed = [s for s in statuses if s.state == _END and s.status.error_code]
        if failed:
            raise ServerNotAvailable(f"the model server could not load the model: {failed[0].status.error_message}")
        last = "states " + ", ".join(get_model_status_pb2.ModelVersionStatus.State.Name(s.state) for s in statuses)
        time.sleep(0.25)
    raise ServerNotAvailable(f"the model was not AVAILABLE within {timeout_seconds}s (last status: {last})")
