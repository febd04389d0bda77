"""Which model versions serve: polling base paths, loading, version policies, labels.

Like TF Serving's file-system source plus its availability-preserving policy:

* every `file_system_poll_wait_seconds` each base path is listed; a version is an
  all-digits directory inside it (see `paths.py`), so write new versions atomically
  (copy to `.tmp-N`, then `os.rename` to `N`);
* the version policy (`latest` N, default 1; `all`; `specific`) picks the versions that
  should serve; missing ones are loaded (with retries, then warmup) before old ones are
  retired, and old ones are retired only once a wanted version is AVAILABLE;
* a version that fails to load is END with its error in GetModelStatus, and is not tried
  again until its directory changes; the previous version keeps serving;
* `latest` N serves the N newest versions that LOAD: a corrupt newest version is skipped
  for the next older one, so a bad push is no outage, not even after a restart (TF
  Serving would serve nothing then);
* one poll or (re)configuration starts no new load or retry after
  `load_budget_seconds`: the rest wait for the next poll, so a base path full of bad
  versions cannot hold the poll lock (and block reloads) for long;
* `not_ready_models()` names configured models with no AVAILABLE version (readiness);
* `version_labels` (e.g. stable/canary) map to versions at request time.

Request threads read immutable snapshots (no lock on the request path).

    manager = ModelManager(ManagerOptions(file_system_poll_wait_seconds=1))
    manager.configure(single_model_config("digits", "runs/serving/digits"))
    manager.start()
    version = manager.resolve(request.model_spec)
"""
from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time

import grpc
from google.protobuf import message as protobuf_message
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from serving.server.backends import BackendOptions
from serving.server.batching import BatchingOptions
from serving.server.errors import ServingError, ok_status_proto
from serving.server.options import DEFAULT_MAX_REQUEST_ROWS
from serving.server.paths import check_inside_roots, check_model_name, list_version_dirs, resolve_base_path
from serving.server.servable import LoadedVersion
from serving.server.warmup import run_warmup
from serving.tfs_config import LABEL_PATTERN, TfsConfigError, VersionPolicy, model_specs_from_config

State = get_model_status_pb2.ModelVersionStatus.State
_log = logging.getLogger(__name__)
_CATCH_UP_SECONDS = 0.05  # pause between passes while loads are deferred (lets reloads in)


@dataclasses.dataclass(frozen=True)
class ManagerOptions:
    """How versions are found and loaded (names follow tensorflow_model_server's flags).

    Args:
        file_system_poll_wait_seconds: seconds between base-path polls; 0 = poll once.
        max_num_load_retries: extra load attempts after a failure.
        load_retry_interval_seconds: pause between load attempts.
        batching: options for batchable signatures; None turns batching off.
        enable_model_warmup: replay assets.extra/tf_serving_warmup_requests on load.
        max_tensor_bytes: most bytes a request's inputs may take once materialized.
        max_request_rows: most rows (dim 0 / tf.Examples) in one request.
        load_budget_seconds: a poll or reload starts no new load or retry after this long;
            the remaining versions are loaded by the next polls.
        enable_signature_method_name_check / prefer_tflite_model: the TF Serving flags (loaders.py).
        allow_version_labels_for_unavailable_models: TF Serving's flag; false (its default):
            `configure` fails with FAILED_PRECONDITION if a label names a version that is not
            AVAILABLE once the config's loads are done, and keeps the previous labels.
        backends: which backend serves each signature (--backend; serving/server/backends).
    """

    file_system_poll_wait_seconds: float = 1.0
    max_num_load_retries: int = 5
    load_retry_interval_seconds: float = 1.0
    batching: BatchingOptions | None = BatchingOptions()
    enable_model_warmup: bool = True
    max_tensor_bytes: int = 64 << 20
    max_request_rows: int = DEFAULT_MAX_REQUEST_ROWS
    load_budget_seconds: float = 30.0
    enable_signature_method_name_check: bool = False
    prefer_tflite_model: bool = False
    allow_version_labels_for_unavailable_models: bool = False
    backends: BackendOptions = BackendOptions()

    def __post_init__(self):
        if not self.load_budget_seconds > 0:
            raise ValueError(f"load_budget_seconds={self.load_budget_seconds} must be > 0")


