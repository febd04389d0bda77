"""Generate and check TF Serving's config files: models.config, batching, monitoring.

Three text protos drive a production `tensorflow_model_server`:

| flag                          | proto                              | builder                        |
|-------------------------------|------------------------------------|--------------------------------|
| `--model_config_file`         | `ModelServerConfig`                | `build_model_server_config()`  |
| `--batching_parameters_file`  | `BatchingParameters`               | `build_batching_parameters()`  |
| `--monitoring_config_file`    | `MonitoringConfig`                 | `build_monitoring_config()`    |

Every input is checked before anything is written, so a bad name, path, version policy or
label fails here with a message naming the value and the fix, instead of at server start.

    specs = [ModelSpec("digits", "/models/digits", VersionPolicy.parse("specific:3,4"),
                       labels={"stable": 3, "canary": 4})]
    text = to_text(build_model_server_config(specs))

Command line (`main(argv)`, in serving/tfs_config_cli.py):

    python -m serving.tfs_config config --model digits=/models/digits \\
        --policy digits=latest:2 --label digits:stable=3 --output models.config
    python -m serving.tfs_config batching --max-batch-size 32 --output batching_parameters.txt
    python -m serving.tfs_config monitoring --output monitoring.config
    python -m serving.tfs_config check models.config --scan digits=runs/serving/digits
"""
from __future__ import annotations

import dataclasses
import os
import re
import sys
from typing import Mapping, Sequence

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from serving.layout import MAX_VERSION, MODEL_NAME_PATTERN, list_versions
from serving.tfs_protos import BatchingParameters, MonitoringConfig

# Labels appear in REST paths (/v1/models/<name>/labels/<label>), so no '/' or spaces.
LABEL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
# Absolute path inside the server, or a remote file system TF Serving reads natively.
BASE_PATH_PATTERN = re.compile(r"^(/|gs://|s3://|hdfs://)[^\s'\"\\]*$")
MODEL_PLATFORM = "tensorflow"
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
POLICY_KINDS = ("latest", "all", "specific")


