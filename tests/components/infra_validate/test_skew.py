"""Training/serving skew check on real SavedModels and a real tf.Transform graph."""
import os

import pytest

from components.infra_validate.skew import SkewCheckUnavailable, check_skew


def _check(synthetic, which):
    return check_skew(
        os.path.join(synthetic[which], "Format-Serving"), synthetic["transform_graph"], synthetic["eval_files"],
        keras_model_path=synthetic["keras_model"],
    )


def test_consistent_model_passes(synthetic):
    result = _check(synthetic, "good")
    assert result["passed"], result
    assert result["n"] == 24  # every example in the file (fewer than n=64)
    assert result["max_abs_diff"] < 1e-5
    assert set(result["per_signature"]) == {"serving_default", "serving_images"}


def test_mismatched_serving_preprocessing_is_caught(synthetic):
    result = _check(synthetic, "skewed")
    assert not result["passed"]
    assert result["max_abs_diff"] > 1e-2, result  # [0, 1] pixels vs standardized pixels
    assert "training/serving skew" in result["reason"] and "allowed 0.0001" in result["reason"]
    assert "transform_features_layer" in result["reason"]  # names the fix


def test_missing_signature_is_a_failed_check(synthetic):
    result = _check(synthetic, "no_images")
    assert not result["passed"] and "no 'serving_images' signature" in result["reason"]


def test_without_trained_model_says_what_to_save(synthetic, tmp_path):
    # Keras 3 models inside the serving tf.Module come back without a call function.
    with pytest.raises(SkewCheckUnavailable, match="model.keras"):
        check_skew(os.path.join(synthetic["good"], "Format-Serving"), synthetic["transform_graph"], synthetic["eval_files"])
    with pytest.raises(SkewCheckUnavailable, match="no trained Keras model at"):
        check_skew(os.path.join(synthetic["good"], "Format-Serving"), synthetic["transform_graph"], synthetic["eval_files"],
                   keras_model_path=str(tmp_path / "missing.keras"))
