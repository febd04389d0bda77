"""Each config section's defaults have one home: the pipeline config and the component agree."""
import dataclasses

import pytest

from components.infra_validate import executor as infra_executor
from components.infra_validate.config import InfraValidationConfig, parse_config
from pipeline.config import ConfigError, validate_config


def test_infra_validation_defaults_come_from_the_component_schema():
    cfg = validate_config({"pipeline_name": "p"})
    defaults = dataclasses.asdict(InfraValidationConfig())
    assert cfg["infra_validation"] == {k: v for k, v in defaults.items() if k != "code"}
    assert parse_config(cfg["infra_validation"]) == defaults
    assert infra_executor.parse_config is parse_config  # the executor reads the same schema
    assert not hasattr(infra_executor, "DEFAULT_CONFIG")


def test_infra_validation_bad_value_names_the_key():
    with pytest.raises(ValueError, match="'skew_atol' has bad value -1"):
        InfraValidationConfig.from_dict({"skew_atol": -1})
    with pytest.raises(ConfigError, match="infra_validation.timeout_seconds"):
        validate_config({"pipeline_name": "p", "infra_validation": {"timeout_seconds": "soon"}})
    with pytest.raises(ConfigError, match="unknown config key 'infra_validation.code'"):
        validate_config({"pipeline_name": "p", "infra_validation": {"code": "x"}})


# ---------------------------------------------------------------- gates (issue 12, item 6)
def test_pipeline_and_validate_parse_gates_with_the_same_schema(monkeypatch):
    from components.evaluate import gates as gates_module
    from pipeline import config as pipeline_config
    from pipeline import validate_cmd

    assert pipeline_config.Gates is validate_cmd.Gates is gates_module.Gates
    calls = []
    real = gates_module.Gates.from_dict.__func__

    def spy(cls, raw, metric_names=gates_module.CONFUSION_METRICS):
        calls.append(dict(raw))
        return real(cls, raw, metric_names)

    monkeypatch.setattr(gates_module.Gates, "from_dict", classmethod(spy))
    validate_config({"pipeline_name": "p", "evaluate": {"accuracy": {"lower_bound": 0.8}}})
    validate_cmd.parse_thresholds({"accuracy": {"lower_bound": 0.7}})
    assert calls == [{"accuracy": {"lower_bound": 0.8}}, {"accuracy": {"lower_bound": 0.7}}]


def test_thresholds_yaml_spelling_works_in_the_pipeline_config():
    import yaml

    with open("configs/thresholds.yaml") as f:
        thresholds = yaml.safe_load(f)
    section = {key: thresholds[key] for key in ("accuracy", "per_class_recall", "max_accuracy_drop")}
    evaluate = validate_config({"pipeline_name": "p", "evaluate": section})["evaluate"]
    assert (evaluate["accuracy_lower_bound"], evaluate["per_class_recall_lower_bound"], evaluate["max_accuracy_drop"]) == (0.95, 0.8, 0.01)
    old = validate_config({"pipeline_name": "p", "evaluate": {"accuracy_lower_bound": 0.95, "per_class_recall_lower_bound": 0.8,
                                                              "max_accuracy_drop": 0.01}})["evaluate"]
    assert old == evaluate  # the old spelling is an alias of the same gate
    assert validate_config({"pipeline_name": "p"})["evaluate"]["accuracy_lower_bound"] == 0.9  # the default gate


@pytest.mark.parametrize("evaluate, words", [
    ({"accuracy": {"lower_bound": 0.9}, "accuracy_lower_bound": 0.8}, ["evaluate.accuracy_lower_bound", "same gate", "accuracy"]),
    ({"accuracy": {"lower_bound": 1.5}}, ["evaluate.accuracy.lower_bound", "1.5", "[0, 1]"]),
    ({"accuracy": {"upper_bound": 0.5}}, ["evaluate.accuracy", "lower_bound only"]),
    ({"max_accuracy_drop": -0.1}, ["evaluate.max_accuracy_drop", "-0.1", "[0, 1]"]),
    ({"acuracy": {"lower_bound": 0.9}}, ["unknown config key 'evaluate.acuracy'", "accuracy, per_class_recall"]),
])
def test_bad_gates_in_the_pipeline_config_name_key_and_value(evaluate, words):
    with pytest.raises(ConfigError) as e:
        validate_config({"pipeline_name": "p", "evaluate": evaluate})
    for w in words:
        assert w in str(e.value), (w, str(e.value))


# ---------------------------------------------------------------- train section (issue 12, item 6)
def test_train_schema_comes_from_the_component_dataclass():
    from components.train.config import TrainConfig
    from pipeline.config import SCHEMA

    assert SCHEMA["train"] == TrainConfig.schema()
    cfg = validate_config({"pipeline_name": "p"})
    assert cfg["train"] == dataclasses.asdict(TrainConfig())
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().epochs = 3


def test_train_checks_live_in_the_component_schema():
    from components.train.config import TrainConfig, TrainConfigError

    with pytest.raises(TrainConfigError, match="'warmup_epochs' has bad value 9: expected a number in \\[0, train.epochs = 5\\]"):
        TrainConfig.from_dict({"epochs": 5, "warmup_epochs": 9})
    with pytest.raises(ConfigError, match="config key 'train.label_smoothing' has bad value 1: expected a number in \\[0, 1\\)"):
        validate_config({"pipeline_name": "p", "train": {"label_smoothing": 1}})