class TfsConfigError(ValueError):
    """A TF Serving config input is invalid; the message names the value and the fix."""


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
    """Which versions under a model's base path TF Serving loads.

    `latest` (TF Serving's default, with `num_versions=1`) loads the N highest versions,
    `all` loads every version, `specific` loads exactly `versions`.

    Example:

    >>> VersionPolicy.parse("latest:2")
    VersionPolicy(kind='latest', num_versions=2, versions=())
    >>> VersionPolicy.parse("specific:3,4").versions
    (3, 4)
    """

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple = ()

    def __post_init__(self):
        if self.kind not in POLICY_KINDS:
            raise TfsConfigError(f"version policy kind {self.kind!r} is unknown; use one of {', '.join(POLICY_KINDS)}")
        if self.kind == "latest" and (not isinstance(self.num_versions, int) or self.num_versions < 1):
            raise TfsConfigError(f"latest:{self.num_versions} must keep at least one version; use latest:1 or more")
        if self.kind == "specific":
            if not self.versions:
                raise TfsConfigError("a specific version policy needs at least one version, e.g. specific:3,4")
            for version in self.versions:
                check_version(version, "specific version policy")
            if len(set(self.versions)) != len(self.versions):
                unique = ",".join(str(v) for v in sorted(set(self.versions)))
                raise TfsConfigError(f"specific versions {list(self.versions)} repeat a version; list each once, e.g. specific:{unique}")

    @classmethod
    def parse(cls, text: str) -> "VersionPolicy":
        """Parses `latest:N`, `latest` (N=1), `all` or `specific:V1,V2,...`."""
        kind, _, arg = text.strip().partition(":")
        usage = "write latest:N, all or specific:V1,V2"
        if kind == "all" and not arg:
            return cls("all")
        if kind == "latest":
            if not arg:
                return cls("latest", 1)
            if not arg.isdigit():
                raise TfsConfigError(f"version policy {text!r}: N in latest:N must be a positive integer; {usage}")
            return cls("latest", int(arg))
        if kind == "specific" and arg:
            parts = [p.strip() for p in arg.split(",")]
            if not all(p.isdigit() for p in parts):
                raise TfsConfigError(f"version policy {text!r}: versions must be non-negative integers; {usage}")
            return cls("specific", versions=tuple(int(p) for p in parts))
        raise TfsConfigError(f"version policy {text!r} is not understood; {usage}")

    def loaded_versions(self, available: Sequence[int]) -> set:
        """The versions TF Serving would load from the `available` version directories."""
        if self.kind == "all":
            return set(available)
        if self.kind == "latest":
            return set(sorted(available)[-self.num_versions:])
        return set(self.versions) & set(available)

    def to_proto(self, policy_proto) -> None:
        """Fills a `FileSystemStoragePathSourceConfig.ServableVersionPolicy`."""
        if self.kind == "latest":
            policy_proto.latest.num_versions = self.num_versions
        elif self.kind == "all":
            policy_proto.all.SetInParent()
        else:
            policy_proto.specific.versions.extend(self.versions)

    def __str__(self) -> str:
        if self.kind == "latest":
            return f"latest:{self.num_versions}"
        if self.kind == "all":
            return "all"
        return "specific:" + ",".join(str(v) for v in self.versions)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model entry of models.config.

    Args:
        name: model name clients use (`/v1/models/<name>`), following `serving.layout.MODEL_NAME_PATTERN`.
        base_path: directory *inside the server* holding integer version directories,
            e.g. `/models/digits` (not `/models/digits/3`).
        policy: a `VersionPolicy`; TF Serving's default is `latest:1`.
        labels: label -> version, e.g. `{"stable": 3, "canary": 4}`.

    Example:

    >>> ModelSpec("digits", "/models/digits", VersionPolicy("latest", 2)).name
    'digits'
    """

    name: str
    base_path: str
    policy: VersionPolicy = VersionPolicy()
    labels: Mapping[str, int] = dataclasses.field(default_factory=dict)


def check_version(version, where: str) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version <= MAX_VERSION:
        raise TfsConfigError(f"version {version!r} in {where} must be an integer directory name from 0 to 2**63-1")
    return version


def check_model_name(name: str) -> str:
    if not isinstance(name, str) or not MODEL_NAME_PATTERN.match(name):
        raise TfsConfigError(
            f"model name {name!r} is invalid: use 1-128 characters from letters, digits, '_', '.', '-', "
            "starting with a letter or digit (e.g. digits or digits-cnn)"
        )
    return name


def check_base_path(name: str, base_path: str) -> str:
    if not isinstance(base_path, str) or not BASE_PATH_PATTERN.match(base_path):
        raise TfsConfigError(
            f"base path {base_path!r} of model {name!r} must be an absolute path inside the server "
            "(e.g. /models/digits) or a gs://, s3:// or hdfs:// URI, without spaces or quotes"
        )
    parts = base_path.split("://", 1)[-1].split("/")
    if ".." in parts:
        raise TfsConfigError(f"base path {base_path!r} of model {name!r} contains '..'; write the resolved path")
    last = next((p for p in reversed(parts) if p), "")
    if last.isdigit():
        parent = base_path.rstrip("/").rsplit("/", 1)[0]
        raise TfsConfigError(
            f"base path {base_path!r} of model {name!r} ends in a version directory; "
            f"TF Serving wants the parent of the versions: {parent!r}"
        )
    return base_path


def _check_labels(spec: ModelSpec, available: Sequence[int] | None) -> None:
    for label, version in spec.labels.items():
        if not isinstance(label, str) or not LABEL_PATTERN.match(label):
            raise TfsConfigError(
                f"label {label!r} of model {spec.name!r} is invalid: use 1-64 letters, digits, '_' or '-', "
                "starting with a letter (e.g. stable, canary)"
            )
        check_version(version, f"label {spec.name}:{label}")
    labelled = sorted(set(spec.labels.values()))
    policy = spec.policy
    if policy.kind == "specific":
        outside = [v for v in labelled if v not in policy.versions]
        if outside:
            raise TfsConfigError(
                f"model {spec.name!r}: labels point at versions {outside} that policy {policy} does not load; "
                f"add them, e.g. --policy {spec.name}=specific:{','.join(str(v) for v in sorted(set(policy.versions) | set(outside)))}"
            )
    if policy.kind == "latest" and len(labelled) > policy.num_versions:
        raise TfsConfigError(
            f"model {spec.name!r}: labels point at {len(labelled)} versions {labelled} but policy {policy} "
            f"keeps only {policy.num_versions}; use latest:{len(labelled)} or, better for stable/canary, "
            f"specific:{','.join(str(v) for v in labelled)}"
        )
    if available is None:
        return
    loaded = policy.loaded_versions(available)
    not_loaded = [v for v in labelled if v not in loaded]
    if not_loaded:
        raise TfsConfigError(
            f"model {spec.name!r}: labels point at versions {not_loaded} that will not be loaded "
            f"(versions on disk: {sorted(available)}, policy {policy} loads {sorted(loaded)}); "
            "TF Serving refuses labels on versions it has not loaded. Point the labels at loaded versions "
            "or change the policy"
        )


def validate_model_specs(specs: Sequence[ModelSpec], available_versions: Mapping[str, Sequence[int]] | None = None) -> None:
    """Raises `TfsConfigError` for the first invalid entry.

    Args:
        specs: the models to serve.
        available_versions: optional model name -> version directories found on disk
            (see `scan_versions()`); with it, labels and `specific` versions are checked
            against what actually exists, not only against the policy.
    """
    if not specs:
        raise TfsConfigError("no models given; add at least one, e.g. --model digits=/models/digits")
    available_versions = dict(available_versions or {})
    names = [spec.name for spec in specs]
    for name in available_versions:
        if name not in names:
            raise TfsConfigError(f"versions were scanned for model {name!r}, which is not configured; add --model {name}=PATH")
    seen = set()
    for spec in specs:
        check_model_name(spec.name)
        if spec.name in seen:
            raise TfsConfigError(f"model {spec.name!r} is configured twice; give each model one --model entry")
        seen.add(spec.name)
        check_base_path(spec.name, spec.base_path)
        if not isinstance(spec.policy, VersionPolicy):
            raise TfsConfigError(f"policy of model {spec.name!r} must be a VersionPolicy, got {spec.policy!r}")
        available = available_versions.get(spec.name)
        if available is not None:
            if not available:
                raise TfsConfigError(f"model {spec.name!r}: no integer version directories with a saved_model.pb were found; push a model first")
            missing = sorted(set(spec.policy.versions) - set(available))
            if missing:
                raise TfsConfigError(
                    f"model {spec.name!r}: policy {spec.policy} names versions {missing} that are not on disk "
                    f"(found {sorted(available)}); TF Serving would wait for them forever"
                )
        _check_labels(spec, available)


def build_model_server_config(specs: Sequence[ModelSpec], available_versions: Mapping[str, Sequence[int]] | None = None):
    """Validated `ModelServerConfig` proto (the `--model_config_file` content).

    Example:

    >>> config = build_model_server_config([ModelSpec("digits", "/models/digits")])
    >>> config.model_config_list.config[0].model_platform
    'tensorflow'
    """
    validate_model_specs(specs, available_versions)
    config = model_server_config_pb2.ModelServerConfig()
    for spec in specs:
        entry = config.model_config_list.config.add(name=spec.name, base_path=spec.base_path, model_platform=MODEL_PLATFORM)
        spec.policy.to_proto(entry.model_version_policy)
        for label in sorted(spec.labels):
            entry.version_labels[label] = spec.labels[label]
    return config


def model_specs_from_config(config) -> list:
    """The `ModelSpec`s of a parsed `ModelServerConfig`, for `check`-ing an existing file."""
    if config.WhichOneof("config") != "model_config_list":
        raise TfsConfigError("the config has no model_config_list; this tool only checks model_config_list configs")
    specs = []
    for entry in config.model_config_list.config:
        if entry.model_platform != MODEL_PLATFORM:
            raise TfsConfigError(f"model {entry.name!r} has model_platform {entry.model_platform!r}; set it to {MODEL_PLATFORM!r}")
        which = entry.model_version_policy.WhichOneof("policy_choice")
        if which == "all":
            policy = VersionPolicy("all")
        elif which == "specific":
            policy = VersionPolicy("specific", versions=tuple(entry.model_version_policy.specific.versions))
        else:  # unset means TF Serving's default, latest with num_versions 1
            num = entry.model_version_policy.latest.num_versions if which == "latest" else 1
            policy = VersionPolicy("latest", num)
        specs.append(ModelSpec(entry.name, entry.base_path, policy, dict(entry.version_labels)))
    return specs


def scan_versions(local_dir: str) -> list:
    """Integer version directories under `local_dir` that hold a saved_model.pb, sorted."""
    if not os.path.isdir(local_dir):
        raise TfsConfigError(f"{local_dir!r} is not a directory; pass the local copy of the model's base path, e.g. runs/serving/digits")
    return list_versions(local_dir, with_saved_model=True)


def build_batching_parameters(
    max_batch_size: int = 32,
    batch_timeout_micros: int = 2000,
    num_batch_threads: int = 2,
    max_enqueued_batches: int = 100,
    allowed_batch_sizes: Sequence[int] = (8, 16, 32),
    pad_variable_length_inputs: bool = False,
):
    """Validated `BatchingParameters` proto (the `--batching_parameters_file` content).

    Defaults suit a 2-core CPU pod: one batch thread per core, a 2 ms wait to fill a
    batch, and batches padded up to 8/16/32 rows so only three batch shapes ever run.

    Example:

    >>> build_batching_parameters(max_batch_size=64, allowed_batch_sizes=[16, 64]).max_batch_size.value
    64
    """
    def positive(name, value, minimum=1):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise TfsConfigError(f"batching {name}={value!r} must be an integer >= {minimum}")
        return value

    positive("max_batch_size", max_batch_size)
    positive("batch_timeout_micros", batch_timeout_micros, minimum=0)
    positive("num_batch_threads", num_batch_threads)
    positive("max_enqueued_batches", max_enqueued_batches)
    sizes = [positive("allowed_batch_sizes entry", size) for size in allowed_batch_sizes]
    if sizes:
        if any(b <= a for a, b in zip(sizes, sizes[1:])):
            raise TfsConfigError(f"allowed_batch_sizes {sizes} must be strictly increasing, e.g. 8,16,32")
        if sizes[-1] != max_batch_size:
            raise TfsConfigError(
                f"allowed_batch_sizes {sizes} must end with max_batch_size={max_batch_size} (TF Serving rejects "
                f"anything else); append {max_batch_size} or set max_batch_size to {sizes[-1]}"
            )
    params = BatchingParameters()
    params.max_batch_size.value = max_batch_size
    params.batch_timeout_micros.value = batch_timeout_micros
    params.num_batch_threads.value = num_batch_threads
    params.max_enqueued_batches.value = max_enqueued_batches
    params.allowed_batch_sizes.extend(sizes)
    params.pad_variable_length_inputs = bool(pad_variable_length_inputs)
    return params


def build_monitoring_config(path: str = DEFAULT_PROMETHEUS_PATH, enable: bool = True):
    """Validated `MonitoringConfig` proto: Prometheus metrics on the REST port at `path`.

    Example:

    >>> build_monitoring_config().prometheus_config.path
    '/monitoring/prometheus/metrics'
    """
    if not isinstance(path, str) or not re.match(r"^/[A-Za-z0-9_./-]*$", path) or "/v1/" in path + "/":
        raise TfsConfigError(
            f"monitoring path {path!r} must start with '/', use only letters, digits, '_', '.', '-', '/', "
            f"and stay out of the /v1/ REST API (e.g. {DEFAULT_PROMETHEUS_PATH})"
        )
    config = MonitoringConfig()
    config.prometheus_config.enable = bool(enable)
    config.prometheus_config.path = path
    return config


def to_text(message, header: str | None = None) -> str:
    """Text proto as TF Serving reads it, optionally under `# header` comment lines."""
    body = text_format.MessageToString(message)
    if not header:
        return body
    return "".join(f"# {line}\n" for line in header.splitlines()) + body


def parse_text(text: str, message_class):
    """Parses a text proto file's content (comments allowed) into `message_class`."""
    return text_format.Parse(text, message_class())


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point (see serving/tfs_config_cli.py); returns the exit code (0 ok, 2 invalid input)."""
    from serving.tfs_config_cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
