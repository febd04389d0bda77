"""Transform's preprocessing_fn: raw features -> model inputs, for images and for text.

Runs inside TFX Transform, so the same graph is exported with the model and serving
sees exactly what training saw. `custom_config["modality"]` picks the path:

* image (default): decode PNG -> float image, standardize with one mean/std over all
  training pixels. `image_mean`/`image_std` are also emitted, so the raw-image serving
  signature can apply the identical affine map to uint8 pixels without a PNG round trip.
  `custom_config["image_shape"]` is [H, W, C].
* text: lowercase, drop markup and punctuation, split on whitespace, map tokens to ids
  with a vocabulary of the `max_tokens` most frequent training tokens, pad/truncate to
  `sequence_length`. Id 0 is padding, 1 is out-of-vocabulary, words are 2..V+1.

    preprocessing_fn({"text": ..., "label": ...}, {"modality": "text", "max_tokens": 20000, "sequence_length": 200})
"""
import tensorflow as tf
import tensorflow_transform as tft

IMAGE_KEY = "image"
TEXT_KEY = "text"
TOKENS_KEY = "tokens"  # transformed text: int64 [N, sequence_length]
LABEL_KEY = "label"
MEAN_KEY, STD_KEY = "image_mean", "image_std"
VOCABULARY_NAME = "tokens"
PAD_ID, OOV_ID, FIRST_WORD_ID = 0, 1, 2

MODEL_INPUT_KEYS = {"image": IMAGE_KEY, "text": TOKENS_KEY}  # transformed feature the model reads


def decode_images(png: tf.Tensor, image_shape) -> tf.Tensor:
    """[N] encoded PNG/JPEG -> uint8 [N, H, W, C]."""
    h, w, c = image_shape

    def decode(b):
        img = tf.io.decode_image(b, channels=c, expand_animations=False)
        return tf.ensure_shape(img, [h, w, c])

    return tf.map_fn(decode, tf.reshape(png, [-1]), fn_output_signature=tf.TensorSpec([h, w, c], tf.uint8))


def standardize_images(images: tf.Tensor, mean, std) -> tf.Tensor:
    """uint8 [N, H, W, C] -> float32 model input. The one definition training and serving share."""
    return (tf.cast(images, tf.float32) / 255.0 - mean) / std


def tokenize(text: tf.Tensor) -> tf.RaggedTensor:
    """[N] UTF-8 strings -> ragged [N, None] lowercase word tokens."""
    text = tf.strings.lower(tf.reshape(text, [-1]), encoding="utf-8")
    text = tf.strings.regex_replace(text, r"<[^>]*>", " ")  # IMDB-style <br /> markup
    text = tf.strings.regex_replace(text, r"[^\p{L}\p{N}']+", " ")
    return tf.strings.split(text)


def pad_ids(ids: tf.RaggedTensor, sequence_length: int) -> tf.Tensor:
    """Ragged vocabulary ids (-1 = unknown) -> int64 [N, sequence_length], first tokens kept."""
    shifted = tf.ragged.map_flat_values(lambda v: tf.cast(v, tf.int64) + FIRST_WORD_ID, ids)  # -1 -> OOV_ID
    return shifted.to_tensor(default_value=PAD_ID, shape=[None, sequence_length])


def preprocessing_fn(inputs, custom_config):
    if custom_config.get("modality", "image") == "text":
        return _text(inputs, custom_config)
    return _image(inputs, custom_config)


def _image(inputs, custom_config):
    images = decode_images(inputs[IMAGE_KEY], custom_config["image_shape"])
    # One mean/std over all pixels of the training split (full-pass analyzers).
    scaled = tf.cast(images, tf.float32) / 255.0
    mean = tft.mean(scaled)
    std = tf.sqrt(tft.var(scaled)) + 1e-6
    n = tf.shape(images)[:1]
    return {
        IMAGE_KEY: standardize_images(images, mean, std),
        MEAN_KEY: tf.fill(n, mean),
        STD_KEY: tf.fill(n, std),
        LABEL_KEY: inputs[LABEL_KEY],
    }


def _text(inputs, custom_config):
    tokens = tokenize(inputs[TEXT_KEY])
    ids = tft.compute_and_apply_vocabulary(
        tokens, top_k=int(custom_config["max_tokens"]), default_value=-1, vocab_filename=VOCABULARY_NAME
    )
    return {TOKENS_KEY: pad_ids(ids, int(custom_config["sequence_length"])), LABEL_KEY: inputs[LABEL_KEY]}
