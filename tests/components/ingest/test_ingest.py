"""Ingestion: the digits TFDS builder, the sources, and the ExampleGen-style executor."""
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

import components.ingest.digits_builder as digits
from components.ingest.executor import Executor, stratified_subsample
from components.ingest.sources import DataSourceError, open_source
from components.tfx_compat import tfx

DATA_DEFAULTS = {"version": None, "root": None, "image_shape": None, "label_names": None, "train_fraction": 1.0, "seed": 0,
                 "splits": {"train": "train", "eval": "validation", "test": "test"}}


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


def test_digits_builder_registered_deterministic_stratified(tfds_dir):
    builder = tfds.builder("sklearn_digits", data_dir=tfds_dir)
    builder.download_and_prepare()
    splits = builder.info.splits
    assert {k: splits[k].num_examples for k in ("train", "validation", "test")} == {"train": 1257, "validation": 270, "test": 270}
    assert builder.info.features["label"].names == [str(i) for i in range(10)]
    ex = next(iter(builder.as_dataset(split="test")))
    assert ex["image"].shape == (8, 8, 1) and ex["image"].dtype == tf.uint8
    labels = np.array([int(e["label"]) for e in builder.as_dataset(split="test")])
    assert np.all(np.bincount(labels, minlength=10) >= 26)  # stratified: every class ~27
    from sklearn.datasets import load_digits

    y = load_digits().target
    a, b = digits.stratified_split_indices(y), digits.stratified_split_indices(y)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not set(a["train"]) & set(a["test"]) and not set(a["validation"]) & set(a["test"])


def run_executor(data: dict, tmp_path) -> tfx.types.standard_artifacts.Examples:
    examples = tfx.types.standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    Executor().Do({}, {"examples": [examples]}, {"data_config": json.dumps(data), "input_fingerprint": "x"})
    return examples


def read_split(uri, split):
    files = glob.glob(os.path.join(uri, f"Split-{split}", "*.gz"))
    return [tf.train.Example.FromString(r) for r in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator()]


def test_executor_writes_tfx_split_layout_from_tfds(tfds_dir, tmp_path):
    data = dict(DATA_DEFAULTS, source="tfds", name="sklearn_digits", data_dir=tfds_dir)
    examples = run_executor(data, tmp_path)
    assert json.loads(examples.split_names) == ["train", "eval", "test"]
    assert json.loads(examples.get_string_custom_property("split_counts")) == {"train": 1257, "eval": 270, "test": 270}
    ex = read_split(examples.uri, "eval")[0].features.feature
    img = tf.io.decode_png(ex["image"].bytes_list.value[0])
    assert img.shape == (8, 8, 1)
    assert ex["label_name"].bytes_list.value[0].decode() == str(ex["label"].int64_list.value[0])


def test_train_fraction_subsamples_train_only_stratified(tfds_dir, tmp_path):
    data = dict(DATA_DEFAULTS, source="tfds", name="sklearn_digits", data_dir=tfds_dir, train_fraction=0.1)
    counts = json.loads(run_executor(data, tmp_path).get_string_custom_property("split_counts"))
    assert 120 <= counts["train"] <= 130 and counts["eval"] == 270 and counts["test"] == 270
    keep = stratified_subsample([0] * 50 + [1] * 50, 0.1, seed=3)
    assert len(keep) == 10 and keep == stratified_subsample([0] * 50 + [1] * 50, 0.1, seed=3)


def test_image_folder_any_size_rgb_resized(tmp_path):
    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        for label in ("cat", "dog"):
            d = root / split / label
            d.mkdir(parents=True)
            for i in range(3):
                size = (20 + i, 16)  # different sizes on purpose
                Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(d / f"{i}.png")
    data = dict(DATA_DEFAULTS, source="image_folder", root=str(root), image_shape=[12, 12, 3],
                splits={"train": "train", "eval": "val", "test": "test"})
    examples = run_executor(data, tmp_path)
    assert json.loads(examples.get_string_custom_property("label_names")) == ["cat", "dog"]
    ex = read_split(examples.uri, "train")[0].features.feature
    assert tf.io.decode_png(ex["image"].bytes_list.value[0]).shape == (12, 12, 3)


def test_image_folder_mixed_sizes_without_shape_says_how_to_fix(tmp_path):
    for i, size in enumerate([(8, 8), (9, 9)]):
        d = tmp_path / "r" / "train" / "a"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros(size, np.uint8)).save(d / f"{i}.png")
    with pytest.raises(DataSourceError, match="data.image_shape"):
        open_source(dict(DATA_DEFAULTS, source="image_folder", root=str(tmp_path / "r"), splits={"train": "train", "eval": "train", "test": "train"}))


def test_corrupt_image_names_the_file(tmp_path):
    d = tmp_path / "r" / "train" / "a"
    d.mkdir(parents=True)
    (d / "bad.png").write_bytes(b"not a png")
    src = open_source(dict(DATA_DEFAULTS, source="image_folder", root=str(tmp_path / "r"), image_shape=[8, 8, 1], splits={"train": "train", "eval": "train", "test": "train"}))
    with pytest.raises(DataSourceError, match="corrupt image file .*bad.png"):
        list(src.records("train"))


def test_tfrecord_source(tmp_path):
    root = tmp_path / "tfr"
    root.mkdir()
    for split in ("train", "eval", "test"):
        with tf.io.TFRecordWriter(str(root / f"{split}-0.tfrecord")) as w:
            for label in (0, 1):
                img = tf.io.encode_png(np.full((6, 6, 1), 100 * label, np.uint8)).numpy()
                w.write(tf.train.Example(features=tf.train.Features(feature={
                    "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[img])),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label]))})).SerializeToString())
    data = dict(DATA_DEFAULTS, source="tfrecord", root=str(root), label_names=["off", "on"], splits={"train": "train", "eval": "eval", "test": "test"})
    examples = run_executor(data, tmp_path)
    assert json.loads(examples.get_string_custom_property("split_counts")) == {"train": 2, "eval": 2, "test": 2}
    assert read_split(examples.uri, "test")[1].features.feature["label_name"].bytes_list.value[0] == b"on"


def test_unknown_tfds_dataset_is_named(tmp_path):
    with pytest.raises(DataSourceError, match="unknown TFDS dataset 'no_such_set'"):
        open_source(dict(DATA_DEFAULTS, source="tfds", name="no_such_set", data_dir=str(tmp_path)))


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_unprepared_tfds_dataset_says_how_to_prepare(name, tmp_path):
    with pytest.raises(DataSourceError) as e:
        open_source(dict(DATA_DEFAULTS, source="tfds", name=name, data_dir=str(tmp_path)))
    msg = str(e.value)
    assert f"'{name}' is not prepared" in msg and "download_and_prepare()" in msg and str(tmp_path) in msg


def test_text_tfds_source_yields_text_records(tfds_dir):
    source = open_source(dict(DATA_DEFAULTS, source="tfds", name="synthetic_reviews", data_dir=tfds_dir))
    assert source.modality == "text" and source.label_names == ["neg", "pos"] and source.image_shape is None
    record = next(iter(source.records("test")))
    assert isinstance(record.value, bytes) and record.label in (0, 1) and len(record.value.decode().split()) >= 4


def test_unprepared_imdb_reviews_names_the_dataset_and_the_fix(tmp_path):
    with pytest.raises(DataSourceError, match=r"(?s)imdb_reviews.*not prepared.*download_and_prepare"):
        open_source(dict(DATA_DEFAULTS, source="tfds", name="imdb_reviews", data_dir=str(tmp_path)))
