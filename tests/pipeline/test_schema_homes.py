"""Each config section's defaults have one home: the pipeline config and the component agree."""
import dataclasses
import os

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
    ({"accuracy_lower_bound": 1.5}, ["evaluate.accuracy_lower_bound", "1.5", "[0, 1]"]),  # the alias, range-checked too
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


# ---------------------------------------------------------------- data and push sections (issue 12, item 6)
def _pipeline_schema_literal() -> dict:
    """pipeline/config.py's SCHEMA as written: key -> the AST node of its value."""
    import ast

    with open("pipeline/config.py") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", None) == "SCHEMA":
            return {key.value: value for key, value in zip(node.value.keys, node.value.values)}
    raise AssertionError("no SCHEMA in pipeline/config.py")


@pytest.mark.parametrize("key, module, name", [
    ("data", "components.ingest.config", "DataConfig"),
    ("push", "components.push.config", "PushConfig"),
    ("train", "components.train.config", "TrainConfig"),
    ("infra_validation", "components.infra_validate.config", "InfraValidationConfig"),
])
def test_section_schema_comes_from_its_component_dataclass(key, module, name):
    import ast
    import importlib

    from pipeline.config import SCHEMA

    section = getattr(importlib.import_module(module), name)
    assert section.SECTION == key
    assert SCHEMA[key] == section.schema()
    written = _pipeline_schema_literal()[key]  # generated, not written out again in pipeline/config.py
    assert isinstance(written, ast.Call) and ast.unparse(written) == f"{name}.schema()"
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(section(), dataclasses.fields(section)[0].name, None)


def test_data_defaults_live_only_in_the_ingest_section():
    from components.ingest.config import DataConfig, TextConfig

    cfg = validate_config({"pipeline_name": "p", "runs_dir": "r"})
    defaults = dataclasses.asdict(DataConfig())
    assert defaults["text"] == dataclasses.asdict(TextConfig()) == {"max_tokens": 20000, "sequence_length": 200}
    assert cfg["data"] == {**defaults, "data_dir": os.path.join("r", "tensorflow_datasets")}
    with open("pipeline/config.py") as f:
        source = f.read()
    for literal in ("20000", "sklearn_digits", "train_fraction", "image_folder", "'validation'", '"validation"'):
        assert literal not in source, literal


def test_push_defaults_and_name_rule_come_from_their_homes():
    from components.push.config import PushConfig
    from serving import layout

    cfg = validate_config({"pipeline_name": "p", "runs_dir": "r"})
    assert cfg["push"] == {**dataclasses.asdict(PushConfig()), "serving_base": os.path.join("r", "serving")}
    with pytest.raises(ConfigError) as e:
        validate_config({"pipeline_name": "p", "push": {"model_name": "-x"}})
    assert str(e.value) == f"config key 'push.model_name' has bad value '-x': use {layout.MODEL_NAME_RULE}"


@pytest.mark.parametrize("data, message", [
    ({"splits": {"train": "train", "eval": "validation"}}, "data key 'splits' has bad value"),
    ({"splits": {"train": "", "eval": "validation", "test": "test"}}, "data key 'splits.train' has bad value ''"),
    ({"label_names": ["a", ""]}, "data key 'label_names[1]' has bad value ''"),
    ({"source": "image_folder"}, "missing data key 'root': data.source 'image_folder' needs the folder to read"),
    ({"image_shape": [8, 8]}, "data key 'image_shape' has bad value [8, 8]: expected [height, width, channels]"),
    ({"train_fraction": 1.5}, "data key 'train_fraction' has bad value 1.5: expected a number in (0, 1]"),
    ({"text": {"max_tokens": 20000, "sequence_length": 0}}, "data key 'text.sequence_length' has bad value 0: expected an integer >= 1"),
])
def test_data_checks_live_in_the_ingest_section(data, message):
    from components.config_section import SectionError
    from components.ingest.config import DataConfig

    section = {**dataclasses.asdict(DataConfig()), **data}
    with pytest.raises(SectionError) as e:
        DataConfig.from_dict(section)
    assert message in str(e.value), str(e.value)
    with pytest.raises(ConfigError) as e:  # the pipeline config says the same, with the full key path
        validate_config({"pipeline_name": "p", "data": data})
    assert "'data." in str(e.value)


def test_one_field_helper_for_every_section():
    """`field` and `schema()` live once, in components/config_section.py: no section writes its own."""
    import ast

    from components.config_section import ConfigSection
    from components.ingest.config import DataConfig, TextConfig
    from components.push.config import PushConfig
    from components.train.config import TrainConfig

    for section in (DataConfig, TextConfig, PushConfig, TrainConfig):
        assert issubclass(section, ConfigSection)
        assert "schema" not in vars(section) and "from_dict" not in vars(section)
    offenders = []
    for folder in ("components", "pipeline"):
        for root, _, files in os.walk(folder):
            for name in files:
                path = os.path.join(root, name)
                if not name.endswith(".py") or path == os.path.join("components", "config_section.py"):
                    continue
                with open(path) as f:
                    tree = ast.parse(f.read())
                offenders += [f"{path}:{node.lineno}" for node in ast.walk(tree)
                              if isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "types" for k in node.keys)]
    assert offenders == []  # dataclass field metadata {"types": ...} is written only by config_section.field


def test_shipped_configs_spell_gates_the_one_way():
    """configs/ and the README teach `accuracy: {lower_bound: x}`; the old keys stay only as aliases."""
    import glob

    import yaml

    from components.evaluate.gates import ALIASES

    for path in sorted(glob.glob("configs/*.yaml")):
        with open(path) as f:
            raw = yaml.safe_load(f) or {}
        section = raw.get("evaluate", raw if "pipeline_name" not in raw else {}) or {}
        assert not set(section) & set(ALIASES), (path, sorted(set(section) & set(ALIASES)))
    with open("README.md") as f:
        readme = f.read()
    assert "accuracy_lower_bound:" not in readme and "accuracy: {lower_bound:" in readme
