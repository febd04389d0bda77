"""Real test fixtures: a small CNN trained on scikit-learn's digits, exported with the serving
contract in the TFX Trainer layout, and eval examples in the TFX Split-eval layout."""
import os

import numpy as np
import pytest
import tensorflow as tf

from components.train.export import export_serving_model

IMAGE_SHAPE = (8, 8, 1)
LABELS = [str(d) for d in range(10)]
EVAL_EXAMPLES = 96


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return images, digits.target.astype(np.int64)


def build_cnn():
    import keras

    return keras.Sequential([
        keras.Input(IMAGE_SHAPE),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(10),  # logits, as export_serving_model expects
    ])


def write_eval_split(examples_uri: str, images: np.ndarray, labels: np.ndarray) -> str:
    """Gzipped TFRecords of tf.Examples (`image` PNG bytes, `label` int64) at <uri>/Split-eval/."""
    split_dir = os.path.join(examples_uri, "Split-eval")
    os.makedirs(split_dir, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(split_dir, "data_tfrecord-00000-of-00001.gz"), options="GZIP") as writer:
        for image, label in zip(images, labels):
            features = {
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[tf.io.encode_png(image).numpy()])),
                "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())
    return split_dir


@pytest.fixture(scope="session")
def trained_model():
    import keras

    keras.utils.set_random_seed(7)
    images, labels = digits_images()
    model = build_cnn()
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images[EVAL_EXAMPLES:].astype("float32") / 255.0, labels[EVAL_EXAMPLES:], epochs=4, batch_size=64, verbose=0)
    return model


@pytest.fixture(scope="session")
def model_uri(tmp_path_factory, trained_model) -> str:
    """A Model artifact directory: the SavedModel lives at <uri>/Format-Serving/."""
    uri = str(tmp_path_factory.mktemp("model"))
    export_serving_model(trained_model, os.path.join(uri, "Format-Serving"), image_shape=IMAGE_SHAPE, label_names=LABELS)
    return uri


@pytest.fixture(scope="session")
def saved_model_dir(model_uri) -> str:
    return os.path.join(model_uri, "Format-Serving")


@pytest.fixture(scope="session")
def perturbed_saved_model_dir(tmp_path_factory, trained_model) -> str:
    """The same network with its output layer's weights negated: a model that disagrees."""
    import keras

    perturbed = build_cnn()
    weights = trained_model.get_weights()
    perturbed.set_weights(weights[:-2] + [-weights[-2], weights[-1]])
    path = str(tmp_path_factory.mktemp("perturbed") / "Format-Serving")
    export_serving_model(perturbed, path, image_shape=IMAGE_SHAPE, label_names=LABELS)
    return path


@pytest.fixture(scope="session")
def examples_uri(tmp_path_factory) -> str:
    """An Examples artifact directory with only Split-eval (the first 96 digits, unseen in training)."""
    uri = str(tmp_path_factory.mktemp("examples"))
    images, labels = digits_images()
    write_eval_split(uri, images[:EVAL_EXAMPLES], labels[:EVAL_EXAMPLES])
    return uri


@pytest.fixture(scope="session")
def eval_split_dir(examples_uri) -> str:
    return os.path.join(examples_uri, "Split-eval")


@pytest.fixture(scope="session")
def accelerators():
    from components.optimize.environment import detect_accelerators

    return detect_accelerators()



REVIEWS = [(b"A good movie, really good!", 1), (b"bad. Bad acting<br />and a bad plot", 0), (b"good fun", 1), (b"so bad", 0)]


class _TextModule(tf.Module):
    """A tiny text classifier behind `serving_text`, tokenizing with the project's Transform code."""

    def __init__(self):
        super().__init__()
        words = tf.constant(["good", "bad", "movie"])
        self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(words, tf.constant([2, 3, 4], tf.int64)), default_value=1)
        self.embedding = tf.Variable([[0.0, 0.0], [0.0, 0.0], [-1.0, 1.0], [1.0, -1.0], [0.0, 0.0]])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    def serve_text(self, text):
        from components.transform.preprocessing import tokenize

        ids = self.table.lookup(tokenize(text)).to_tensor(shape=[None, 8])
        probs = tf.nn.softmax(tf.reduce_sum(tf.gather(self.embedding, ids), axis=1))
        return {"probabilities": probs, "classes": tf.tile(tf.constant([["neg", "pos"]]), [tf.shape(probs)[0], 1])}


@pytest.fixture(scope="session")
def text_saved_model_dir(tmp_path_factory) -> str:
    """A SavedModel with a `serving_text` signature (strings in) and its label asset."""
    path = str(tmp_path_factory.mktemp("text") / "Format-Serving")
    module = _TextModule()
    tf.saved_model.save(module, path, signatures={"serving_text": module.serve_text.get_concrete_function()})
    os.makedirs(os.path.join(path, "assets"), exist_ok=True)
    with open(os.path.join(path, "assets", "label_names.txt"), "w") as f:
        f.write("neg\npos\n")
    return path


@pytest.fixture(scope="session")
def text_eval_split_dir(tmp_path_factory) -> str:
    split_dir = str(tmp_path_factory.mktemp("text_examples") / "Split-eval")
    os.makedirs(split_dir)
    with tf.io.TFRecordWriter(os.path.join(split_dir, "data_tfrecord-00000-of-00001.gz"), options="GZIP") as writer:
        for text, label in REVIEWS:
            features = {"text": tf.train.Feature(bytes_list=tf.train.BytesList(value=[text])),
                        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())
    return split_dir
