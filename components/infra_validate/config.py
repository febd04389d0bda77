"""The `infra_validation:` config section: its keys, defaults and checks (one home).

    cfg = parse_config({"timeout_seconds": 120})   # defaults filled in, bad values raise ValueError
"""
from __future__ import annotations

import json

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