@dataclasses.dataclass
class VersionState:
    """One version's lifecycle entry, as GetModelStatus reports it."""

    version: int
    state: int = State.START
    error: ServingError | None = None
    loaded: LoadedVersion | None = None
    dir_stamp: tuple | None = None  # (inode, mtime) of the directory a failed load read


@dataclasses.dataclass
class _Model:
    name: str
    base_path: str  # real path
    policy: VersionPolicy
    labels: dict
    versions: dict = dataclasses.field(default_factory=dict)  # version -> VersionState
    serving: dict = dataclasses.field(default_factory=dict)  # version -> LoadedVersion (snapshot)
    latest: LoadedVersion | None = None


def single_model_config(name: str, base_path: str) -> model_server_config_pb2.ModelServerConfig:
    """The config `--model_name/--model_base_path` stand for (latest version only)."""
    config = model_server_config_pb2.ModelServerConfig()
    config.model_config_list.config.add(name=name, base_path=base_path, model_platform="tensorflow")
    return config


def _dir_stamp(path: str) -> tuple | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns


def _load_error(path: str, error: Exception) -> ServingError:
    if isinstance(error, ServingError):
        return error
    if isinstance(error, tf.errors.OpError):
        failure = ServingError.from_tf_error(error)
        return ServingError(failure.code, f"failed to load {path}: {failure.message}")
    code = grpc.StatusCode.UNKNOWN
    if isinstance(error, FileNotFoundError):
        code = grpc.StatusCode.NOT_FOUND
    elif isinstance(error, protobuf_message.DecodeError):
        code = grpc.StatusCode.DATA_LOSS
    first_line = (str(error).strip().splitlines() or [""])[0]
    return ServingError(code, f"failed to load {path}: {type(error).__name__}: {first_line}")


