"""End-to-end: the real default pipeline through the real CLI (LocalDagRunner, SQLite MLMD).

One sequence, to keep the suite fast:
  1. a run is SIGKILLed as soon as the Trainer writes its first checkpoint;
  2. the rerun resumes training from that checkpoint step, blesses and pushes;
  3. a third run with nothing changed is cached end to end and pushes nothing.
"""
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.e2e


def test_rerun_after_kill_resumes_blesses_and_pushes(pipeline_runs):
    s = pipeline_runs["summary2"]
    assert pipeline_runs["code2"] == 0, pipeline_runs["log2"][-4000:]
    assert s["blessed"] is True
    assert s["training"]["resumed_from_step"] >= 5, s["training"]
    assert s["training"]["resumed_from_step"] in pipeline_runs["killed_at_steps"]
    assert s["training"]["final_step"] == s["training"]["total_steps"]
    assert s["pushed"] and os.path.isfile(os.path.join(s["pushed"]["path"], "saved_model.pb"))
    assert s["pushed"]["path"].endswith(f"/digits/{s['pushed']['version']}")
    assert s["metrics"]["test_accuracy"] >= 0.95
    statuses = {c["name"]: c["status"] for c in s["components"]}
    assert statuses["Trainer"] == "ran" and statuses["Pusher"] == "ran"
    assert set(s) >= {"pipeline_name", "run_id", "components", "blessed", "metrics", "pushed"}
    assert not [v for v in pipeline_runs["versions2"] if v.startswith(".")], "a temp push directory is visible"


def _test_split(pipeline_runs):
    s = pipeline_runs["summary2"]
    examples_uri = os.path.dirname(os.path.dirname(s["test_report_uri"]))  # pipeline root / component
    files = glob.glob(os.path.join(pipeline_runs["cfg"]["runs_dir"], "pipelines", "digits_cnn", "ExampleGen", "examples", "*", "Split-test", "*"))
    assert files, examples_uri
    raw = list(tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator())
    parsed = tf.io.parse_example(raw, {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)})
    images = np.stack([tf.io.decode_png(b).numpy() for b in parsed["image"].numpy()])
    return raw, images, parsed["label"].numpy()


def test_pushed_model_signatures_agree_and_reach_accuracy(pipeline_runs):
    model = tf.saved_model.load(pipeline_runs["summary2"]["pushed"]["path"])
    raw, images, labels = _test_split(pipeline_runs)
    p_examples = model.signatures["serving_default"](examples=tf.constant(raw))["probabilities"].numpy()
    p_images = model.signatures["serving_images"](images=tf.constant(images))["probabilities"].numpy()
    np.testing.assert_allclose(p_examples, p_images, atol=1e-5)
    assert p_images.dtype == np.float32
    accuracy = float(np.mean(np.argmax(p_images, axis=1) == labels))
    assert accuracy >= 0.95
    assert abs(accuracy - pipeline_runs["summary2"]["metrics"]["test_accuracy"]) < 1e-6
    with open(os.path.join(pipeline_runs["summary2"]["pushed"]["path"], "assets", "label_names.txt")) as f:
        assert f.read().split() == [str(i) for i in range(10)]


def test_unchanged_rerun_is_fully_cached_and_pushes_nothing(pipeline_runs):
    s = pipeline_runs["summary3"]
    assert pipeline_runs["code3"] == 0, pipeline_runs["log3"][-4000:]
    not_cached = [c for c in s["components"] if c["status"] != "cached"]
    assert not not_cached, not_cached
    assert s["pushed"] is None and s["already_pushed"]["version"] == pipeline_runs["summary2"]["pushed"]["version"]
    assert pipeline_runs["versions3"] == pipeline_runs["versions2"]
    print(f"warm no-change rerun: {pipeline_runs['secs3']:.1f} s")
