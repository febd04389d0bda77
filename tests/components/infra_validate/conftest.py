"""Real fixtures for the validation gates: a Transform graph built by tf.Transform on Beam,
raw eval examples in ExampleGen's layout, and tiny Keras models exported with the
serving contract (one consistent with the Transform graph, one deliberately skewed)."""
import os
import tempfile

import numpy as np
import pytest
import tensorflow as tf

from components.ingest.executor import make_example
from components.train.export import RawTransform, export_serving_model
from components.transform.preprocessing import preprocessing_fn
from components.train.keys import TRAINED_MODEL_FILE

IMAGE_SHAPE = (8, 8, 1)
LABELS = ["cat", "dog", "bird"]
NUM_EXAMPLES = 24
RAW_SPEC = {  # what SchemaGen infers for ExampleGen's output (infer_feature_shape=True)
    "image": tf.io.FixedLenFeature([1], tf.string),
    "label": tf.io.FixedLenFeature([1], tf.int64),
    "label_name": tf.io.FixedLenFeature([1], tf.string),
}


def raw_examples(seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (NUM_EXAMPLES, *IMAGE_SHAPE), dtype=np.uint8)
    return [make_example(tf.io.encode_png(im).numpy(), i % len(LABELS), LABELS[i % len(LABELS)]) for i, im in enumerate(images)]


def write_examples_artifact(uri: str, records: list[bytes]) -> str:
    split_dir = os.path.join(uri, "Split-eval")
    os.makedirs(split_dir, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(split_dir, "data_tfrecord-00000-of-00001.gz"), options="GZIP") as writer:
        for record in records:
            writer.write(record)
    return uri


def build_transform_graph(output_dir: str, records: list[bytes]) -> str:
    """The project's preprocessing_fn analyzed with tf.Transform on Beam (as TFX Transform does)."""
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io, schema_utils

    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(RAW_SPEC))
    parsed = tf.io.parse_example(records, RAW_SPEC)
    instances = [{k: parsed[k][i].numpy() for k in RAW_SPEC} for i in range(len(records))]
    with tempfile.TemporaryDirectory() as tmp:
        with beam.Pipeline(argv=["--direct_running_mode=in_memory", "--direct_num_workers=1"]) as p, tft_beam.Context(temp_dir=tmp):
            transform_fn = (p | beam.Create(instances), metadata) | tft_beam.AnalyzeDataset(
                lambda inputs: preprocessing_fn(inputs, {"image_shape": list(IMAGE_SHAPE)})
            )
            _ = transform_fn | tft_beam.WriteTransformFn(output_dir)
    metadata_io.write_metadata(metadata, os.path.join(output_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
    return output_dir


def tiny_cnn(seed: int = 3):
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input(IMAGE_SHAPE),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(len(LABELS)),  # logits
    ])


def export_without_images_signature(model, export_dir: str, transform: RawTransform) -> str:
    """A real SavedModel like export_serving_model's, minus `serving_images` (an unservable candidate)."""
    from components.train.export import ServingModule
    from serving.contract import LABEL_ASSET, mark_classify_method

    with tempfile.TemporaryDirectory() as tmp:
        asset = os.path.join(tmp, LABEL_ASSET)
        with open(asset, "w") as f:
            f.write("\n".join(LABELS) + "\n")
        module = ServingModule(model, transform, LABELS, asset, modality="image", image_shape=IMAGE_SHAPE)
        signatures = {
            "serving_default": module.serve_examples.get_concrete_function(),
            "classification": module.classify_examples.get_concrete_function(),
        }
        tf.saved_model.save(module, export_dir, signatures=signatures)
    mark_classify_method(export_dir)
    return export_dir


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """Paths: examples (artifact uri), eval_files, transform_graph, model_run (holding
    keras_model, the trained model file), and Model artifact uris (SavedModel in
    Format-Serving): good, skewed (serving preprocessing differs from the Transform
    graph), no_images (lacks the serving_images signature)."""
    import tensorflow_transform as tft

    root = tmp_path_factory.mktemp("validate")
    records = raw_examples()
    out = {"examples": write_examples_artifact(str(root / "examples"), records)}
    out["eval_files"] = [os.path.join(out["examples"], "Split-eval", "data_tfrecord-00000-of-00001.gz")]
    out["transform_graph"] = build_transform_graph(str(root / "transform_graph"), records)
    model = tiny_cnn()
    out["model_run"] = str(root / "model_run")
    os.makedirs(out["model_run"])
    model.save(os.path.join(out["model_run"], TRAINED_MODEL_FILE))
    out["keras_model"] = os.path.join(out["model_run"], TRAINED_MODEL_FILE)
    tft_output = tft.TFTransformOutput(out["transform_graph"])
    serving_spec = {k: v for k, v in tft_output.raw_feature_spec().items() if k not in ("label", "label_name")}
    consistent = RawTransform(serving_spec, tft_output.transform_features_layer())
    for name, transform in (
        ("good", consistent),
        # skewed: serving scales pixels to [0, 1] but training standardized them (Transform graph)
        ("skewed", RawTransform(serving_spec)),
    ):
        out[name] = str(root / name)
        export_serving_model(model, os.path.join(out[name], "Format-Serving"), image_shape=IMAGE_SHAPE, label_names=LABELS, transform=transform)
    out["no_images"] = str(root / "no_images")
    export_without_images_signature(model, os.path.join(out["no_images"], "Format-Serving"), consistent)
    return out
