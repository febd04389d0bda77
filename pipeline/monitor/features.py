"""Raw features and predictions: from logged PredictionLogs (served) and ExampleGen's train split.

Requests turn back into the model's raw inputs: uint8 images from `serving_images`
requests, the `image`/`text` feature of the serialized tf.Examples of `serving_default` /
`classification` requests and Classify calls, UTF-8 strings from `serving_text`. The
predicted class is `classes[argmax(probabilities)]`, the confidence that probability.
Both sides then become the same table of monitored features (see `feature_frame`).

    served = read_served(["/var/log/serving"], "digits", since=0, max_examples=50000)
    training = read_training(examples_uri, "image", max_examples=50000)
    frame = feature_frame(served, vocabulary=None)     # pandas DataFrame, one row per example
"""
from __future__ import annotations

import collections
import dataclasses
import glob
import os

import numpy as np

from components.examples_layout import split_files
from pipeline.monitor.config import CLASS_FEATURE

LOG_SUFFIXES = (".tfrecord", ".tfrecord.gz")


class TrafficError(ValueError):
    """The request log cannot be read as asked (missing directory, no records of the model)."""


@dataclasses.dataclass
class Examples:
    """One side of the comparison: raw inputs (images or texts) and their classes."""

    modality: str  # "image" or "text"
    images: list = dataclasses.field(default_factory=list)  # uint8 [H, W, C] each
    texts: list = dataclasses.field(default_factory=list)  # bytes each
    classes: list = dataclasses.field(default_factory=list)  # label name (training) / predicted class (served)
    confidence: list = dataclasses.field(default_factory=list)  # served only
    versions: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    skipped: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    records: int = 0

    def __len__(self) -> int:
        return len(self.images) if self.modality == "image" else len(self.texts)


# --------------------------------------------------------------------------- served traffic


def log_files(log_dir: str) -> list[str]:
    """Request-log files under `log_dir` (any depth), newest first."""
    if not os.path.isdir(log_dir):
        raise TrafficError(f"request log directory {log_dir} does not exist; pass the server's --request_log_dir "
                           "(or the directory of a logging_config filename_prefix)")
    files = [p for p in glob.glob(os.path.join(glob.escape(log_dir), "**", "*"), recursive=True)
             if p.endswith(LOG_SUFFIXES) and os.path.isfile(p)]
    return sorted(files, key=lambda p: (os.path.getmtime(p), p), reverse=True)


def _records(path: str):
    import tensorflow as tf

    compression = "GZIP" if path.endswith(".gz") else ""
    try:
        for record in tf.data.TFRecordDataset(path, compression_type=compression):
            yield record.numpy()
    except tf.errors.DataLossError:  # the file being written ends mid-record: the whole ones count
        return


def read_served(log_dir: str, model_name: str, modality: str, *, since: int = 0, version: int | None = None,
                max_examples: int = 50_000) -> Examples:
    """The newest logged examples of `model_name` (and `version`, if given) since epoch `since`."""
    from tensorflow_serving.apis import prediction_log_pb2

    out = Examples(modality)
    models_seen = collections.Counter()
    for path in log_files(log_dir):
        for data in _records(path):
            log = prediction_log_pb2.PredictionLog.FromString(data)
            spec = log.log_metadata.model_spec
            models_seen[spec.name] += 1
            if spec.name != model_name or log.log_metadata.timestamp_secs < since:
                continue
            if version is not None and spec.version.value != version:
                continue
            out.records += 1
            out.versions[spec.version.value] += 1
            _add_log(out, log)
            if len(out) >= max_examples:
                return out
    if out.records == 0:
        others = ", ".join(f"{name!r} ({n})" for name, n in models_seen.most_common(5)) or "none"
        raise TrafficError(f"no logged requests of model {model_name!r}"
                           f"{f' version {version}' if version is not None else ''} under {log_dir} since the window start; "
                           f"records there by model: {others}. Is request logging on for this model?")
    return out


