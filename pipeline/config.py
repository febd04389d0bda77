"""A run is a YAML config file. This module loads it and validates it up front.

Every key is known: an unknown key, a wrong type or a value outside the allowed set
raises ConfigError naming the key path, the bad value and what is allowed.

    cfg = load_config("configs/digits_cnn.yaml")
    cfg["train"]["epochs"]            # defaults filled in
"""
from __future__ import annotations

import copy
import hashlib
import math
import os
from typing import Any

import yaml

from components.evaluate.gates import GateError, Gates
from components.config_section import SectionError
from components.infra_validate.config import InfraValidationConfig
from components.ingest.config import DataConfig
from components.push.config import PushConfig
from components.train.config import MAX_EPOCHS, TrainConfig  # noqa: F401 (MAX_EPOCHS: re-exported)
from serving.layout import MODEL_NAME_RULE, is_model_name  # the one model/pipeline name rule


class ConfigError(ValueError):
    """A user error in a config file (exit code 2, no traceback)."""


# A field is (types, default, allowed-values-or-None). A nested dict is a section.
# `REQUIRED` marks fields without a default.
REQUIRED = object()
ANY_DICT = "any-dict"  # free-form mapping, validated by the component that owns it

SCHEMA: dict[str, Any] = {
    "pipeline_name": ((str,), REQUIRED, None),
    "runs_dir": ((str,), "runs", None),
    # keys, types, defaults and allowed values from the section's one schema, components/ingest/config.py
    "data": DataConfig.schema(),
    "model": {
        "name": ((str,), "digits_cnn", None),
        "hparams": ((dict,), {}, None),
    },
    # keys, types, defaults and allowed values from the section's one schema, components/train/config.py
    "train": TrainConfig.schema(),
    # the gates schema shared with `validate` (components/evaluate/gates.py); metrics take TFMA/Keras names
    "evaluate": ((dict, type(None)), {}, ANY_DICT),
    "optimize": ((dict,), {"engine": "auto"}, ANY_DICT),
    "monitor": ((dict,), {}, ANY_DICT),  # pipeline/monitor/config.py validates it
    # keys and defaults from the section's one schema, components/infra_validate/config.py
    "infra_validation": InfraValidationConfig.schema(),
    # keys, types and defaults from the section's one schema, components/push/config.py
    "push": PushConfig.schema(),
    "beam_args": ((list,), ["--direct_running_mode=in_memory", "--direct_num_workers=1"], None),
    "enable_cache": ((bool,), True, None),
}


