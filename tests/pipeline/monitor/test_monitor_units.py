"""Fast checks of the monitor's parts (no pipeline run): the `monitor:` section, --since,
reading request logs of every kind (Classify calls, serialized tf.Examples, text, a file
cut mid-record), the text features and the TFDV comparison on known distributions."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2, predict_pb2

import components.tfx_compat  # noqa: F401  (tfx.components before TFDV)
from components.ingest.executor import make_example
from pipeline.config import ConfigError, validate_config
from pipeline.monitor.config import MonitorConfigError, Rule, parse_since, validate_monitor_config
from pipeline.monitor.features import Examples, TrafficError, feature_frame, read_served
from pipeline.monitor.stats import compare
from serving.server.request_log import ServerRequestLogger, model_spec


def test_defaults_and_overrides():
    config = validate_monitor_config({})
    assert config.rule_for("intensity_c0", numeric=True) == Rule("jensen_shannon", 0.1)
    assert config.rule_for("image_size", numeric=False) == Rule("l_infinity", 0.1)
    assert config.rule_for("class", numeric=False) == Rule("l_infinity", 0.15)
    config = validate_monitor_config({"features": {"intensity_c0": {"threshold": 0.05}}, "prediction_shift_threshold": 0.3,
                                      "numeric": {"comparator": "l_infinity", "threshold": 0.2}})
    assert config.rule_for("intensity_c0", numeric=True) == Rule("l_infinity", 0.05)
    assert config.rule_for("token_count", numeric=True) == Rule("l_infinity", 0.2)
    assert config.rule_for("class", numeric=False).threshold == 0.3


@pytest.mark.parametrize("section, needle", [
    ({"treshold": 0.1}, "unknown key monitor.treshold"),
    ({"numeric": {"comparator": "kl"}}, "monitor.numeric.comparator: got 'kl'"),
    ({"categorical": {"threshold": 0}}, "monitor.categorical.threshold: got 0"),
    ({"prediction_shift_threshold": True}, "monitor.prediction_shift_threshold"),
    ({"features": {"pixels": {"threshold": 0.1}}}, "monitor.features.pixels"),
    ({"min_requests": 0}, "monitor.min_requests: got 0"),
    ({"since": "last week"}, "monitor.since: got 'last week'"),
])
def test_bad_monitor_section_names_the_key(section, needle):
    with pytest.raises(MonitorConfigError, match=needle.replace(".", r"\.").replace("(", r"\(")):
        validate_monitor_config(section)


def test_pipeline_config_accepts_and_checks_the_monitor_section():
    assert validate_config({"pipeline_name": "p", "monitor": {"min_requests": 10}})["monitor"] == {"min_requests": 10}
    with pytest.raises(ConfigError, match="config key 'monitor'.*monitor.min_requests"):
        validate_config({"pipeline_name": "p", "monitor": {"min_requests": -1}})


def test_parse_since():
    now = dt.datetime(2026, 1, 2, 12, 0, tzinfo=dt.timezone.utc)
    assert parse_since("24h", now) == int(now.timestamp()) - 86400
    assert parse_since("30m", now) == int(now.timestamp()) - 1800
    assert parse_since("2026-01-01T00:00:00Z", now) == int(dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc).timestamp())
    with pytest.raises(MonitorConfigError, match="--since"):
        parse_since("yesterday", now)


def _png(value: int) -> bytes:
    return tf.io.encode_png(np.full((8, 8, 1), value, np.uint8)).numpy()


def test_read_served_every_request_kind_and_a_cut_file(tmp_path):
    logger = ServerRequestLogger.from_flags("digits", str(tmp_path))
    spec = model_spec("digits", 7, "serving_default")
    # Predict with serialized tf.Examples (serving_default), as REST/gRPC clients send them
    request = predict_pb2.PredictRequest()
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto(np.array([make_example(_png(10), 0, "a"), make_example(_png(200), 0, "a")], dtype=object)))
    response = predict_pb2.PredictResponse()
    response.outputs["probabilities"].CopyFrom(tf.make_tensor_proto(np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)))
    response.outputs["classes"].CopyFrom(tf.make_tensor_proto(np.array([[b"cat", b"dog"]] * 2, dtype=object)))
    logger.log_predict(spec, request, response)
    # Classify with tf.Example protos
    classify = classification_pb2.ClassificationRequest()
    classify.input.example_list.examples.add().ParseFromString(make_example(_png(50), 0, "a"))
    result = classification_pb2.ClassificationResponse()
    result.result.classifications.add().classes.add(label="dog", score=0.7)
    result.result.classifications[0].classes.add(label="cat", score=0.3)
    logger.log_classify(spec, classify, result)
    # REST :predict through serving_images, and an older version
    logger.log_predict_arrays(spec, {"images": np.full((1, 8, 8, 1), 255, np.uint8)},
                              {"probabilities": np.array([[0.6, 0.4]], np.float32), "classes": np.array([[b"cat", b"dog"]], dtype=object)})
    logger.log_predict_arrays(model_spec("digits", 6), {"images": np.zeros((1, 8, 8, 1), np.uint8)},
                              {"probabilities": np.array([[0.6, 0.4]], np.float32), "classes": np.array([[b"cat", b"dog"]], dtype=object)})
    assert logger.flush(10)
    logger.close()
    (path,) = logger.files("digits")
    with open(path, "ab") as f:
        f.write(b"\x40\x00\x00\x00\x00\x00\x00\x00partial")  # a record the writer had not finished

    served = read_served(str(tmp_path), "digits", "image", version=7)
    assert len(served) == 4 and served.records == 3 and dict(served.versions) == {7: 3}
    assert [int(im.mean()) for im in served.images] == [10, 200, 50, 255]
    assert served.classes == ["cat", "dog", "dog", "cat"]
    assert served.confidence == pytest.approx([0.9, 0.8, 0.7, 0.6])
    assert len(read_served(str(tmp_path), "digits", "image")) == 5
    with pytest.raises(TrafficError, match="no logged requests of model 'other'.*'digits' \\(4\\)"):
        read_served(str(tmp_path), "other", "image")
    with pytest.raises(TrafficError, match="no logged requests"):
        read_served(str(tmp_path), "digits", "image", since=int(dt.datetime.now().timestamp()) + 3600)


def test_text_features_use_the_transform_tokenizer_and_vocabulary():
    examples = Examples("text", texts=[b"A good movie!", b"zzz qqq good", b""], classes=["pos", "neg", "neg"])
    frame = feature_frame(examples, vocabulary={b"a", b"good", b"movie"})
    assert list(frame["token_count"]) == [3, 3, 0]
    assert list(frame["oov_rate"]) == pytest.approx([0.0, 2 / 3, 0.0])
    assert list(frame["class"]) == ["pos", "neg", "neg"]


def test_compare_flags_shifted_features_only():
    rng = np.random.default_rng(0)
    training = pd.DataFrame({"intensity_c0": rng.normal(80, 8, 2000), "image_size": ["8x8x1"] * 2000,
                             "class": rng.choice(list("0123456789"), 2000)})
    same = pd.DataFrame({"intensity_c0": rng.normal(80, 8, 500), "image_size": ["8x8x1"] * 500,
                         "class": rng.choice(list("0123456789"), 500)})
    brighter = same.assign(intensity_c0=same["intensity_c0"] + 60, image_size=["16x16x1"] * 500)
    config = validate_monitor_config({})
    assert not [r.feature for r in compare(training, same, config) if r.drift]
    results = {r.feature: r for r in compare(training, brighter, config)}
    assert results["intensity_c0"].drift and results["intensity_c0"].distance > 0.5
    assert results["image_size"].drift and results["image_size"].distance == pytest.approx(1.0)
    assert not results["class"].drift and results["class"].comparator == "l_infinity"
    assert results["intensity_c0"].served["mean"] == pytest.approx(results["intensity_c0"].training["mean"] + 60, abs=2)
