"""The `infra_validation:` config section: its one schema (keys, defaults, checks).

The pipeline's config validation (pipeline/config.py) and the infra validator's executor
read the section through this module, so a default is written once. Import-free apart from
the standard library, so validating a config does not load TensorFlow.

    InfraValidationConfig.from_dict({"timeout_seconds": 30}).skew_atol   # 1e-4
    parse_config('{"num_examples": 4}')["num_examples"]                  # 4 (the exec-property form)
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any


@dataclasses.dataclass(frozen=True)
class InfraValidationConfig:
    """Validated settings of the InfraValidator; `from_dict` names the key, bad value and what is allowed."""

    enabled: bool = True
    make_warmup: bool = True
    timeout_seconds: int = 60
    num_examples: int = 8  # requests per signature
    skew_examples: int = 64
    skew_atol: float = 1e-4  # also the allowed disagreement between signatures
    code: str = ""  # a source fingerprint, only so a code change invalidates TFX's cache (set by the build)

    @classmethod
    def from_dict(cls, config: dict | str | None) -> "InfraValidationConfig":
        raw: dict[str, Any] = json.loads(config) if isinstance(config, str) else dict(config or {})
        allowed = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(raw) - set(allowed))
        if unknown:
            raise ValueError(f"unknown infra validation key '{unknown[0]}'. Allowed keys: {', '.join(sorted(allowed))}")
        cfg = {**DEFAULT_CONFIG, **raw}
        for key in ("timeout_seconds", "num_examples", "skew_examples"):
            if isinstance(cfg[key], bool) or not isinstance(cfg[key], int) or cfg[key] < 1:
                raise ValueError(f"infra validation key '{key}' has bad value {cfg[key]!r}: expected an integer >= 1")
        if not isinstance(cfg["skew_atol"], (int, float)) or not cfg["skew_atol"] > 0:
            raise ValueError(f"infra validation key 'skew_atol' has bad value {cfg['skew_atol']!r}: expected a number > 0")
        return cls(**cfg)


DEFAULT_CONFIG = dataclasses.asdict(InfraValidationConfig())
# Keys a user writes in the YAML section (`code` is set by the pipeline build).
USER_KEYS = tuple(key for key in DEFAULT_CONFIG if key != "code")


def parse_config(config: dict | str) -> dict:
    """The `infra_validation:` config section (dict or JSON) with defaults filled in."""
    return dataclasses.asdict(InfraValidationConfig.from_dict(config))
