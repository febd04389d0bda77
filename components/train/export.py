"""The serving contract: how a trained Keras model becomes a TF Serving SavedModel.

Every model this project pushes has three signatures, all applying the same
preprocessing the Trainer saw (the Transform graph), and all returning float32:

| signature          | input                                  | outputs                                  |
|--------------------|----------------------------------------|------------------------------------------|
| `serving_default`  | `examples`: serialized tf.Example [N]  | `probabilities` f32 [N,K], `classes` str [N,K] |
| `serving_images`   | `images`: uint8 [N,H,W,C]              | `probabilities` f32 [N,K], `classes` str [N,K] |
| `classification`   | `inputs`: serialized tf.Example [N]    | `scores` f32 [N,K], `classes` str [N,K]  |

`classification` carries TF Serving's classify method name, so the Classify RPC works on
the real `tensorflow_model_server` too. `classes[i]` are the label names in class-id order;
they are also an asset, `assets/label_names.txt`, one name per line.

    export_serving_model(model, "out/1", transform=transform, image_shape=(8, 8, 1),
                         label_names=["0", ..., "9"])
"""
from __future__ import annotations

import os
import tempfile
from typing import Mapping, Sequence

import tensorflow as tf

EXAMPLES_SIGNATURE = "serving_default"
IMAGES_SIGNATURE = "serving_images"
CLASSIFY_SIGNATURE = "classification"
LABEL_ASSET = "label_names.txt"
CLASSIFY_METHOD = "tensorflow/serving/classify"
IMAGE_KEY = "image"  # raw feature (PNG bytes) and transformed feature (float image)


class RawTransform:
    """Raw features -> model inputs, for serving.

    `layer` is the TFT TransformFeaturesLayer (tft.TFTransformOutput.transform_features_layer());
    `raw_feature_spec` parses serialized tf.Examples (label features removed). Without a
    Transform graph (benchmarks, tests), pass `layer=None`: PNG bytes are decoded and
    scaled to [0, 1].
    """

    def __init__(self, raw_feature_spec: Mapping[str, tf.io.FixedLenFeature] | None = None, layer=None):
        self.raw_feature_spec = dict(raw_feature_spec or {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)})
        self.layer = layer


def _png_to_float(png: tf.Tensor, image_shape) -> tf.Tensor:
    png = tf.reshape(png, [-1])

    def decode(b):
        return tf.io.decode_png(b, channels=image_shape[-1])

    images = tf.map_fn(decode, png, fn_output_signature=tf.TensorSpec(image_shape, tf.uint8))
    return tf.cast(images, tf.float32) / 255.0


class ServingModule(tf.Module):
    """Holds the model, the Transform layer and the label asset; defines the signatures."""

    def __init__(self, model, transform: RawTransform, image_shape: Sequence[int], label_names: Sequence[str], asset_path: str):
        super().__init__()
        self.model = model
        self.transform_layer = transform.layer
        self._raw_spec = transform.raw_feature_spec
        self._image_shape = tuple(int(d) for d in image_shape)
        self.label_asset = tf.saved_model.Asset(asset_path)
        self._label_names = tf.constant(list(label_names))

    def _to_model_input(self, raw: dict) -> tf.Tensor:
        if self.transform_layer is None:
            return _png_to_float(raw[IMAGE_KEY], self._image_shape)
        return self.transform_layer(raw)[IMAGE_KEY]

    def _outputs(self, raw: dict):
        logits = self.model(self._to_model_input(raw), training=False)
        probs = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        classes = tf.tile(self._label_names[tf.newaxis, :], [tf.shape(probs)[0], 1])
        return probs, classes

    def _parse(self, serialized: tf.Tensor) -> dict:
        return tf.io.parse_example(serialized, self._raw_spec)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(self, examples):
        probs, classes = self._outputs(self._parse(examples))
        return {"probabilities": probs, "classes": classes}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify_examples(self, inputs):
        probs, classes = self._outputs(self._parse(inputs))
        return {"scores": probs, "classes": classes}

    def serve_images(self, images):
        png = tf.map_fn(tf.io.encode_png, images, fn_output_signature=tf.TensorSpec([], tf.string))
        # Match the parsed raw feature's shape ([N] or [N, 1], as the schema says).
        png = tf.reshape(png, [-1, *self._raw_spec[IMAGE_KEY].shape])
        probs, classes = self._outputs({IMAGE_KEY: png})
        return {"probabilities": probs, "classes": classes}


def export_serving_model(
    model,
    export_dir: str,
    *,
    image_shape: Sequence[int],
    label_names: Sequence[str],
    transform: RawTransform | None = None,
) -> str:
    """Save `model` (logits out) as a SavedModel with the three serving signatures."""
    transform = transform or RawTransform()
    with tempfile.TemporaryDirectory() as tmp:
        asset_path = os.path.join(tmp, LABEL_ASSET)
        with open(asset_path, "w") as f:
            f.write("\n".join(label_names) + "\n")
        module = ServingModule(model, transform, image_shape, label_names, asset_path)
        images_fn = tf.function(
            module.serve_images,
            input_signature=[tf.TensorSpec([None, *module._image_shape], tf.uint8, name="images")],
        )
        signatures = {
            EXAMPLES_SIGNATURE: module.serve_examples.get_concrete_function(),
            IMAGES_SIGNATURE: images_fn.get_concrete_function(),
            CLASSIFY_SIGNATURE: module.classify_examples.get_concrete_function(),
        }
        tf.saved_model.save(module, export_dir, signatures=signatures)
    _mark_classify_method(export_dir)
    return export_dir


def _mark_classify_method(export_dir: str) -> None:
    """TF2 saves every signature as 'predict'; TF Serving's Classify needs 'classify'."""
    from tensorflow.core.protobuf import saved_model_pb2

    path = os.path.join(export_dir, "saved_model.pb")
    sm = saved_model_pb2.SavedModel()
    with open(path, "rb") as f:
        sm.ParseFromString(f.read())
    for mg in sm.meta_graphs:
        if CLASSIFY_SIGNATURE in mg.signature_def:
            mg.signature_def[CLASSIFY_SIGNATURE].method_name = CLASSIFY_METHOD
    with open(path, "wb") as f:
        f.write(sm.SerializeToString())


def read_label_names(saved_model_dir: str) -> list[str]:
    with open(os.path.join(saved_model_dir, "assets", LABEL_ASSET)) as f:
        return [line.rstrip("\n") for line in f if line.strip()]
