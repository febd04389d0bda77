"""Executor of DatasetExampleGen: read the source, write TFX split TFRecords, record facts."""
from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any

import numpy as np
import tensorflow as tf
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from components.examples_layout import split_dir
from components.ingest import keys
from components.ingest.sources import open_source

log = logging.getLogger("pipeline.ingest")
SPLITS = ("train", "eval", "test")  # output splits; train feeds Trainer, eval gates, test reports


def make_example(value: bytes, label: int, label_name: str, key: str = "image") -> bytes:
    """One tf.Example: `key` (PNG bytes for "image", UTF-8 for "text"), `label`, `label_name`."""
    feature = {
        key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[value])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        "label_name": tf.train.Feature(bytes_list=tf.train.BytesList(value=[label_name.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def stratified_subsample(labels: list[int], fraction: float, seed: int) -> set[int]:
    """Indices keeping `fraction` of each class (at least one), chosen with a fixed seed."""
    rng = np.random.default_rng(seed)
    labels_arr = np.asarray(labels)
    keep: set[int] = set()
    for c in np.unique(labels_arr):
        idx = np.flatnonzero(labels_arr == c)
        n = max(1, int(round(fraction * len(idx))))
        keep.update(int(i) for i in rng.choice(idx, size=n, replace=False))
    return keep


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict: dict[str, list], output_dict: dict[str, list], exec_properties: dict[str, Any]) -> None:
        data = json.loads(exec_properties["data_config"])
        examples = artifact_utils.get_single_instance(output_dict["examples"])
        source = open_source(data)
        counts, fingerprints = {}, {}
        for out_split in SPLITS:
            src_split = data["splits"][out_split]
            total = source.num_examples(src_split)
            records = source.records(src_split)
            if out_split == "train" and data["train_fraction"] < 1:
                records = list(records)
                keep = stratified_subsample([r.label for r in records], data["train_fraction"], data["seed"])
                records = [r for i, r in enumerate(records) if i in keep]
                total = len(records)
            path = os.path.join(split_dir(examples.uri, out_split), "data_tfrecord-00000-of-00001.gz")
            counts[out_split] = self._write(path, records, source.label_names, out_split, total, source.modality)
            fingerprints[out_split] = _sha256(path)
        examples.split_names = artifact_utils.encode_split_names(list(SPLITS))
        name = data["name"] if data["source"] == "tfds" else source.name
        version = str(source.builder.info.version) if data["source"] == "tfds" else ""
        props = {
            keys.DATASET_KEY: name,
            keys.DATASET_VERSION_KEY: version,
            keys.DATA_SOURCE_KEY: data["source"],
            keys.LABEL_NAMES_KEY: json.dumps(source.label_names),
            keys.MODALITY_KEY: source.modality,
            keys.IMAGE_SHAPE_KEY: json.dumps(list(data["image_shape"] or source.image_shape or [])),
            keys.SPLIT_COUNTS_KEY: json.dumps(counts),
            keys.SPLIT_FINGERPRINTS_KEY: json.dumps(fingerprints),
        }
        for key, value in props.items():
            examples.set_string_custom_property(key, value)
        log.info("ingested %s %s: %s", name, version, counts)

    @staticmethod
    def _write(path: str, records, label_names: list[str], split: str, total: int, key: str) -> int:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        n, step = 0, max(1000, total // 4)  # progress for big splits, quiet for small ones
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for rec in records:
                writer.write(make_example(rec.value, rec.label, label_names[rec.label], key))
                n += 1
                if n % step == 0:
                    log.info("ingest %s: %d/%d examples", split, n, total)
        if n == 0:
            raise ValueError(f"split '{split}' of the source is empty; every split needs examples")
        return n


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
