"""Transform's preprocessing_fn: decode PNG -> float image, standardize with dataset stats.

Runs inside TFX Transform, so the same graph is exported with the model and serving
sees exactly what training saw. `custom_config["image_shape"]` is [H, W, C].
"""
import tensorflow as tf
import tensorflow_transform as tft

IMAGE_KEY = "image"
LABEL_KEY = "label"


def decode_images(png: tf.Tensor, image_shape) -> tf.Tensor:
    """[N] encoded PNG/JPEG -> float32 [N, H, W, C] in [0, 1]."""
    h, w, c = image_shape

    def decode(b):
        img = tf.io.decode_image(b, channels=c, expand_animations=False)
        return tf.ensure_shape(img, [h, w, c])

    images = tf.map_fn(decode, tf.reshape(png, [-1]), fn_output_signature=tf.TensorSpec([h, w, c], tf.uint8))
    return tf.cast(images, tf.float32) / 255.0


def preprocessing_fn(inputs, custom_config):
    images = decode_images(inputs[IMAGE_KEY], custom_config["image_shape"])
    # One mean/std over all pixels of the training split (full-pass analyzers).
    mean = tft.mean(images)
    std = tf.sqrt(tft.var(images)) + 1e-6
    return {IMAGE_KEY: (images - mean) / std, LABEL_KEY: inputs[LABEL_KEY]}
