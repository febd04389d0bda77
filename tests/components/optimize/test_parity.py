"""The parity checker on real SavedModels: identical passes, a perturbed copy fails."""
import numpy as np
import pytest

from components.optimize.eval_data import read_eval_inputs, serving_image_shape
from components.optimize.parity import ALL_SIGNATURES, check_saved_model_parity, compare_probabilities, worst_of

from tests.components.optimize.conftest import EVAL_EXAMPLES, IMAGE_SHAPE

BOUNDS = {"min_top1_agreement": 0.995, "max_prob_diff": 0.02}


@pytest.fixture(scope="module")
def eval_inputs(eval_split_dir, saved_model_dir):
    return read_eval_inputs(eval_split_dir, limit=1000, image_shape=serving_image_shape(saved_model_dir))


def test_eval_inputs_are_read_from_the_split(eval_inputs):
    assert len(eval_inputs) == EVAL_EXAMPLES
    assert eval_inputs.images.shape == (EVAL_EXAMPLES, *IMAGE_SHAPE) and eval_inputs.images.dtype == np.uint8
    assert len(eval_inputs[:10]) == 10


def test_identical_models_pass_on_every_signature(saved_model_dir, eval_inputs):
    results = check_saved_model_parity(saved_model_dir, saved_model_dir, eval_inputs, **BOUNDS)
    assert set(results) == set(ALL_SIGNATURES)
    for result in results.values():
        assert result.passed and result.examples == EVAL_EXAMPLES
        assert result.top1_agreement == 1.0 and result.max_prob_diff <= 1e-6


def test_perturbed_model_fails(saved_model_dir, perturbed_saved_model_dir, eval_inputs):
    results = check_saved_model_parity(saved_model_dir, perturbed_saved_model_dir, eval_inputs, **BOUNDS)
    worst = worst_of(results)
    assert not worst.passed
    assert worst.top1_agreement < 0.5 and worst.max_prob_diff > 0.5
    assert "FAILED" in worst.describe() and "need >= 0.995" in worst.describe()


def test_nan_never_passes_and_shapes_must_match():
    reference = np.array([[0.9, 0.1], [0.2, 0.8]])
    candidate = np.array([[0.9, np.nan], [0.2, 0.8]])
    assert not compare_probabilities(reference, candidate, min_top1_agreement=0.0, max_prob_diff=1.0).passed
    with pytest.raises(ValueError, match="same shape"):
        compare_probabilities(reference, reference[:1], min_top1_agreement=0.0, max_prob_diff=1.0)
