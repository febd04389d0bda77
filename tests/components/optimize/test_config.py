"""The `optimize:` section is validated up front, with errors naming key, value and fix."""
import json
import math

import pytest

from components.optimize import OptimizeConfig, OptimizeConfigError, validate_optimize_config


def test_defaults_and_json_round_trip():
    config = validate_optimize_config(None)
    assert config == OptimizeConfig()
    assert (config.engine, config.precision, config.parity_examples) == ("auto", "AUTO", 256)
    assert config.parity_min_top1_agreement == 0.995 and config.parity_max_prob_diff is None  # by candidate precision
    assert (config.max_accuracy_drop, config.timing_batch, config.min_speedup) == (0.005, 256, 1.0)
    assert OptimizeConfig.from_json(config.to_json()) == config
    assert json.loads(config.to_json())["batch_sizes"] == [1, 8, 32]


def test_values_are_normalized_and_the_bound_follows_precision():
    config = validate_optimize_config({"engine": "TF-TRT", "precision": "int8", "batch_sizes": [32, 1, 8, 8]})
    assert (config.engine, config.precision, config.batch_sizes) == ("tf-trt", "INT8", (1, 8, 32))
    assert config.parity_max_prob_diff == 0.05
    assert validate_optimize_config({"precision": "FP32"}).parity_max_prob_diff == 0.001
    assert validate_optimize_config({"precision": "FP32", "parity_max_prob_diff": 0.3}).parity_max_prob_diff == 0.3


def test_auto_precision_tries_every_precision_with_its_own_bound():
    config = validate_optimize_config({"precision": "auto"})
    assert config.candidate_precisions() == ("FP32", "FP16", "INT8")
    assert [config.max_prob_diff_for(p) for p in ("FP32", "FP16", "INT8")] == [0.001, 0.02, 0.05]
    explicit = validate_optimize_config({"precision": "auto", "parity_max_prob_diff": 0.01})
    assert [explicit.max_prob_diff_for(p) for p in ("FP32", "INT8")] == [0.01, 0.01]
    assert validate_optimize_config({"precision": "int8"}).candidate_precisions() == ("INT8",)
    assert OptimizeConfig.from_json(explicit.to_json()) == explicit


@pytest.mark.parametrize(
    "section, key, bad, allowed",
    [
        ({"engine": "trt"}, "engine", "'trt'", "auto | tf-trt | tensorrt | onnx | none"),
        ({"precision": "FP64"}, "precision", "'FP64'", "FP32 | FP16 | INT8"),
        ({"precision": 16}, "precision", "16", "FP32 | FP16 | INT8"),
        ({"batch_sizes": []}, "batch_sizes", "[]", "a list of 1 to 16 integers"),
        ({"batch_sizes": "8"}, "batch_sizes", "'8'", "a list of 1 to 16 integers"),
        ({"batch_sizes": [8, 0]}, "batch_sizes", "0", "an integer from 1 to 4096"),
        ({"batch_sizes": [True]}, "batch_sizes", "True", "an integer from 1 to 4096"),
        ({"calibration_examples": -5}, "calibration_examples", "-5", "an integer from 1 to 100000"),
        ({"parity_examples": 2.5}, "parity_examples", "2.5", "an integer from 1 to 100000"),
        ({"parity_min_top1_agreement": 1.5}, "parity_min_top1_agreement", "1.5", "a number from 0.0 to 1.0"),
        ({"parity_max_prob_diff": math.nan}, "parity_max_prob_diff", "nan", "a number from 0.0 to 1.0"),
        ({"parity_max_prob_diff": "small"}, "parity_max_prob_diff", "'small'", "a number from 0.0 to 1.0"),
        ({"max_accuracy_drop": -0.01}, "max_accuracy_drop", "-0.01", "a number from 0.0 to 1.0"),
        ({"accuracy_examples": 0}, "accuracy_examples", "0", "an integer from 1 to 100000"),
        ({"timing_batch": 5000}, "timing_batch", "5000", "an integer from 1 to 4096"),
        ({"timing_seconds": 0}, "timing_seconds", "0", "a number of seconds from 0.05 to 60.0"),
        ({"min_speedup": -1}, "min_speedup", "-1", "a number from 0.0 to 1000.0"),
    ],
)
def test_bad_values_name_key_value_and_allowed_values(section, key, bad, allowed):
    with pytest.raises(OptimizeConfigError) as err:
        validate_optimize_config(section)
    message = str(err.value)
    assert f"optimize.{key}" in message and f"got {bad}" in message and allowed in message, message


def test_unknown_key_lists_the_allowed_keys():
    with pytest.raises(OptimizeConfigError, match=r"unknown key\(s\) \['engines'\].*allowed keys: engine, precision"):
        validate_optimize_config({"engines": "auto"})


@pytest.mark.parametrize("section, match", [("{not json", "not valid JSON"), ([1, 2], "expected a mapping")])
def test_wrong_section_shape(section, match):
    with pytest.raises(OptimizeConfigError, match=match):
        validate_optimize_config(section)
