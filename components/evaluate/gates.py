"""The gates schema: one vocabulary for the pipeline's `evaluate:` section and `thresholds.yaml`.

`python -m pipeline validate --thresholds` and the pipeline's Evaluator gate the same things
with the same spelling; `from_dict` names the key, the bad value and what is allowed.
Import-free apart from the standard library, so validating a config does not load TensorFlow.

    gates = Gates.from_dict({"accuracy": {"lower_bound": 0.9}, "max_accuracy_drop": 0.01})
    gates.accuracy.lower_bound                        # 0.9
    Gates.from_dict({"accuracy_lower_bound": 0.9})    # the old pipeline spelling, same gate
"""
from __future__ import annotations

import dataclasses
import math

BOUND_KEYS = ("lower_bound", "upper_bound")
# Metrics `validate` computes from the confusion matrix (the pipeline's Evaluator takes TFMA/Keras class names).
CONFUSION_METRICS = ("accuracy", "macro_precision", "macro_recall", "macro_f1", "min_class_precision", "min_class_recall", "min_class_f1")
# Old pipeline spellings -> (gate, bound): kept so existing configs keep working.
ALIASES = {"accuracy_lower_bound": ("accuracy", "lower_bound"), "per_class_recall_lower_bound": ("per_class_recall", "lower_bound")}
DEFAULT_ACCURACY_LOWER_BOUND = 0.9  # the pipeline's gate when its config sets none


class GateError(ValueError):
    """A bad gate: `key` is its path in the section, `problem` the rest of the sentence."""

    def __init__(self, key: str, problem: str, unknown: bool = False):
        self.key, self.problem, self.unknown = key, problem, unknown
        super().__init__(f"key '{key}'{problem}")

    def message(self, what: str, prefix: str = "") -> str:
        """The error as the caller's users see it, e.g. message("thresholds") or message("config", "evaluate.")."""
        if self.unknown:
            return f"unknown {what} key '{prefix}{self.key}'{self.problem}"
        return f"{what} key '{prefix}{self.key}'{self.problem}"


def _fraction(key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise GateError(key, f" has bad value {value!r}: expected a number in [0, 1]")
    return value


def _finite(key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GateError(key, f" has bad value {value!r}: expected a finite number")
    return value


@dataclasses.dataclass(frozen=True)
class Bounds:
    """`{lower_bound: x}` and/or `{upper_bound: y}`."""

    lower_bound: float | None = None
    upper_bound: float | None = None

    @classmethod
    def from_dict(cls, key: str, value, check=_fraction) -> "Bounds":
        if not isinstance(value, dict) or not value or set(value) - set(BOUND_KEYS):
            raise GateError(key, f" has bad value {value!r}: expected {{lower_bound: x}} and/or {{upper_bound: y}} with "
                                f"{'numbers in [0, 1]' if check is _fraction else 'finite numbers'}")
        for bound, number in value.items():
            check(f"{key}.{bound}", number)
        if len(value) == 2 and value["lower_bound"] > value["upper_bound"]:
            raise GateError(key, f": lower_bound {value['lower_bound']} is above upper_bound {value['upper_bound']}")
        return cls(**value)

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclasses.dataclass(frozen=True)
class MetricGate:
    name: str
    bounds: Bounds

    def to_dict(self) -> dict:
        return {"name": self.name, **self.bounds.to_dict()}


@dataclasses.dataclass(frozen=True)
class Gates:
    """Every gate is optional here; callers add their own rules (`validate` needs one gate, the pipeline a default)."""

    accuracy: Bounds | None = None
    per_class_recall: Bounds | None = None  # applied to every class
    max_accuracy_drop: float | None = None  # vs the baseline (the latest blessed / --baseline model)
    metrics: tuple[MetricGate, ...] = ()

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(field.name for field in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, raw: dict, metric_names: tuple[str, ...] | None = CONFUSION_METRICS) -> "Gates":
        """`metric_names`: the names a `metrics:` entry may use, with bounds in [0, 1];
        None takes any class name (the pipeline: TFMA/Keras, checked by eval_config) with finite bounds."""
        unknown = sorted(set(raw) - set(cls.keys()) - set(ALIASES))
        if unknown:
            raise GateError(unknown[0], f". Allowed keys: {', '.join(cls.keys())}", unknown=True)
        out: dict = {}
        for key in ("accuracy", "per_class_recall"):
            if key in raw:
                out[key] = Bounds.from_dict(key, raw[key])
        for alias, (key, bound) in ALIASES.items():
            if alias in raw:
                if key in raw:
                    raise GateError(alias, f" names the same gate as '{key}'; keep only {key}: {{{bound}: x}}")
                out[key] = Bounds(**{bound: _fraction(alias, raw[alias])})
        if "max_accuracy_drop" in raw:
            out["max_accuracy_drop"] = float(_fraction("max_accuracy_drop", raw["max_accuracy_drop"]))
        entries = raw.get("metrics", [])
        if not isinstance(entries, list):
            raise GateError("metrics", f" has bad value {entries!r}: expected a list of {{name: <metric>, lower_bound: x}}")
        metrics = []
        for i, entry in enumerate(entries):
            where = f"metrics[{i}]"
            if not isinstance(entry, dict) or "name" not in entry:
                raise GateError(where, f" has bad value {entry!r}: expected {{name: <metric>, lower_bound: x and/or upper_bound: y}}")
            name = entry["name"]
            if metric_names is not None and name not in metric_names:
                raise GateError(f"{where}.name", f" has bad value {name!r}. Allowed values: {', '.join(metric_names)}")
            if metric_names is None and not isinstance(name, str):
                raise GateError(f"{where}.name", f" has bad value {name!r}: expected a TFMA or Keras metric class name, e.g. AUC")
            check = _fraction if metric_names is not None else _finite
            metrics.append(MetricGate(name, Bounds.from_dict(where, {k: v for k, v in entry.items() if k != "name"}, check)))
        return cls(metrics=tuple(metrics), **out)

    def to_dict(self) -> dict:
        """The set gates in the canonical spelling (what thresholds.yaml holds)."""
        out: dict = {}
        for key in ("accuracy", "per_class_recall"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key).to_dict()
        if self.max_accuracy_drop is not None:
            out["max_accuracy_drop"] = self.max_accuracy_drop
        out["metrics"] = [m.to_dict() for m in self.metrics]
        return out

    def to_evaluator_dict(self) -> dict:
        """The pipeline's validated `evaluate` section: the flat form the Evaluator's TFMA config is built from."""
        return {
            "accuracy_lower_bound": self.accuracy.lower_bound if self.accuracy else DEFAULT_ACCURACY_LOWER_BOUND,
            "per_class_recall_lower_bound": self.per_class_recall.lower_bound if self.per_class_recall else None,
            "max_accuracy_drop": self.max_accuracy_drop,
            "metrics": [m.to_dict() for m in self.metrics],
        }