def _add_log(out: Examples, log) -> None:
    import tensorflow as tf

    kind = log.WhichOneof("log_type")
    if kind == "predict_log":
        inputs, outputs = log.predict_log.request.inputs, log.predict_log.response.outputs
        if "images" in inputs:
            raw = [("image", image) for image in tf.make_ndarray(inputs["images"])]
        elif "text" in inputs:
            raw = [("text", text) for text in tf.make_ndarray(inputs["text"]).reshape(-1)]
        elif "examples" in inputs or "inputs" in inputs:
            serialized = tf.make_ndarray(inputs["examples" if "examples" in inputs else "inputs"]).reshape(-1)
            raw = [_from_example(tf.train.Example.FromString(s), out.modality) for s in serialized]
        else:
            out.skipped[f"predict input keys {sorted(inputs)}"] += 1
            return
        probs_key = "probabilities" if "probabilities" in outputs else "scores"
        if probs_key not in outputs or "classes" not in outputs:
            out.skipped["predict response without probabilities/classes"] += 1
            return
        probs, classes = tf.make_ndarray(outputs[probs_key]), tf.make_ndarray(outputs["classes"])
        predictions = [(classes[i][int(np.argmax(p))], float(np.max(p))) for i, p in enumerate(probs)]
    elif kind == "classify_log":
        examples = log.classify_log.request.input.example_list.examples
        raw = [_from_example(example, out.modality) for example in examples]
        predictions = []
        for result in log.classify_log.response.result.classifications:
            best = max(result.classes, key=lambda c: c.score)
            predictions.append((best.label, float(best.score)))
    else:
        out.skipped[f"{kind or 'empty'} records"] += 1
        return
    if len(raw) != len(predictions):
        out.skipped["request/response row count mismatch"] += 1
        return
    for (key, value), (label, confidence) in zip(raw, predictions):
        if key != out.modality or value is None:
            out.skipped[f"examples without a {out.modality} feature"] += 1
            continue
        (out.images if key == "image" else out.texts).append(value)
        out.classes.append(label.decode() if isinstance(label, bytes) else str(label))
        out.confidence.append(confidence)


def _from_example(example, modality: str):
    feature = example.features.feature.get(modality)
    if feature is None or not feature.bytes_list.value:
        return modality, None
    value = feature.bytes_list.value[0]
    return modality, (_decode_image(value) if modality == "image" else value)


def _decode_image(encoded: bytes):
    import tensorflow as tf

    try:
        return tf.io.decode_image(encoded, expand_animations=False).numpy()
    except (tf.errors.InvalidArgumentError, ValueError):
        return None


# --------------------------------------------------------------------------- training split


def read_training(examples_uri: str, modality: str, split: str = "train", max_examples: int = 50_000) -> Examples:
    """The raw examples ExampleGen wrote for `split` (PNG or text bytes, label_name)."""
    import tensorflow as tf

    try:
        files = split_files(examples_uri, split)
    except FileNotFoundError as e:
        raise TrafficError(f"{e}: the training examples of the served model's run are gone; "
                           "re-run the pipeline or restore its Examples artifact") from None
    out = Examples(modality)
    compression = "GZIP" if files[0].endswith(".gz") else ""
    for data in tf.data.TFRecordDataset(files, compression_type=compression).take(max_examples):
        example = tf.train.Example.FromString(data.numpy())
        key, value = _from_example(example, modality)
        if value is None:
            out.skipped[f"examples without a {modality} feature"] += 1
            continue
        (out.images if modality == "image" else out.texts).append(value)
        label = example.features.feature["label_name"].bytes_list.value
        out.classes.append(label[0].decode() if label else str(example.features.feature["label"].int64_list.value[0]))
        out.records += 1
    return out


# --------------------------------------------------------------------------- monitored features


def feature_frame(examples: Examples, vocabulary: set[bytes] | None = None):
    """One row per example: per-channel mean intensity (0-255) and size `HxWxC` for images,
    token count and out-of-vocabulary rate (against the Transform's vocabulary) for text,
    and `class`."""
    import pandas as pd

    columns: dict[str, list] = {}
    if examples.modality == "image":
        channels = max((image.shape[-1] for image in examples.images), default=1)
        for c in range(channels):
            columns[f"intensity_c{c}"] = [float(image[..., min(c, image.shape[-1] - 1)].mean()) for image in examples.images]
        columns["image_size"] = ["x".join(map(str, image.shape)) for image in examples.images]
    else:
        tokens = _tokens(examples.texts)
        columns["token_count"] = [len(t) for t in tokens]
        if vocabulary is not None:
            columns["oov_rate"] = [sum(tok not in vocabulary for tok in t) / len(t) if t else 0.0 for t in tokens]
    columns[CLASS_FEATURE] = list(examples.classes)
    return pd.DataFrame(columns)


def _tokens(texts: list) -> list[list[bytes]]:
    """The Transform's own tokenizer, so counts and OOV match what the model saw."""
    from components.transform.preprocessing import tokenize

    if not texts:
        return []
    return [list(row) for row in tokenize(np.array(texts, dtype=object)).to_list()]


def read_vocabulary(transform_graph_uri: str) -> set[bytes]:
    """The token vocabulary the served model's Transform computed."""
    import tensorflow_transform as tft

    from components.transform.preprocessing import VOCABULARY_NAME

    return set(tft.TFTransformOutput(transform_graph_uri).vocabulary_by_name(VOCABULARY_NAME))
