"""The `infra_validation:` config section: its one schema (keys, defaults, checks).

The pipeline's config validation (pipeline/config.py builds its SCHEMA from `schema()`) and the
infra validator's executor read the section through this module, so a default is written once.
Import-free apart from the standard library, so validating a config does not load TensorFlow.

    InfraValidationConfig.from_dict({"timeout_seconds": 30}).skew_atol   # 1e-4
    parse_config('{"num_examples": 4}')["num_examples"]                  # 4 (the exec-property form)
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

from components.config_section import NUMBER, ConfigSection, field


@dataclasses.dataclass(frozen=True)
class InfraValidationConfig(ConfigSection):
    """Validated settings of the InfraValidator; `from_dict` names the key, bad value and what is allowed."""

    SECTION = "infra_validation"

    enabled: bool = field(True, (bool,))
    make_warmup: bool = field(True, (bool,))
    timeout_seconds: int = field(60, (int,))
    num_examples: int = field(8, (int,))  # requests per signature
    skew_examples: int = field(64, (int,))
    skew_atol: float = field(1e-4, NUMBER)  # also the allowed disagreement between signatures
    # A source fingerprint, only so a code change invalidates TFX's cache (set by the build).
    code: str = field("", (str,), internal=True)

    @classmethod
    def from_dict(cls, config: dict | str | None) -> "InfraValidationConfig":
        """The section as a dict, or the executor's JSON exec property (which also carries `code`)."""
        raw: dict[str, Any] = json.loads(config) if isinstance(config, str) else dict(config or {})
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(raw) - set(allowed))
        if unknown:
            raise ValueError(f"unknown infra validation key '{unknown[0]}'. Allowed keys: {', '.join(sorted(allowed))}")
        return super().from_dict(raw)

    def check(self) -> None:
        for key in ("timeout_seconds", "num_examples", "skew_examples"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise self.fail(key, value, "expected an integer >= 1")
        if isinstance(self.skew_atol, bool) or not isinstance(self.skew_atol, NUMBER) or not self.skew_atol > 0:
            raise self.fail("skew_atol", self.skew_atol, "expected a number > 0")


def parse_config(config: dict | str) -> dict:
    """The `infra_validation:` config section (dict or JSON) with defaults filled in."""
    return dataclasses.asdict(InfraValidationConfig.from_dict(config))
