"""`python -m pipeline monitor` end to end: the real pushed digits model (session fixture
`pipeline_runs`), its test split sent as traffic and logged through the server's
RequestLogger (PredictionLog TFRecords), compared with the training split found through
MLMD lineage. The test split must pass (exit 0); inverted images and one-class traffic
must fail (exit 1) and name the feature."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from pipeline.monitor import cli
from pipeline.monitor.features import read_training
from serving.server.request_log import ServerRequestLogger, model_spec

MODEL = "digits"


def log_traffic(log_dir: str, version_dir: str, version: int, images: np.ndarray, batch: int = 16) -> dict:
    """Runs `images` through the served SavedModel's signatures and logs each call as the
    server does: half as `serving_images` Predict calls, half as `serving_default` calls
    with serialized tf.Examples (PNG), as a REST or gRPC client would send them."""
    from components.ingest.executor import make_example

    saved = tf.saved_model.load(version_dir)
    logger = ServerRequestLogger.from_flags(MODEL, log_dir, sampling_rate=1.0)
    for start in range(0, len(images), batch):
        chunk = images[start:start + batch]
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        if (start // batch) % 2 == 0:
            request.model_spec.signature_name = "serving_images"
            request.inputs["images"].CopyFrom(tf.make_tensor_proto(chunk))
            outputs = saved.signatures["serving_images"](images=tf.constant(chunk))
        else:
            request.model_spec.signature_name = "serving_default"
            examples = np.array([make_example(tf.io.encode_png(im).numpy(), 0, "?") for im in chunk], dtype=object)
            request.inputs["examples"].CopyFrom(tf.make_tensor_proto(examples))
            outputs = saved.signatures["serving_default"](examples=tf.constant(examples))
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(model_spec(MODEL, version, request.model_spec.signature_name))
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
        assert logger.log_predict(response.model_spec, request, response)
    assert logger.flush(60)
    logger.close()
    return logger.stats()


@pytest.fixture(scope="module")
def served(pipeline_runs, tmp_path_factory):
    cfg, pushed = pipeline_runs["cfg"], pipeline_runs["summary2"]["pushed"]
    assert pushed, "the fixture's second run did not push; see tests/pipeline/test_e2e.py"
    test = read_training(_examples_uri(cfg, pushed["version"]), "image", split="test")
    return {"config": pipeline_runs["config"], "cfg": cfg, "version": pushed["version"], "version_dir": pushed["path"],
            "images": np.stack(test.images), "labels": np.array(test.classes), "tmp": tmp_path_factory.mktemp("monitor")}


def _examples_uri(cfg, version):
    from pipeline.lineage import trace_version

    return trace_version(os.path.join(cfg["runs_dir"], "serving"), MODEL, version)["data"]["examples_uri"]


def _monitor(served, name, images, capsys, *extra):
    log_dir, report_dir = str(served["tmp"] / name / "log"), str(served["tmp"] / name / "report")
    stats = log_traffic(log_dir, served["version_dir"], served["version"], images)
    assert stats["logged"] == -(-len(images) // 16) and stats["dropped"] == 0
    code = cli(["--config", served["config"], "--request-log", log_dir, "--report-dir", report_dir, *extra])
    out, err = capsys.readouterr()
    with open(os.path.join(report_dir, "report.json")) as f:
        report = json.load(f)
    with open(os.path.join(report_dir, "report.html")) as f:
        html = f.read()
    assert html.count("<img") == len(report["features"])  # one plot per judged feature
    return code, out, report


@pytest.mark.e2e
def test_test_split_traffic_shows_no_drift(served, capsys):
    code, out, report = _monitor(served, "test_split", served["images"], capsys)
    assert code == 0, out
    assert report["status"] == "no_drift" and report["served_examples"] == len(served["images"])
    assert report["version"] == served["version"] and report["training_examples"] > 1000
    features = {r["feature"]: r for r in report["features"]}
    assert {"intensity_c0", "image_size", "class"} <= set(features)
    assert all(r["distance"] is not None and r["distance"] <= r["threshold"] for r in features.values()), features
    assert features["image_size"]["distance"] == 0.0
    assert report["mean_confidence"] > 0.8
    assert "no drift" in out and "intensity_c0" in out


@pytest.mark.e2e
def test_inverted_images_drift_and_name_the_feature(served, capsys):
    code, out, report = _monitor(served, "inverted", 255 - served["images"], capsys)
    assert code == 1, out
    assert report["status"] == "drift" and "intensity_c0" in report["drifted_features"]
    assert "DRIFT in" in out and "intensity_c0" in out.split("DRIFT in", 1)[1]


@pytest.mark.e2e
def test_one_class_traffic_drifts_on_the_predicted_class(served, capsys):
    threes = served["images"][served["labels"] == "3"]
    assert len(threes) >= 20
    one_class = np.concatenate([threes] * 5)  # the same digits sent again and again: >= monitor.min_requests
    code, out, report = _monitor(served, "one_class", one_class, capsys, "--since", "1h")
    assert code == 1, out
    assert "class" in report["drifted_features"]
    predicted = next(r for r in report["features"] if r["feature"] == "class")
    assert predicted["served"]["frequencies"].get("3", 0) > 0.9 and predicted["distance"] > 0.8


@pytest.mark.e2e
def test_too_little_traffic_is_not_judged(served, capsys):
    code, out, report = _monitor(served, "few", served["images"][:20], capsys)
    assert code == 0 and report["status"] == "insufficient_traffic" and "insufficient traffic" in out


@pytest.mark.e2e
def test_usage_errors_exit_2(served, tmp_path, capsys):
    assert cli(["--config", served["config"], "--request-log", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(["--config", served["config"], "--request-log", str(empty)]) == 2
    assert "no logged requests of model 'digits'" in capsys.readouterr().err
    assert cli(["--config", served["config"], "--request-log", str(empty), "--since", "yesterday"]) == 2
    assert "--since" in capsys.readouterr().err
    assert cli(["--request-log", str(empty)]) == 2


@pytest.mark.e2e
def test_scheduled_monitor_starts_a_run_on_drift(served, capsys):
    """The schedule hook runs the real `python -m pipeline monitor` on inverted traffic."""
    from pipeline.monitor.schedule_hook import monitor_tick

    log_dir = str(served["tmp"] / "tick" / "log")
    log_traffic(log_dir, served["version_dir"], served["version"], 255 - served["images"])
    started = []
    outcome = monitor_tick(served["config"], log_dir, retrain_on_drift=True, start_run=lambda: started.append(1) or True,
                           report_dir=served["tmp"] / "tick" / "report", timeout_seconds=900)
    assert (outcome.exit_code, outcome.status, outcome.retrain) == (1, "drift", "started"), outcome.output_tail
    assert "intensity_c0" in outcome.drifted_features and started == [1]
