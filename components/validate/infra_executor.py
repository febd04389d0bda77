"""Infra validation: load the candidate in a real model server and ask it real questions.

TFX's InfraValidator launches TF Serving through Docker or Kubernetes; neither runs
here, so this executor starts the serving engine as a subprocess on a free loopback
port: `tensorflow_model_server` when it is on PATH, else the project's embedded server
(`python -m serving serve`, same flags). It then

1. waits (within `timeout_seconds`) for ModelService.GetModelStatus to say AVAILABLE,
2. sends N eval examples to every signature of the serving contract (Predict on
   `serving_default` and `serving_images`, Classify on `classification`),
3. checks shapes [N, K], dtypes, probabilities summing to 1, class names = the label
   asset, and that the three signatures agree with each other,
4. stops the server (SIGTERM, then kill).

With `make_warmup`, the candidate copy the server loads already carries TF Serving warmup
requests (so the server replays them at load), and a blessed model is written out with
them. When a Transform graph is given, the training/serving skew check
(components/validate/skew.py) runs too. A model problem never raises: it is returned
as blessed=False with the reason (including the server's last log lines).

    result = run_infra_validation("model/Format-Serving", eval_files, parse_config({}), "digits")
    result["blessed"], result["reason"]
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    prediction_service_pb2_grpc,
)

from components.validate import skew as skew_lib
from components.validate.warmup import EvalSample, predict_request, read_eval_sample, warmup_logs, write_warmup_requests
from serving.contract import CLASSIFY_SIGNATURE, EXAMPLES_SIGNATURE, LABEL_ASSET, label_asset_path, read_label_names

log = logging.getLogger("pipeline.infra_validation")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL_SERVER_BINARY = "tensorflow_model_server"
MAX_MESSAGE_BYTES = 16 << 20  # requests here are a few KB; keep the client's limit tight
LOG_TAIL_LINES = 12
_AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
_END = get_model_status_pb2.ModelVersionStatus.END

DEFAULT_CONFIG = {
    "enabled": True,
    "make_warmup": True,
    "timeout_seconds": 60,
    "num_examples": 8,  # requests per signature
    "skew_examples": 64,
    "skew_atol": 1e-4,  # also the allowed disagreement between signatures
    "code": "",  # a source fingerprint, only so a code change invalidates TFX's cache
}


def parse_config(config: dict | str) -> dict:
    """The `infra_validation:` config section (dict or JSON) with defaults filled in."""
    raw = json.loads(config) if isinstance(config, str) else dict(config or {})
    unknown = sorted(set(raw) - set(DEFAULT_CONFIG))
    if unknown:
        raise ValueError(f"unknown infra validation key '{unknown[0]}'. Allowed keys: {', '.join(sorted(DEFAULT_CONFIG))}")
    cfg = {**DEFAULT_CONFIG, **raw}
    for key in ("timeout_seconds", "num_examples", "skew_examples"):
        if isinstance(cfg[key], bool) or not isinstance(cfg[key], int) or cfg[key] < 1:
            raise ValueError(f"infra validation key '{key}' has bad value {cfg[key]!r}: expected an integer >= 1")
    if not isinstance(cfg["skew_atol"], (int, float)) or not cfg["skew_atol"] > 0:
        raise ValueError(f"infra validation key 'skew_atol' has bad value {cfg['skew_atol']!r}: expected a number > 0")
    return cfg


class ModelProblem(Exception):
    """The candidate cannot be served as the contract says; the message is the reason."""


class ModelServerProcess:
    """The serving engine in a subprocess on a free loopback port, with its log in a file.

        with ModelServerProcess("digits", "/tmp/base/digits", "/tmp/server.log") as server:
            server.port, server.exit_code, server.log_tail()

    `rest=True` also opens the REST API on a free port (`server.rest_port`).
    """

    def __init__(self, model_name: str, model_base_path: str, log_path: str, *, rest: bool = False):
        self.model_name, self.model_base_path, self.log_path = model_name, model_base_path, log_path
        self.port = _free_port()
        self.rest_port = _free_port() if rest else 0  # 0: no REST API
        self.engine = "tensorflow_model_server" if shutil.which(MODEL_SERVER_BINARY) else "embedded"
        self._proc = None

    def command(self) -> list[str]:
        flags = [
            f"--port={self.port}",
            f"--model_name={self.model_name}",
            f"--model_base_path={self.model_base_path}",
            f"--rest_api_port={self.rest_port}",
            "--max_num_load_retries=0",  # a model that fails once fails validation
            "--file_system_poll_wait_seconds=0",  # one version, loaded once
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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_available(server: ModelServerProcess, channel, timeout_seconds: float) -> float:
    """Seconds until the model is AVAILABLE; raises ModelProblem on a failed load or timeout."""
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = server.model_name
    started = time.monotonic()
    last = "no answer yet"
    while time.monotonic() - started < timeout_seconds:
        if server.exit_code is not None:
            raise ModelProblem(f"the model server exited with code {server.exit_code} before the model was AVAILABLE")
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
            raise ModelProblem(f"the model server could not load the model: {failed[0].status.error_message}")
        last = "states " + ", ".join(get_model_status_pb2.ModelVersionStatus.State.Name(s.state) for s in statuses)
        time.sleep(0.25)
    raise ModelProblem(f"the model was not AVAILABLE within {timeout_seconds}s (last status: {last})")


def _check_probabilities(where: str, probs: np.ndarray, n: int, k: int) -> None:
    if probs.shape != (n, k):
        raise ModelProblem(f"{where}: expected shape [{n}, {k}], got {list(probs.shape)}")
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1:
        raise ModelProblem(f"{where}: values are not probabilities (min {probs.min():.3g}, max {probs.max():.3g})")
    sums = probs.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=1e-3):
        raise ModelProblem(f"{where}: rows should sum to 1, got sums from {sums.min():.4g} to {sums.max():.4g}")


def _check_classes(where: str, classes: np.ndarray, n: int, label_names: list[str]) -> None:
    names = np.array([c.decode() if isinstance(c, bytes) else str(c) for c in classes.reshape(-1)]).reshape(classes.shape)
    if names.shape != (n, len(label_names)):
        raise ModelProblem(f"{where}: expected shape [{n}, {len(label_names)}], got {list(names.shape)}")
    if not all(list(row) == label_names for row in names):
        raise ModelProblem(f"{where}: class names {list(names[0])[:5]} differ from the label asset {label_names[:5]}")


def _rpc(call, where: str, request):
    try:
        return call(request, timeout=30)
    except grpc.RpcError as error:
        raise ModelProblem(f"{where}: the server answered {error.code().name}: {error.details()}") from None


def probe_signatures(channel, model_name: str, sample: EvalSample, label_names: list[str]) -> dict[str, np.ndarray]:
    """Send the sample to every contract signature; returns {signature: probabilities [N, K]}."""
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    n, k = len(sample), len(label_names)
    results = {}
    for signature in (EXAMPLES_SIGNATURE, sample.raw_signature):
        response = _rpc(stub.Predict, f"Predict {signature}", predict_request(model_name, signature, sample))
        missing = {"probabilities", "classes"} - set(response.outputs)
        if missing:
            raise ModelProblem(f"Predict {signature}: outputs {sorted(response.outputs)} lack {sorted(missing)}")
        probs, classes = response.outputs["probabilities"], response.outputs["classes"]
        if probs.dtype != tf.float32.as_datatype_enum or classes.dtype != tf.string.as_datatype_enum:
            raise ModelProblem(
                f"Predict {signature}: expected float32 probabilities and string classes, got "
                f"{tf.as_dtype(probs.dtype).name} and {tf.as_dtype(classes.dtype).name}"
            )
        results[signature] = tf.make_ndarray(probs)
        _check_probabilities(f"Predict {signature} probabilities", results[signature], n, k)
        _check_classes(f"Predict {signature} classes", tf.make_ndarray(classes), n, label_names)

    request = classification_pb2.ClassificationRequest()
    request.model_spec.name, request.model_spec.signature_name = model_name, CLASSIFY_SIGNATURE
    for serialized in sample.serialized:
        request.input.example_list.examples.add().ParseFromString(serialized)
    response = _rpc(stub.Classify, f"Classify {CLASSIFY_SIGNATURE}", request)
    rows = response.result.classifications
    if len(rows) != n or any(len(row.classes) != k for row in rows):
        raise ModelProblem(f"Classify {CLASSIFY_SIGNATURE}: expected {n} results of {k} classes, got {[len(r.classes) for r in rows]}")
    results[CLASSIFY_SIGNATURE] = np.array([[c.score for c in row.classes] for row in rows], dtype=np.float32)
    _check_probabilities(f"Classify {CLASSIFY_SIGNATURE} scores", results[CLASSIFY_SIGNATURE], n, k)
    _check_classes(f"Classify {CLASSIFY_SIGNATURE} classes", np.array([[c.label for c in row.classes] for row in rows]), n, label_names)
    return results


def _signature_disagreement(results: dict[str, np.ndarray]) -> float:
    reference = results[EXAMPLES_SIGNATURE]
    return max(float(np.max(np.abs(probs - reference))) for probs in results.values())


def _read_label_names(model_dir: str) -> list[str]:
    if not os.path.isfile(label_asset_path(model_dir)):
        raise ModelProblem(f"the model has no label asset assets/{LABEL_ASSET}; export it with export_serving_model")
    return read_label_names(model_dir)


def serve_and_probe(version_dir: str, model_name: str, sample: EvalSample, cfg: dict, workdir: str) -> dict:
    """Serve `<workdir>/<model_name>/1` (a copy of version_dir) and probe it; ModelProblem on failure."""
    label_names = _read_label_names(version_dir)
    base = os.path.dirname(version_dir)
    server = ModelServerProcess(model_name, base, os.path.join(workdir, "server.log"))
    report = {"engine": server.engine}
    channel = grpc.insecure_channel(
        f"127.0.0.1:{server.port}",
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.enable_http_proxy", 0),  # a CI proxy must not intercept loopback calls
        ],
    )
    try:
        with server:
            try:
                report["load_seconds"] = round(wait_until_available(server, channel, cfg["timeout_seconds"]), 2)
                started = time.monotonic()
                results = probe_signatures(channel, model_name, sample, label_names)
                report["probe_seconds"] = round(time.monotonic() - started, 3)
            except ModelProblem as problem:
                server.stop()
                tail = server.log_tail()
                raise ModelProblem(f"{problem}" + (f"\nmodel server log (last lines):\n{tail}" if tail else "")) from None
        disagreement = _signature_disagreement(results)
        report["signature_max_abs_diff"] = disagreement
        if disagreement > cfg["skew_atol"]:
            raise ModelProblem(
                f"the serving signatures disagree on the same eval examples by up to {disagreement:.3g} "
                f"(allowed {cfg['skew_atol']:g}); {sample.raw_signature} and serving_default must preprocess alike"
            )
    finally:
        channel.close()
    return report


def run_infra_validation(
    model_dir: str,
    examples_files: list[str],
    cfg: dict,
    model_name: str,
    *,
    transform_graph_uri: str | None = None,
    keras_model_path: str | None = None,
    output_model_dir: str | None = None,
) -> dict:
    """Validate one candidate; never raises for a model problem.

    Returns {"blessed": bool, "reason": str, "skew": dict | None, "serving": dict, "warmup": int}.
    When blessed and `output_model_dir` is given, the served copy (with warmup requests
    when `cfg["make_warmup"]`) is written there.
    """
    cfg = parse_config(cfg)
    result = {"blessed": False, "reason": "", "skew": None, "serving": {}, "warmup": 0}
    if not cfg["enabled"]:
        result.update(blessed=True, reason="infra validation is disabled (infra_validation.enabled: false)")
        if output_model_dir:
            shutil.copytree(model_dir, output_model_dir)
        return result
    sample = read_eval_sample(examples_files, cfg["num_examples"])
    reasons = []
    if transform_graph_uri:
        try:
            result["skew"] = skew_lib.check_skew(
                model_dir, transform_graph_uri, examples_files, n=cfg["skew_examples"], atol=cfg["skew_atol"],
                keras_model_path=keras_model_path,
            )
            if not result["skew"]["passed"]:
                reasons.append(result["skew"]["reason"])
        except skew_lib.SkewCheckUnavailable as error:
            result["skew"] = {"passed": None, "reason": f"skew check not run: {error}"}
            log.warning("skew check not run: %s", error)
        except Exception as error:  # noqa: BLE001  (e.g. an unloadable SavedModel: blocking is the safe side)
            message = f"skew check failed to run the model: {type(error).__name__}: {str(error).splitlines()[0][:300]}"
            result["skew"] = {"passed": False, "reason": message}
            reasons.append(message)

    with tempfile.TemporaryDirectory(prefix="infra-validation-") as workdir:
        version_dir = os.path.join(workdir, model_name, "1")
        shutil.copytree(model_dir, version_dir)
        if cfg["make_warmup"]:
            logs = warmup_logs(model_name, sample)
            write_warmup_requests(version_dir, logs)  # the server replays them while loading
            result["warmup"] = len(logs)
        try:
            result["serving"] = serve_and_probe(version_dir, model_name, sample, cfg, workdir)
        except ModelProblem as problem:
            reasons.append(str(problem).replace(version_dir, model_dir))  # name the candidate, not the temp copy
        result["blessed"] = not reasons
        result["reason"] = "\n".join(reasons) if reasons else (
            f"served by {result['serving']['engine']} and answered {len(sample)} examples on "
            f"{EXAMPLES_SIGNATURE}, {sample.raw_signature} and {CLASSIFY_SIGNATURE}"
        )
        if result["blessed"] and output_model_dir:
            shutil.copytree(version_dir, output_model_dir)
    return result
