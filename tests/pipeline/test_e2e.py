"""End-to-end: the real default pipeline through the real CLI (LocalDagRunner, SQLite MLMD).

One sequence, to keep the suite fast:
  1. a run is SIGKILLed as soon as the Trainer writes its first checkpoint;
  2. the rerun resumes training from that checkpoint step, blesses and pushes;
  3. a third run with nothing changed is cached end to end and pushes nothing.
"""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pytestmark = pytest.mark.e2e


def _cli(args, **kw):
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    with open(os.path.join(REPO, "configs", "digits_cnn.yaml")) as f:
        cfg = yaml.safe_load(f)
    cfg["runs_dir"] = str(tmp / "runs")
    cfg["train"]["epochs"] = 12  # small, still well above the 0.95 bound
    cfg["train"]["checkpoint_every_steps"] = 5
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = {"cfg": cfg, "config": str(config), "tmp": tmp}

    # 1. kill mid-training
    proc = _cli(["run", "--config", str(config)], start_new_session=True)
    ckpt_glob = os.path.join(cfg["runs_dir"], "checkpoints", cfg["pipeline_name"], "*", "ckpt-*.index")
    deadline = time.time() + 600
    while not glob.glob(ckpt_glob) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert glob.glob(ckpt_glob), f"no checkpoint appeared; run output:\n{proc.communicate()[0][-3000:] if proc.poll() is not None else ''}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    out["killed_at_steps"] = sorted(int(p.rsplit("ckpt-", 1)[1].split(".")[0]) for p in glob.glob(ckpt_glob))

    # 2. rerun: resumes, finishes, pushes; 3. rerun: all cached
    for i in (2, 3):
        summary_path = tmp / f"summary{i}.json"
        started = time.time()
        p = _cli(["run", "--config", str(config), "--summary-json", str(summary_path)])
        log = p.communicate(timeout=900)[0]
        out[f"code{i}"], out[f"log{i}"], out[f"secs{i}"] = p.returncode, log, time.time() - started
        out[f"summary{i}"] = json.loads(summary_path.read_text()) if summary_path.exists() else None
        out[f"versions{i}"] = sorted(os.listdir(os.path.join(cfg["runs_dir"], "serving", "digits")))
    return out


def test_rerun_after_kill_resumes_blesses_and_pushes(runs):
    s = runs["summary2"]
    assert runs["code2"] == 0, runs["log2"][-4000:]
    assert s["blessed"] is True
    assert s["training"]["resumed_from_step"] >= 5, s["training"]
    assert s["training"]["resumed_from_step"] in runs["killed_at_steps"]
    assert s["training"]["final_step"] == s["training"]["total_steps"]
    assert s["pushed"] and os.path.isfile(os.path.join(s["pushed"]["path"], "saved_model.pb"))
    assert s["pushed"]["path"].endswith(f"/digits/{s['pushed']['version']}")
    assert s["metrics"]["test_accuracy"] >= 0.95
    statuses = {c["name"]: c["status"] for c in s["components"]}
    assert statuses["Trainer"] == "ran" and statuses["Pusher"] == "ran"
    assert set(s) >= {"pipeline_name", "run_id", "components", "blessed", "metrics", "pushed"}
    assert not [v for v in runs["versions2"] if v.startswith(".")], "a temp push directory is visible"


def _test_split(runs):
    s = runs["summary2"]
    examples_uri = os.path.dirname(os.path.dirname(s["test_report_uri"]))  # pipeline root / component
    files = glob.glob(os.path.join(runs["cfg"]["runs_dir"], "pipelines", "digits_cnn", "ExampleGen", "examples", "*", "Split-test", "*"))
    assert files, examples_uri
    raw = list(tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator())
    parsed = tf.io.parse_example(raw, {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)})
    images = np.stack([tf.io.decode_png(b).numpy() for b in parsed["image"].numpy()])
    return raw, images, parsed["label"].numpy()


def test_pushed_model_signatures_agree_and_reach_accuracy(runs):
    model = tf.saved_model.load(runs["summary2"]["pushed"]["path"])
    raw, images, labels = _test_split(runs)
    p_examples = model.signatures["serving_default"](examples=tf.constant(raw))["probabilities"].numpy()
    p_images = model.signatures["serving_images"](images=tf.constant(images))["probabilities"].numpy()
    np.testing.assert_allclose(p_examples, p_images, atol=1e-5)
    assert p_images.dtype == np.float32
    accuracy = float(np.mean(np.argmax(p_images, axis=1) == labels))
    assert accuracy >= 0.95
    assert abs(accuracy - runs["summary2"]["metrics"]["test_accuracy"]) < 1e-6
    with open(os.path.join(runs["summary2"]["pushed"]["path"], "assets", "label_names.txt")) as f:
        assert f.read().split() == [str(i) for i in range(10)]


def test_unchanged_rerun_is_fully_cached_and_pushes_nothing(runs):
    s = runs["summary3"]
    assert runs["code3"] == 0, runs["log3"][-4000:]
    not_cached = [c for c in s["components"] if c["status"] != "cached"]
    assert not not_cached, not_cached
    assert s["pushed"] is None and s["already_pushed"]["version"] == runs["summary2"]["pushed"]["version"]
    assert runs["versions3"] == runs["versions2"]
    print(f"warm no-change rerun: {runs['secs3']:.1f} s")
