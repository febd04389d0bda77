"""The `monitor:` config section: which comparator and threshold judge each served feature.

Comparators are TFDV's (tensorflow_metadata FeatureComparator): `l_infinity` (largest
difference of one value's frequency; categorical features) and `jensen_shannon`
(approximate Jensen-Shannon divergence of the histograms; numeric features). Every
problem names the key, the bad value and what is allowed.

    monitor:
      min_requests: 100              # fewer logged examples: "insufficient traffic", exit 0
      max_examples: 50000            # newest logged examples read, per side
      since: 7d                      # default window (CLI --since overrides); null = all logs
      numeric: {comparator: jensen_shannon, threshold: 0.1}
      categorical: {comparator: l_infinity, threshold: 0.1}
      prediction_shift_threshold: 0.15   # L-infinity: predicted classes vs training labels
      features:                      # per-feature overrides
        intensity_c0: {threshold: 0.05}

    config = validate_monitor_config(cfg.get("monitor") or {})
    config.rule_for("intensity_c0", numeric=True)   # Rule(comparator="jensen_shannon", threshold=0.05)
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from typing import Any, Mapping

COMPARATORS = ("l_infinity", "jensen_shannon")
# Served features this monitor computes (pipeline/monitor/features.py), by modality.
IMAGE_FEATURES = ("intensity_c0", "intensity_c1", "intensity_c2", "image_size")
TEXT_FEATURES = ("token_count", "oov_rate")
CLASS_FEATURE = "class"  # training labels vs served predicted classes
KNOWN_FEATURES = (*IMAGE_FEATURES, *TEXT_FEATURES)
MAX_EXAMPLES_LIMIT = 1_000_000
_DURATION = re.compile(r"^([0-9]+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class MonitorConfigError(ValueError):
    """A bad value in the `monitor:` section or a bad --since; the message says how to fix it."""


@dataclasses.dataclass(frozen=True)
class Rule:
    comparator: str
    threshold: float


@dataclasses.dataclass(frozen=True)
class MonitorConfig:
    min_requests: int = 100
    max_examples: int = 50_000
    since: str | None = None
    numeric: Rule = Rule("jensen_shannon", 0.1)
    categorical: Rule = Rule("l_infinity", 0.1)
    prediction_shift_threshold: float = 0.15
    features: Mapping[str, Rule] = dataclasses.field(default_factory=dict)

    def rule_for(self, feature: str, numeric: bool) -> Rule:
        if feature == CLASS_FEATURE:
            return Rule("l_infinity", self.prediction_shift_threshold)
        return self.features.get(feature) or (self.numeric if numeric else self.categorical)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _fail(key: str, value: Any, allowed: str) -> MonitorConfigError:
    return MonitorConfigError(f"monitor.{key}: got {value!r}; allowed: {allowed}. Fix `monitor.{key}` in the pipeline config.")


def _int(key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(key, value, f"an integer from {low} to {high}")
    return value


def _threshold(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not 0.0 < value <= 1.0:
        raise _fail(key, value, "a number in (0, 1]")
    return float(value)


def _rule(key: str, value: Any, default: Rule) -> Rule:
    if not isinstance(value, Mapping) or set(value) - {"comparator", "threshold"}:
        raise _fail(key, value, "a mapping {comparator: l_infinity | jensen_shannon, threshold: 0 < x <= 1}")
    comparator = value.get("comparator", default.comparator)
    if comparator not in COMPARATORS:
        raise _fail(f"{key}.comparator", comparator, " | ".join(COMPARATORS))
    return Rule(comparator, _threshold(f"{key}.threshold", value.get("threshold", default.threshold)))


def validate_monitor_config(section: Mapping[str, Any] | None) -> MonitorConfig:
    """The `monitor:` section (a mapping, possibly empty) -> MonitorConfig, or MonitorConfigError."""
    section = dict(section or {})
    defaults = MonitorConfig()
    allowed = {f.name for f in dataclasses.fields(MonitorConfig)}
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise MonitorConfigError(f"unknown key monitor.{unknown[0]}; allowed keys: {', '.join(sorted(allowed))}")
    numeric = _rule("numeric", section.get("numeric", {}), defaults.numeric)
    categorical = _rule("categorical", section.get("categorical", {}), defaults.categorical)
    features = section.get("features") or {}
    if not isinstance(features, Mapping):
        raise _fail("features", features, "a mapping of feature name -> {comparator, threshold}")
    rules = {}
    for name, value in features.items():
        if name not in KNOWN_FEATURES:
            raise _fail(f"features.{name}", value, f"rules for the monitored features {', '.join(KNOWN_FEATURES)} "
                        f"(the predicted class uses prediction_shift_threshold)")
        base = categorical if name == "image_size" else numeric
        rules[name] = _rule(f"features.{name}", value, base)
    since = section.get("since", defaults.since)
    if since is not None:
        parse_since(since, now=dt.datetime.now(dt.timezone.utc), key="monitor.since")
    return MonitorConfig(
        min_requests=_int("min_requests", section.get("min_requests", defaults.min_requests), 1, MAX_EXAMPLES_LIMIT),
        max_examples=_int("max_examples", section.get("max_examples", defaults.max_examples), 1, MAX_EXAMPLES_LIMIT),
        since=since,
        numeric=numeric,
        categorical=categorical,
        prediction_shift_threshold=_threshold("prediction_shift_threshold",
                                              section.get("prediction_shift_threshold", defaults.prediction_shift_threshold)),
        features=rules,
    )


def parse_since(text: Any, now: dt.datetime, key: str = "--since") -> int:
    """`30m` / `24h` / `7d` / `2w` back from `now`, or an ISO-8601 time -> epoch seconds."""
    if isinstance(text, str):
        match = _DURATION.match(text.strip())
        if match:
            return int(now.timestamp()) - int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        try:
            when = dt.datetime.fromisoformat(text.strip())
        except ValueError:
            pass
        else:
            return int((when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)).timestamp())
    raise MonitorConfigError(f"{key}: got {text!r}; use a duration like 30m, 24h, 7d, 2w or an ISO time like 2026-01-31T12:00:00Z")
