"""The `optimize:` config section, validated before any pipeline work starts.

Every problem names the key, the bad value, what is allowed and how to fix it, so a
typo in the YAML fails at pipeline construction, not an hour later on the GPU node.

    config = validate_optimize_config({"engine": "auto", "precision": "auto"})
    config.max_prob_diff_for("INT8")   # 0.05 (the INT8 default; an explicit parity_max_prob_diff wins)
    ModelOptimizer(model=..., examples=..., optimize_config=config.to_json())
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Mapping

ENGINES = ("auto", "tf-trt", "tensorrt", "onnx", "none")
PRECISIONS = ("AUTO", "FP32", "FP16", "INT8")  # AUTO: the fastest candidate that passes the gates
CANDIDATE_PRECISIONS = PRECISIONS[1:]
# Reduced precision moves probabilities more; the bound follows the precision unless set.
DEFAULT_MAX_PROB_DIFF = {"FP32": 0.001, "FP16": 0.02, "INT8": 0.05}
MAX_BATCH_SIZE = 4096
MAX_BATCH_SIZES = 16
MAX_EXAMPLES = 100_000
MAX_TIMING_SECONDS = 60.0
MAX_SPEEDUP = 1000.0


class OptimizeConfigError(ValueError):
    """A bad value in the `optimize:` section; the message says which key and how to fix it."""


@dataclasses.dataclass(frozen=True)
class OptimizeConfig:
    """Validated settings of the ModelOptimizer component.

    Build it with `validate_optimize_config(section)`; `to_json()` is the exec-property form.

        OptimizeConfig.from_json(validate_optimize_config({}).to_json()).engine  # "auto"
    """

    engine: str = "auto"
    precision: str = "AUTO"
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    calibration_examples: int = 512
    parity_examples: int = 256
    parity_min_top1_agreement: float = 0.995
    parity_max_prob_diff: float | None = None  # None: by candidate precision (DEFAULT_MAX_PROB_DIFF)
    max_accuracy_drop: float = 0.005  # eval-split accuracy may fall by at most this much
    accuracy_examples: int = 10_000
    timing_batch: int = 256  # the large batch timed besides batch 1
    timing_seconds: float = 1.0  # per engine and batch size
    min_speedup: float = 1.0  # the artifact must be faster than this at batch 1 AND at timing_batch

    def max_prob_diff_for(self, precision: str) -> float:
        """The parity bound for one candidate precision: the configured one, else the precision's default."""
        return DEFAULT_MAX_PROB_DIFF[precision] if self.parity_max_prob_diff is None else self.parity_max_prob_diff

    def candidate_precisions(self) -> tuple[str, ...]:
        return CANDIDATE_PRECISIONS if self.precision == "AUTO" else (self.precision,)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "OptimizeConfig":
        return validate_optimize_config(text)


def _fail(key: str, value: Any, allowed: str) -> OptimizeConfigError:
    return OptimizeConfigError(f"optimize.{key}: got {value!r}; allowed: {allowed}. Fix `optimize.{key}` in the pipeline config.")


def _choice(key: str, value: Any, choices: tuple[str, ...], normalize) -> str:
    if isinstance(value, str) and normalize(value) in choices:
        return normalize(value)
    raise _fail(key, value, " | ".join(choices))


def _int_in_range(key: str, value: Any, low: int, high: int) -> int:
    # bool is an int in Python; `calibration_examples: true` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _fail(key, value, f"an integer from {low} to {high}")
    return value


def _fraction(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not 0.0 <= value <= 1.0:
        raise _fail(key, value, "a number from 0.0 to 1.0")
    return float(value)


def _seconds(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not 0.05 <= value <= MAX_TIMING_SECONDS:
        raise _fail(key, value, f"a number of seconds from 0.05 to {MAX_TIMING_SECONDS}")
    return float(value)


def _speedup(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not 0.0 <= value <= MAX_SPEEDUP:
        raise _fail("min_speedup", value, f"a number from 0.0 to {MAX_SPEEDUP} (1.0: must be faster than the original)")
    return float(value)


def _batch_sizes(value: Any) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_BATCH_SIZES:
        raise _fail("batch_sizes", value, f"a list of 1 to {MAX_BATCH_SIZES} integers, e.g. [1, 8, 32]")
    sizes = [_int_in_range("batch_sizes", v, 1, MAX_BATCH_SIZE) for v in value]
    return tuple(sorted(set(sizes)))


def validate_optimize_config(section: Mapping[str, Any] | str | OptimizeConfig | None) -> OptimizeConfig:
    """Checks the `optimize:` section (a mapping, its JSON text, or None for defaults).

    Raises OptimizeConfigError naming the key, the bad value and the allowed values.

        validate_optimize_config({"engine": "onnx", "parity_examples": 64})
        validate_optimize_config({"precision": "fp64"})  # OptimizeConfigError: optimize.precision ...
    """
    if isinstance(section, OptimizeConfig):
        return section
    if section is None:
        section = {}
    if isinstance(section, str):
        try:
            section = json.loads(section)
        except json.JSONDecodeError as e:
            raise OptimizeConfigError(f"optimize: the config is not valid JSON ({e}); pass a mapping or OptimizeConfig.to_json().") from e
    if not isinstance(section, Mapping):
        raise OptimizeConfigError(f"optimize: expected a mapping of settings, got {type(section).__name__}; write `optimize:` as a YAML mapping.")
    allowed_keys = [f.name for f in dataclasses.fields(OptimizeConfig)]
    unknown = sorted(set(section) - set(allowed_keys))
    if unknown:
        raise OptimizeConfigError(f"optimize: unknown key(s) {unknown}; allowed keys: {', '.join(allowed_keys)}. Check the spelling.")

    defaults = OptimizeConfig()
    precision = _choice("precision", section.get("precision", defaults.precision), PRECISIONS, str.upper)
    max_diff = section.get("parity_max_prob_diff")
    if max_diff is None and precision != "AUTO":
        max_diff = DEFAULT_MAX_PROB_DIFF[precision]
    return OptimizeConfig(
        engine=_choice("engine", section.get("engine", defaults.engine), ENGINES, str.lower),
        precision=precision,
        batch_sizes=_batch_sizes(section.get("batch_sizes", list(defaults.batch_sizes))),
        calibration_examples=_int_in_range("calibration_examples", section.get("calibration_examples", defaults.calibration_examples), 1, MAX_EXAMPLES),
        parity_examples=_int_in_range("parity_examples", section.get("parity_examples", defaults.parity_examples), 1, MAX_EXAMPLES),
        parity_min_top1_agreement=_fraction("parity_min_top1_agreement", section.get("parity_min_top1_agreement", defaults.parity_min_top1_agreement)),
        parity_max_prob_diff=None if max_diff is None else _fraction("parity_max_prob_diff", max_diff),
        max_accuracy_drop=_fraction("max_accuracy_drop", section.get("max_accuracy_drop", defaults.max_accuracy_drop)),
        accuracy_examples=_int_in_range("accuracy_examples", section.get("accuracy_examples", defaults.accuracy_examples), 1, MAX_EXAMPLES),
        timing_batch=_int_in_range("timing_batch", section.get("timing_batch", defaults.timing_batch), 1, MAX_BATCH_SIZE),
        timing_seconds=_seconds("timing_seconds", section.get("timing_seconds", defaults.timing_seconds)),
        min_speedup=_speedup(section.get("min_speedup", defaults.min_speedup)),
    )
