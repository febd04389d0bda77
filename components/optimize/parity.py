"""Parity of an optimized model against the original, on real eval examples.

An optimized model is only pushed if, on N eval examples, its top-1 class agrees with the
original's often enough and no probability moves by more than a bound.

    result = check_saved_model_parity("orig/Format-Serving", "trt/Format-Serving", eval_inputs,
                                      min_top1_agreement=0.995, max_prob_diff=0.02)
    worst_of(result).passed
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from components.optimize.eval_data import EvalInputs
from serving.contract import CLASSIFY_SIGNATURE, EXAMPLES_SIGNATURE, IMAGES_SIGNATURE, PROBABILITIES_OUTPUT, SCORES_OUTPUT

ALL_SIGNATURES = (EXAMPLES_SIGNATURE, IMAGES_SIGNATURE, CLASSIFY_SIGNATURE)
PROBABILITY_OUTPUTS = (PROBABILITIES_OUTPUT, SCORES_OUTPUT)  # `scores` in the classification signature

Predictor = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class ParityResult:
    """Top-1 agreement and the largest absolute probability difference, with the bounds used."""

    examples: int
    top1_agreement: float
    max_prob_diff: float
    min_top1_agreement: float
    max_prob_diff_bound: float
    compared: str = ""

    @property
    def passed(self) -> bool:
        return self.top1_agreement >= self.min_top1_agreement and self.max_prob_diff <= self.max_prob_diff_bound

    def describe(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"parity {verdict} on {self.examples} eval examples{f' ({self.compared})' if self.compared else ''}: "
            f"top-1 agreement {self.top1_agreement:.4f} (need >= {self.min_top1_agreement}), "
            f"max probability difference {self.max_prob_diff:.3g} (need <= {self.max_prob_diff_bound})"
        )

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "passed": self.passed}


def compare_probabilities(reference: np.ndarray, candidate: np.ndarray, *, min_top1_agreement: float, max_prob_diff: float, compared: str = "") -> ParityResult:
    """Compares two [N, K] probability arrays for the same N inputs.

        compare_probabilities(p, p, min_top1_agreement=1.0, max_prob_diff=0.0).passed  # True
    """
    reference, candidate = np.asarray(reference, np.float64), np.asarray(candidate, np.float64)
    if reference.shape != candidate.shape or reference.ndim != 2 or len(reference) == 0:
        raise ValueError(f"parity needs two non-empty [N, K] arrays of the same shape; got {reference.shape} and {candidate.shape}")
    agreement = float(np.mean(reference.argmax(axis=1) == candidate.argmax(axis=1)))
    diff = float(np.max(np.abs(reference - candidate)))
    if not np.isfinite(candidate).all():
        diff = float("inf")  # NaN would compare False against any bound and pass silently
    return ParityResult(len(reference), agreement, diff, min_top1_agreement, max_prob_diff, compared)


def predict_in_batches(predict: Predictor, inputs: np.ndarray, batch_size: int = 64) -> np.ndarray:
    return np.concatenate([np.asarray(predict(inputs[i : i + batch_size])) for i in range(0, len(inputs), batch_size)])


def check_parity(reference: Predictor, candidate: Predictor, inputs: np.ndarray, *, min_top1_agreement: float, max_prob_diff: float, compared: str = "", batch_size: int = 64) -> ParityResult:
    """Runs both predictors on the same inputs and compares their probabilities."""
    return compare_probabilities(
        predict_in_batches(reference, inputs, batch_size),
        predict_in_batches(candidate, inputs, batch_size),
        min_top1_agreement=min_top1_agreement,
        max_prob_diff=max_prob_diff,
        compared=compared,
    )


def saved_model_predictor(saved_model_dir: str, signature: str) -> tuple[Predictor, tf.DType]:
    """(batch -> probabilities, input dtype) for one signature of a SavedModel."""
    loaded = tf.saved_model.load(saved_model_dir)
    if signature not in loaded.signatures:
        raise KeyError(f"{saved_model_dir} has no signature {signature!r}; it has {sorted(loaded.signatures)}")
    fn = loaded.signatures[signature]
    (input_name, input_spec), = fn.structured_input_signature[1].items()
    output_name = next((k for k in PROBABILITY_OUTPUTS if k in fn.structured_outputs), None)
    if output_name is None:
        raise KeyError(f"signature {signature!r} of {saved_model_dir} has no output among {PROBABILITY_OUTPUTS}")

    def predict(batch: np.ndarray) -> np.ndarray:
        _ = loaded  # the signature function needs its SavedModel object alive
        return fn(**{input_name: tf.constant(batch, dtype=input_spec.dtype)})[output_name].numpy()

    return predict, input_spec.dtype


def worst_of(results: Mapping[str, ParityResult]) -> ParityResult:
    """One result with the lowest agreement and the largest difference over several comparisons."""
    first = next(iter(results.values()))
    return ParityResult(
        examples=first.examples,
        top1_agreement=min(r.top1_agreement for r in results.values()),
        max_prob_diff=max(r.max_prob_diff for r in results.values()),
        min_top1_agreement=first.min_top1_agreement,
        max_prob_diff_bound=first.max_prob_diff_bound,
        compared=", ".join(results),
    )


def check_saved_model_parity(reference_dir: str, candidate_dir: str, eval_inputs: EvalInputs, *, min_top1_agreement: float, max_prob_diff: float, signatures: Sequence[str] = ALL_SIGNATURES) -> dict[str, ParityResult]:
    """Parity per signature; string signatures get serialized tf.Examples, uint8 ones get images."""
    results = {}
    for signature in signatures:
        reference, dtype = saved_model_predictor(reference_dir, signature)
        candidate, _ = saved_model_predictor(candidate_dir, signature)
        inputs = eval_inputs.serialized if dtype == tf.string else eval_inputs.images
        results[signature] = check_parity(reference, candidate, inputs, min_top1_agreement=min_top1_agreement, max_prob_diff=max_prob_diff, compared=signature)
    return results