def _check(section: dict, schema: dict, path: str) -> dict:
    if not isinstance(section, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {type(section).__name__} {section!r}")
    unknown = sorted(set(section) - set(schema))
    if unknown:
        key = f"{path}.{unknown[0]}" if path else unknown[0]
        raise ConfigError(
            f"unknown config key '{key}'. Allowed keys{' in ' + path if path else ''}: {', '.join(sorted(schema))}"
        )
    out = {}
    for key, spec in schema.items():
        where = f"{path}.{key}" if path else key
        if isinstance(spec, dict):
            out[key] = _check(section.get(key) or {}, spec, where)
            continue
        types, default, allowed = spec
        if key not in section:
            if default is REQUIRED:
                raise ConfigError(f"missing required config key '{where}'")
            out[key] = copy.deepcopy(default)
            continue
        value = section[key]
        if isinstance(value, bool) and bool not in types:  # YAML `yes` is not a number
            raise ConfigError(f"config key '{where}' has bad value {value!r}: expected {_type_names(types)}")
        if not isinstance(value, types):
            raise ConfigError(f"config key '{where}' has bad value {value!r}: expected {_type_names(types)}")
        if isinstance(value, float) and not math.isfinite(value):  # YAML `.inf` / `.nan`
            raise ConfigError(f"config key '{where}' has bad value {value!r}: expected a finite number")
        if isinstance(allowed, tuple) and value not in allowed:
            raise ConfigError(
                f"config key '{where}' has bad value {value!r}. Allowed values: {', '.join(map(str, allowed))}"
            )
        out[key] = value
    return out


def _type_names(types) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


def _check_semantics(cfg: dict) -> None:
    def bad(key, value, want):
        raise ConfigError(f"config key '{key}' has bad value {value!r}: {want}")

    if not is_model_name(cfg["pipeline_name"]):
        bad("pipeline_name", cfg["pipeline_name"], f"use {MODEL_NAME_RULE}")
    for i, arg in enumerate(cfg["beam_args"]):
        if not isinstance(arg, str) or not arg.startswith("--"):
            bad(f"beam_args[{i}]", arg, "expected a Beam pipeline option string such as '--direct_num_workers=1'")
    for section in (PushConfig, DataConfig, TrainConfig, InfraValidationConfig):  # each section's own range checks
        try:
            section.from_dict(cfg[section.SECTION])
        except SectionError as e:
            raise ConfigError(e.config_message()) from None
    cfg["evaluate"] = parse_evaluate(cfg["evaluate"])


def parse_evaluate(section: dict | None) -> dict:
    """The `evaluate:` section through the one gates schema, in the flat form the Evaluator is built from."""
    raw = dict(section or {})
    for key in ("per_class_recall_lower_bound", "max_accuracy_drop"):  # null = no gate, as it always meant
        if key in raw and raw[key] is None:
            del raw[key]
    try:
        gates = Gates.from_dict(raw, metric_names=None)
    except GateError as e:
        raise ConfigError(e.message("config", "evaluate.")) from None
    for key in ("accuracy", "per_class_recall"):
        bounds = getattr(gates, key)
        if bounds is not None and (bounds.upper_bound is not None or bounds.lower_bound is None):
            raise ConfigError(f"config key 'evaluate.{key}' has bad value {bounds.to_dict()!r}: the Evaluator gates {key} "
                              f"with a lower_bound only, e.g. {{lower_bound: 0.9}}")
    return gates.to_evaluator_dict()


def validate_config(raw: dict) -> dict:
    """Return a complete config (defaults filled in) or raise ConfigError."""
    cfg = _check(raw or {}, SCHEMA, "")
    _check_semantics(cfg)
    from models import list_models  # the registry is the one source of model names

    names = list_models()
    if cfg["model"]["name"] not in names:
        raise ConfigError(
            f"config key 'model.name' has bad value {cfg['model']['name']!r}. Allowed values: {', '.join(sorted(names))}"
        )
    unknown = sorted(set(cfg["model"]["hparams"]) - set(names[cfg["model"]["name"]]))
    if unknown:
        raise ConfigError(
            f"unknown config key 'model.hparams.{unknown[0]}' for model {cfg['model']['name']!r}. "
            f"Allowed keys: {', '.join(sorted(names[cfg['model']['name']])) or '(none)'}"
        )
    from components.train.augment_config import parse_augmentation

    try:  # validated now, not minutes later inside the Trainer; its messages name train.augmentation.<op>.<key>
        parse_augmentation(cfg["train"]["augmentation"])
    except ValueError as e:
        raise ConfigError(str(e)) from None
    from components.train import optim

    train = cfg["train"]
    try:  # the real builders, on a stand-in step count: unknown args and bad values fail now
        optim.build_schedule(train["schedule"], train["learning_rate"], total_steps=10**9, **train["schedule_args"])
    except (TypeError, ValueError) as e:
        raise ConfigError(f"config key 'train.schedule_args': {e}") from None
    try:
        optim.build_optimizer(train["optimizer"], 0.1, weight_decay=train["weight_decay"], momentum=train["momentum"], nesterov=train["nesterov"])
    except ValueError as e:
        raise ConfigError(f"config key 'train.optimizer': {e}") from None
    if cfg["evaluate"]["metrics"]:  # TFMA loads in seconds: only when the config names a metric
        from components.evaluate.eval_config import check_metric_name

        for i, metric in enumerate(cfg["evaluate"]["metrics"]):
            try:
                check_metric_name(metric["name"])
            except ValueError as e:
                raise ConfigError(f"config key 'evaluate.metrics[{i}].name': {e}") from None
    from components.optimize import OptimizeConfigError, validate_optimize_config

    try:
        validate_optimize_config(cfg["optimize"])
    except OptimizeConfigError as e:
        raise ConfigError(f"config key 'optimize': {e}") from None
    from pipeline.monitor.config import MonitorConfigError, validate_monitor_config

    try:
        validate_monitor_config(cfg["monitor"])
    except MonitorConfigError as e:
        raise ConfigError(f"config key 'monitor': {e}") from None
    runs = cfg["runs_dir"]
    cfg["data"]["data_dir"] = os.path.expanduser(cfg["data"]["data_dir"] or os.path.join(runs, "tensorflow_datasets"))
    cfg["push"]["serving_base"] = cfg["push"]["serving_base"] or os.path.join(runs, "serving")
    for key, path in _output_dirs(cfg).items():
        _check_not_a_file(key, path)
    return cfg


def _output_dirs(cfg: dict) -> dict[str, str]:
    return {"runs_dir": cfg["runs_dir"], "data.data_dir": cfg["data"]["data_dir"], "push.serving_base": cfg["push"]["serving_base"]}


def _check_not_a_file(key: str, path: str) -> None:
    """ConfigError if `path`, or a parent of it, is a file here. Nothing is created or required to
    be writable: `compile` validates configs meant for other machines (`make_output_dirs` does that for `run`)."""
    if "://" in path:  # gs://, s3://: checked by the filesystem that serves it
        return
    probe = os.path.abspath(path)
    while not os.path.lexists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        what = "is a file" if probe == os.path.abspath(path) else f"is under '{probe}', which is not a directory"
        raise ConfigError(f"config key '{key}' has bad value {path!r}: it {what}; point it at a directory")


def make_output_dirs(cfg: dict) -> None:
    """Create the run's directories up front: a path the OS refuses is a config error, not a failed run."""
    for key, path in _output_dirs(cfg).items():
        if "://" in path:
            continue
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"config key '{key}' has bad value {path!r}: cannot create it ({e.strerror or e}); choose a directory you can write to") from None


def read_yaml_file(path: str, what: str, example: str, error=None):
    """Parse a YAML file; a missing or malformed file raises `error` naming it and an example."""
    error = error or ConfigError
    if not os.path.isfile(path):
        raise error(f"{what} '{path}' does not exist (see {example} for an example)")
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
        return yaml.safe_load(text)
    except UnicodeDecodeError as e:
        raise error(f"{what} '{path}' is not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); save it as UTF-8") from None
    except yaml.YAMLError as e:
        raise error(f"{what} '{path}' is not valid YAML: {e}") from None
    except OSError as e:
        raise error(f"{what} '{path}' cannot be read: {e.strerror or e}") from None


def load_config(path: str) -> dict:
    """Read and validate a YAML config; paths inside stay relative to the working directory."""
    cfg = validate_config(read_yaml_file(path, "config file", "configs/digits_cnn.yaml"))
    cfg["_config_path"] = path
    cfg["_config_hash"] = file_sha256(path)
    return cfg


def file_sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