class ModelManager:
    """Keeps the configured models' versions loaded as their policies say."""

    def __init__(self, options: ManagerOptions = ManagerOptions()):
        self.options = options
        self._models: dict[str, _Model] = {}  # replaced whole on change
        self._poll_lock = threading.Lock()  # one poll or reconfiguration at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._deferred = False  # the last pass ran out of load budget with versions left
        self._reloads_waiting = 0  # configure() calls waiting for the poll lock
        self._waiting_lock = threading.Lock()
        self._yield_to_reloads = False  # set for background passes only
        self._listeners = []

    # -- configuration ---------------------------------------------------------------
    def configure(self, config: model_server_config_pb2.ModelServerConfig, allowed_roots=None) -> None:
        """Validates and applies a ModelServerConfig, then loads what it asks for.

        Blocks until the new configuration's versions are loaded (or failed), like TF
        Serving's ReloadConfig, but at most about `load_budget_seconds` (later polls load
        the rest). Raises INVALID_ARGUMENT (nothing changes) if it is invalid, and
        PERMISSION_DENIED if `allowed_roots` is given and a base path is outside them.
        """
        models = self._models_from_config(config)
        if allowed_roots is not None:
            for model in models.values():
                check_inside_roots(model.name, model.base_path, allowed_roots)
        with self._waiting_lock:
            self._reloads_waiting += 1  # a background pass stops starting loads and lets us in
        try:
            self._poll_lock.acquire()
        finally:
            with self._waiting_lock:
                self._reloads_waiting -= 1
        try:
            current = self._models
            merged, previous_labels = {}, {}
            for name, model in models.items():
                old = current.get(name)
                if old is not None and old.base_path == model.base_path:
                    previous_labels[name] = old.labels
                    old.policy, old.labels = model.policy, model.labels
                    model = old
                merged[name] = model
            for name, old in current.items():
                if merged.get(name) is not old:
                    self._retire_all(old)
            self._models = merged
            self._poll_locked(yield_to_reloads=False)
            unavailable = self._labels_to_unavailable_versions()
            if unavailable:  # as TF Serving's ServerCore: the models stay loaded, the label map is not updated
                for name, model in merged.items():
                    model.labels = previous_labels.get(name, {})
                model, label, version = unavailable[0]
                raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                                   f"Request to assign label to version {version} of model {model}, which is not currently "
                                   f"available for inference (label '{label}'); load that version first or start with "
                                   "--allow_version_labels_for_unavailable_models")
        finally:
            self._poll_lock.release()
        self._start_catch_up()

    def _labels_to_unavailable_versions(self) -> list:
        if self.options.allow_version_labels_for_unavailable_models:
            return []
        return [(model.name, label, version) for model in self._models.values()
                for label, version in sorted(model.labels.items()) if version not in model.serving]

    def _models_from_config(self, config) -> dict:
        if config.WhichOneof("config") != "model_config_list":
            raise ServingError.invalid_argument(
                "only model_config_list configs are supported (custom_model_config is not); "
                "list the models under model_config_list { config { ... } }"
            )
        try:
            specs = model_specs_from_config(config)
        except TfsConfigError as error:
            raise ServingError.invalid_argument(str(error)) from None
        if not specs:
            raise ServingError.invalid_argument("the model config lists no models; add at least one config entry")
        models = {}
        for spec in specs:
            check_model_name(spec.name)
            if spec.name in models:
                raise ServingError.invalid_argument(f"model {spec.name!r} is configured twice; list each model once")
            for label, version in spec.labels.items():
                if not LABEL_PATTERN.match(label) or version < 0:
                    raise ServingError.invalid_argument(
                        f"version label {label!r} -> {version} of model {spec.name!r} is invalid: labels are 1-64 "
                        "letters, digits, '_' or '-' starting with a letter, versions are >= 0"
                    )
            models[spec.name] = _Model(spec.name, resolve_base_path(spec.name, spec.base_path), spec.policy, dict(spec.labels))
        return models

    # -- polling ---------------------------------------------------------------------
    def start(self) -> None:
        """Starts the background poll (after `configure`, which did the first poll).

        With `file_system_poll_wait_seconds=0` (poll once) a thread still runs while
        versions deferred by the load budget remain, then exits.
        """
        self._started = True
        self._start_catch_up()

    def _start_catch_up(self) -> None:
        if not self._started or self._stop.is_set() or (self._thread is not None and self._thread.is_alive()):
            return
        if self.options.file_system_poll_wait_seconds > 0 or self._deferred:
            self._thread = threading.Thread(target=self._poll_forever, name="model-poller", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _poll_forever(self) -> None:
        poll_wait = self.options.file_system_poll_wait_seconds
        while poll_wait > 0 or self._deferred:
            if self._stop.wait(_CATCH_UP_SECONDS if self._deferred else poll_wait):
                return
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001  (a poll must never kill the poller)
                _log.exception("polling model base paths failed; will retry")

    def poll_once(self) -> None:
        """One pass over every model: load wanted versions, then retire unwanted ones."""
        with self._poll_lock:
            self._poll_locked(yield_to_reloads=True)

    def _poll_locked(self, yield_to_reloads: bool) -> None:
        deadline = time.monotonic() + self.options.load_budget_seconds
        self._deferred = False
        self._yield_to_reloads = yield_to_reloads
        try:
            for model in list(self._models.values()):
                if self._stop.is_set():
                    return
                self._poll_model(model, deadline)
        finally:
            self._notify()
        if self._deferred:
            _log.warning("load budget of %.0f s used up: the remaining versions load on the next polls",
                         self.options.load_budget_seconds)

    def _poll_model(self, model: _Model, deadline: float) -> None:
        on_disk = list_version_dirs(model.base_path)
        if model.policy.kind == "latest":
            wanted = self._load_newest(model, on_disk, deadline)
        else:
            wanted = model.policy.loaded_versions(on_disk)
            for version in sorted(wanted, reverse=True):
                self._ensure_loaded(model, version, on_disk[version], deadline)
        if any(model.versions.get(v) and model.versions[v].state == State.AVAILABLE for v in wanted):
            for version, entry in list(model.versions.items()):
                if version not in wanted and entry.state == State.AVAILABLE:
                    self._retire(model, entry)

    def _load_newest(self, model: _Model, on_disk: dict, deadline: float) -> list:
        """`latest` N: the N newest versions that are (or now get) AVAILABLE, newest first."""
        chosen = []
        for version in sorted(on_disk, reverse=True):
            if len(chosen) == model.policy.num_versions:
                break
            if self._ensure_loaded(model, version, on_disk[version], deadline):
                chosen.append(version)
        return chosen

    def _ensure_loaded(self, model: _Model, version: int, path: str, deadline: float) -> bool:
        """Loads `version` unless it serves already, failed unchanged before, or the budget is spent."""
        entry = model.versions.get(version)
        if entry is not None and entry.state == State.AVAILABLE:
            return True
        if entry is not None and entry.state == State.END and entry.error is not None and entry.dir_stamp == _dir_stamp(path):
            return False  # failed before and the directory has not changed since
        if self._out_of_budget(deadline):
            self._deferred = True
            return False
        self._load(model, version, path, deadline)
        return model.versions[version].state == State.AVAILABLE

    def _out_of_budget(self, deadline: float) -> bool:
        """No new load or retry: the pass's budget is spent, or a reload waits for the lock."""
        return time.monotonic() >= deadline or (self._yield_to_reloads and self._reloads_waiting > 0)

    def _load(self, model: _Model, version: int, path: str, deadline: float) -> None:
        entry = VersionState(version, State.LOADING)
        model.versions[version] = entry
        attempts = 1 + max(0, self.options.max_num_load_retries)
        pause = self.options.load_retry_interval_seconds
        for attempt in range(attempts):
            try:
                loaded = LoadedVersion.load(model.name, version, path, self.options.batching, self.options.max_tensor_bytes,
                                            self.options.max_request_rows,
                                            method_name_check=self.options.enable_signature_method_name_check,
                                            prefer_tflite=self.options.prefer_tflite_model,
                                            backend_options=self.options.backends)
                warmed = run_warmup(loaded) if self.options.enable_model_warmup else 0
            except Exception as error:  # noqa: BLE001  (any load failure is reported, never raised)
                entry.error = _load_error(path, error)
                _log.warning("model %s version %d: load attempt %d/%d failed: %s", model.name, version, attempt + 1, attempts, entry.error.message)
                retry = attempt + 1 < attempts and not self._out_of_budget(deadline - pause)
                if retry and not self._stop.wait(pause):
                    continue
                entry.state, entry.dir_stamp = State.END, _dir_stamp(path)
                return
            entry.loaded, entry.error, entry.state = loaded, None, State.AVAILABLE
            _log.info("model %s version %d is AVAILABLE (%s; %d warmup requests)%s", model.name, version, path, warmed,
                      f"; {loaded.backends.status}" if loaded.backends.status else "")
            self._publish(model)
            return

    def _retire(self, model: _Model, entry: VersionState) -> None:
        entry.state = State.UNLOADING
        self._publish(model)  # new requests stop reaching it; in-flight ones keep their reference
        entry.loaded, entry.state = None, State.END
        _log.info("model %s version %d retired", model.name, entry.version)

    def _retire_all(self, model: _Model) -> None:
        for entry in model.versions.values():
            if entry.state == State.AVAILABLE:
                entry.state = State.UNLOADING
        self._publish(model)
        for entry in model.versions.values():
            if entry.state == State.UNLOADING:
                entry.loaded, entry.state = None, State.END

    def _publish(self, model: _Model) -> None:
        serving = {v: e.loaded for v, e in model.versions.items() if e.state == State.AVAILABLE}
        model.serving = serving
        model.latest = serving[max(serving)] if serving else None
        self._notify()

    # -- readiness -------------------------------------------------------------------
    def add_listener(self, callback) -> None:
        """Calls `callback()` whenever the set of serving versions may have changed."""
        self._listeners.append(callback)

    def _notify(self) -> None:
        for callback in self._listeners:
            try:
                callback()
            except Exception:  # noqa: BLE001  (a listener must not break loading)
                _log.exception("version-change listener failed")

    def not_ready_models(self) -> list:
        """Configured models with no AVAILABLE version; the server is ready when this is empty."""
        return sorted(name for name, model in self._models.items() if not model.serving)

    # -- request side ----------------------------------------------------------------
    @property
    def model_names(self) -> list:
        return sorted(self._models)

    def base_paths(self) -> dict:
        """{model name: real base path} of the configured models."""
        return {name: model.base_path for name, model in self._models.items()}

    def has_model(self, name: str) -> bool:
        return name in self._models

    def _model(self, name: str) -> _Model:
        if not name:
            raise ServingError.invalid_argument("model_spec.name is empty; name the model to use")
        model = self._models.get(name)
        if model is None:
            check_model_name(name)
            raise ServingError.not_found(f"Servable not found for request: model '{name}' is not served (served: {self.model_names})")
        return model

    def _version_number(self, model: _Model, model_spec) -> int | None:
        choice = model_spec.WhichOneof("version_choice")
        if choice == "version":
            return model_spec.version.value
        if choice == "version_label":
            label = model_spec.version_label
            if label not in model.labels:
                raise ServingError.invalid_argument(
                    f"Unrecognized servable version label: '{label}' for model '{model.name}' (labels: {sorted(model.labels)})"
                )
            return model.labels[label]
        return None

    def resolve(self, model_spec) -> LoadedVersion:
        """The loaded version a request's ModelSpec names (latest AVAILABLE by default)."""
        model = self._model(model_spec.name)
        version = self._version_number(model, model_spec)
        if version is None:
            found = model.latest
            if found is None:
                raise ServingError.not_found(f"Servable not found for request: no version of model '{model.name}' is available yet")
            return found
        found = model.serving.get(version)
        if found is None:
            raise ServingError.not_found(
                f"Servable not found for request: model '{model.name}' version {version} is not available "
                f"(available: {sorted(model.serving)})"
            )
        return found

    def status(self, model_spec) -> get_model_status_pb2.GetModelStatusResponse:
        """GetModelStatus: every known version (newest first), or the one the spec names."""
        model = self._model(model_spec.name)
        version = self._version_number(model, model_spec)
        entries = sorted(list(model.versions.values()), key=lambda e: -e.version)
        if version is not None:
            entries = [e for e in entries if e.version == version]
            if not entries:
                raise ServingError.not_found(f"model '{model.name}' has no version {version} (known: {sorted(model.versions)})")
        if not entries:
            raise ServingError.not_found(f"Could not find any versions of model '{model.name}' under its base path {model.base_path}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for entry in entries:
            status = response.model_version_status.add(version=entry.version, state=entry.state)
            status.status.CopyFrom(entry.error.to_status_proto() if entry.error else ok_status_proto())
            if entry.error is None and entry.loaded is not None and entry.loaded.backends.status:
                status.status.error_message = entry.loaded.backends.status  # code OK: which backend serves what
        return response

    def loaded_versions(self) -> list:
        """Every LoadedVersion now serving, across models."""
        return [version for model in list(self._models.values()) for version in model.serving.values()]

    def available_versions(self) -> dict:
        """{model name: [available versions]} for metrics and health."""
        return {name: sorted(model.serving) for name, model in self._models.items()}
