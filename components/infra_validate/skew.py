"""Training/serving skew: do the serving signatures compute what training computed?

Training fed the Keras model the Transform graph's output. Serving re-implements that
path inside the exported SavedModel (parse -> Transform layer -> model; the Transform's
standardization applied to raw pixels for `serving_images`; tokenizing for `serving_text`). If the two ever differ (a RawTransform that
normalizes differently, a lost channel, a wrong resize), accuracy in production drops
while every offline metric looks fine. This check feeds the same raw eval examples both
ways and compares the probabilities:

    reference = softmax(keras_model(TFTransformOutput(tg).transform_raw_features(parsed)["image" | "tokens"]))
    served    = SavedModel.signatures[serving_default | serving_images | serving_text](...)["probabilities"]

    result = check_skew("model/Format-Serving", "transform_graph/7", eval_files,
                        keras_model_path="model_run/model.keras")
    result  # {"passed": True, "max_abs_diff": 3e-7, "n": 64, "reason": "", ...}

The trained Keras model comes from `keras_model_path` (the Trainer's `model.keras` in its
model-run folder), or from the SavedModel's `model` attribute when that is callable.
Keras 3 models saved inside a tf.Module are restored without a call function, so the
serving SavedModel alone is not enough; then SkewCheckUnavailable says what to save.
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from components.transform.preprocessing import MODEL_INPUT_KEYS
from components.infra_validate.warmup import read_eval_sample
from components.train.keys import TRAINED_MODEL_FILE
from serving.contract import EXAMPLES_SIGNATURE



class SkewCheckUnavailable(RuntimeError):
    """The trained Keras model cannot be found, so there is nothing to compare against."""


def load_trained_model(model_dir: str, keras_model_path: str | None = None):
    """The trained model as a callable: transformed images -> logits."""
    if keras_model_path:
        if not os.path.isfile(keras_model_path):
            raise SkewCheckUnavailable(
                f"no trained Keras model at '{keras_model_path}'; the Trainer should save it there "
                f"(model.save(os.path.join(fn_args.model_run_dir, '{TRAINED_MODEL_FILE}')))"
            )
        import keras

        return keras.saving.load_model(keras_model_path, compile=False)
    attached = getattr(tf.saved_model.load(model_dir), "model", None)
    if callable(attached):
        return attached
    raise SkewCheckUnavailable(
        f"the SavedModel in '{model_dir}' does not keep a callable Keras model (Keras 3 models inside a "
        f"tf.Module are restored without their call function); pass keras_model_path, e.g. the Trainer's "
        f"'<model_run>/{TRAINED_MODEL_FILE}'"
    )


def _softmax(logits) -> np.ndarray:
    return tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1).numpy()


def _served_probabilities(loaded, sample) -> dict[str, np.ndarray]:
    """Probabilities of each Predict signature on the sample; a missing one raises KeyError."""
    outputs = {}
    for name in (EXAMPLES_SIGNATURE, sample.raw_signature):
        if name not in loaded.signatures:
            raise KeyError(f"the SavedModel has no '{name}' signature (it has {sorted(loaded.signatures)})")
        fn = loaded.signatures[name]
        if name == EXAMPLES_SIGNATURE:
            result = fn(examples=tf.constant(sample.serialized))
        else:
            (input_name,) = fn.structured_input_signature[1]
            result = fn(**{input_name: tf.constant(list(sample.raw) if sample.modality == "text" else sample.raw)})
        outputs[name] = result["probabilities"].numpy()
    return outputs


def check_skew(
    model_dir: str,
    transform_graph_uri: str,
    examples_files: list[str],
    n: int = 64,
    atol: float = 1e-4,
    keras_model_path: str | None = None,
) -> dict:
    """Compare serving outputs with the trained model on the Transform output.

    Args:
        model_dir: the serving SavedModel (the serving contract of components/train/export.py).
        transform_graph_uri: the Transform component's `transform_graph` folder.
        examples_files: raw tf.Example TFRecords (e.g. `<examples>/Split-eval/*.gz`).
        n: how many examples to compare (the first `n`).
        atol: largest allowed absolute difference of any probability.
        keras_model_path: the trained Keras model (`.keras`); see load_trained_model.

    Returns:
        {"passed": bool, "max_abs_diff": float | None, "n": int, "reason": str,
         "per_signature": {signature: max abs diff}}. A signature that fails to run is a
        failed check with the error in `reason`.

    Raises:
        SkewCheckUnavailable: no trained Keras model to compare against.
    """
    import tensorflow_transform as tft

    trained = load_trained_model(model_dir, keras_model_path)
    sample = read_eval_sample(examples_files, n)
    transform = tft.TFTransformOutput(transform_graph_uri)
    parsed = tf.io.parse_example(tf.constant(sample.serialized), transform.raw_feature_spec())
    transformed = transform.transform_raw_features(parsed)
    reference = _softmax(trained(transformed[MODEL_INPUT_KEYS[sample.modality]], training=False))

    result = {"passed": False, "max_abs_diff": None, "n": len(sample), "reason": "", "per_signature": {}}
    try:
        served = _served_probabilities(tf.saved_model.load(model_dir), sample)
    except Exception as error:  # noqa: BLE001  (any failure to load or run a signature is a finding)
        result["reason"] = f"a serving signature failed on raw eval examples: {type(error).__name__}: {str(error).splitlines()[0][:300]}"
        return result
    for name, probs in served.items():
        if probs.shape != reference.shape:
            result["reason"] = f"{name} returns probabilities of shape {probs.shape}, the trained model {reference.shape}"
            return result
        result["per_signature"][name] = float(np.max(np.abs(probs - reference)))
    result["max_abs_diff"] = max(result["per_signature"].values())
    result["passed"] = result["max_abs_diff"] <= atol
    if not result["passed"]:
        worst = max(result["per_signature"], key=result["per_signature"].get)
        result["reason"] = (
            f"training/serving skew: on {len(sample)} eval examples {worst} differs from the trained model on the "
            f"Transform output by up to {result['max_abs_diff']:.3g} (allowed {atol:g}); per signature: "
            + ", ".join(f"{k}={v:.3g}" for k, v in result["per_signature"].items())
            + ". Export the model with the Transform graph's layer (RawTransform(raw_spec, tft_output.transform_features_layer()))."
        )
    return result
