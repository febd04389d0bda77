"""How a trained Keras model becomes a TF Serving SavedModel that keeps the serving contract.

Every model this project pushes has the signatures, inputs, outputs and label asset defined
in serving/contract.py (`serving_default`, `serving_images` or `serving_text`,
`classification`), all applying the same preprocessing the Trainer saw (the Transform graph),
and all returning float32.

`serving_images` applies the Transform's standardization to the uint8 pixels directly,
with the mean/std the Transform computed (`image_mean`/`image_std` outputs), so it costs
no PNG encode/decode; a Transform without those outputs gets the PNG round trip through
its own graph instead. The skew check (components/infra_validate/skew.py) proves the
signatures agree with each other and with the Keras model.

    export_serving_model(model, "out/1", transform=transform, image_shape=(8, 8, 1),
                         label_names=["0", ..., "9"])
    export_serving_model(model, "out/1", transform=transform, modality="text", label_names=["neg", "pos"])
"""
from __future__ import annotations

import os
import tempfile
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

from components.transform.preprocessing import (
    IMAGE_KEY, MEAN_KEY, MODEL_INPUT_KEYS, STD_KEY, TEXT_KEY, decode_images, standardize_images,
)
from serving.contract import (
    CLASSES_OUTPUT, CLASSIFY_INPUT, CLASSIFY_SIGNATURE, EXAMPLES_INPUT, EXAMPLES_SIGNATURE, IMAGES_INPUT, LABEL_ASSET,
    PROBABILITIES_OUTPUT, RAW_INPUTS, RAW_SIGNATURES, SCORES_OUTPUT, mark_classify_method,
)



class RawTransform:
    """Raw features -> model inputs, for serving.

    `layer` is the TFT TransformFeaturesLayer (tft.TFTransformOutput.transform_features_layer());
    `raw_feature_spec` parses serialized tf.Examples (label features removed). Without a
    Transform graph (benchmarks, tests), pass `layer=None`: PNG bytes are decoded and
    scaled to [0, 1] (images only).
    """

    def __init__(self, raw_feature_spec: Mapping[str, tf.io.FixedLenFeature] | None = None, layer=None):
        self.raw_feature_spec = dict(raw_feature_spec or {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)})
        self.layer = layer


def _image_stats(transform: RawTransform, image_shape) -> tuple[float, float] | None:
    """(mean, std) the Transform standardizes pixels with, or None if it does not say.

    Read by running the Transform graph once on a blank image; [0, 1] scaling without one.
    """
    if transform.layer is None:
        return 0.0, 1.0
    blank = tf.io.encode_png(tf.zeros(image_shape, tf.uint8))
    raw = {IMAGE_KEY: tf.reshape(blank, [1, *transform.raw_feature_spec[IMAGE_KEY].shape])}
    out = transform.layer(raw)
    if MEAN_KEY not in out or STD_KEY not in out:
        return None
    return float(np.asarray(out[MEAN_KEY]).ravel()[0]), float(np.asarray(out[STD_KEY]).ravel()[0])


class ServingModule(tf.Module):
    """Holds the model, the Transform layer and the label asset; defines the signatures."""

    def __init__(self, model, transform: RawTransform, label_names: Sequence[str], asset_path: str, *, modality: str, image_shape=None):
        super().__init__()
        self.model = model
        self.transform_layer = transform.layer
        self._raw_spec = transform.raw_feature_spec
        self._modality = modality
        self._image_shape = tuple(int(d) for d in image_shape) if image_shape is not None else None
        self.label_asset = tf.saved_model.Asset(asset_path)
        self._label_names = tf.constant(list(label_names))
        self._stats = _image_stats(transform, self._image_shape) if modality == "image" else None

    def _to_model_input(self, raw: dict) -> tf.Tensor:
        if self.transform_layer is None:
            return standardize_images(decode_images(raw[IMAGE_KEY], self._image_shape), 0.0, 1.0)
        return self.transform_layer(raw)[MODEL_INPUT_KEYS[self._modality]]

    def _predict(self, model_input: tf.Tensor):
        logits = self.model(model_input, training=False)
        probs = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        classes = tf.tile(self._label_names[tf.newaxis, :], [tf.shape(probs)[0], 1])
        return probs, classes

    def _outputs(self, raw: dict):
        return self._predict(self._to_model_input(raw))

    def _parse(self, serialized: tf.Tensor) -> dict:
        return tf.io.parse_example(serialized, self._raw_spec)

    def _raw_feature(self, values: tf.Tensor, key: str) -> dict:
        # Match the parsed raw feature's shape ([N] or [N, 1], as the schema says).
        return {key: tf.reshape(values, [-1, *self._raw_spec[key].shape])}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
    def serve_examples(self, examples):
        probs, classes = self._outputs(self._parse(examples))
        return {PROBABILITIES_OUTPUT: probs, CLASSES_OUTPUT: classes}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=CLASSIFY_INPUT)])
    def classify_examples(self, inputs):
        probs, classes = self._outputs(self._parse(inputs))
        return {SCORES_OUTPUT: probs, CLASSES_OUTPUT: classes}

    def serve_images(self, images):
        if self._stats is not None:  # the Transform's own affine map, straight on the pixels
            probs, classes = self._predict(standardize_images(images, *self._stats))
        else:
            png = tf.map_fn(tf.io.encode_png, images, fn_output_signature=tf.TensorSpec([], tf.string))
            probs, classes = self._outputs(self._raw_feature(png, IMAGE_KEY))
        return {PROBABILITIES_OUTPUT: probs, CLASSES_OUTPUT: classes}

    def serve_text(self, text):
        probs, classes = self._outputs(self._raw_feature(text, TEXT_KEY))
        return {PROBABILITIES_OUTPUT: probs, CLASSES_OUTPUT: classes}

    def raw_signature(self):
        if self._modality == "text":
            return tf.function(self.serve_text, input_signature=[tf.TensorSpec([None], tf.string, name=RAW_INPUTS["text"])])
        return tf.function(self.serve_images, input_signature=[tf.TensorSpec([None, *self._image_shape], tf.uint8, name=IMAGES_INPUT)])


def export_serving_model(
    model,
    export_dir: str,
    *,
    label_names: Sequence[str],
    image_shape: Sequence[int] | None = None,
    transform: RawTransform | None = None,
    modality: str = "image",
) -> str:
    """Save `model` (logits out) as a SavedModel with the three serving signatures."""
    if modality not in RAW_SIGNATURES:
        raise ValueError(f"modality must be one of {sorted(RAW_SIGNATURES)}, got {modality!r}")
    if modality == "image" and image_shape is None:
        raise ValueError("image models need image_shape=(H, W, C) for the serving_images signature")
    transform = transform or RawTransform()
    if modality == "text" and transform.layer is None:
        raise ValueError("text models need the Transform graph (RawTransform(raw_spec, layer)) to tokenize serving input")
    with tempfile.TemporaryDirectory() as tmp:
        asset_path = os.path.join(tmp, LABEL_ASSET)
        with open(asset_path, "w") as f:
            f.write("\n".join(label_names) + "\n")
        module = ServingModule(model, transform, label_names, asset_path, modality=modality, image_shape=image_shape)
        signatures = {
            EXAMPLES_SIGNATURE: module.serve_examples.get_concrete_function(),
            RAW_SIGNATURES[modality]: module.raw_signature().get_concrete_function(),
            CLASSIFY_SIGNATURE: module.classify_examples.get_concrete_function(),
        }
        tf.saved_model.save(module, export_dir, signatures=signatures)
    mark_classify_method(export_dir)
    return export_dir
