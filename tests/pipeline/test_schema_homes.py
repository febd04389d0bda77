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
