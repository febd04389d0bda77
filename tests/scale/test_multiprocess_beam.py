"""The full default pipeline on Beam's DirectRunner in multi_processing mode with 2 workers
(configs/digits_cnn_multiproc.yaml): StatisticsGen, Transform and the Evaluator run their
bundles in separate SDK worker processes. It runs, blesses, pushes, and its Transform output
matches the in-memory runner's (the session's `pipeline_runs`, same data and config).
One full pipeline run (the reference run is shared with tests/pipeline/test_e2e.py)."""
import glob
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import yaml

from bench.procs import beam_sdk_workers_under

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PRESET = os.path.join(REPO, "configs", "digits_cnn_multiproc.yaml")
# tft.mean/tft.var are combined in a different order across worker processes; float32 sums
# may then differ in the last bits. Everything else must be identical.
FLOAT_TOLERANCE = 1e-5


def run_multiproc(tmp, ref_cfg: dict) -> dict:
    """The preset through the CLI in `tmp`, with the reference run's epochs; watches for SDK workers."""
    with open(PRESET) as f:
        cfg = yaml.safe_load(f)
    cfg["runs_dir"] = str(tmp / "runs")
    cfg["train"].update(epochs=ref_cfg["train"]["epochs"], checkpoint_every_steps=ref_cfg["train"]["checkpoint_every_steps"])
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(cfg))
    summary_path, log_path = tmp / "summary.json", tmp / "run.log"
    started = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "--config", str(config), "--summary-json", str(summary_path)],
                                cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    workers: set[int] = set()
    while proc.poll() is None and time.time() - started < 1800:
        workers |= beam_sdk_workers_under(proc.pid)
        time.sleep(0.5)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    return {"cfg": cfg, "code": proc.returncode, "log": log_path.read_text(errors="replace"), "workers": workers,
            "secs": time.time() - started, "summary": json.loads(summary_path.read_text()) if summary_path.exists() else None}


@pytest.fixture(scope="module")
def multiproc_run(tmp_path_factory, pipeline_runs):
    return run_multiproc(tmp_path_factory.mktemp("multiproc"), pipeline_runs["cfg"])


def test_runs_blesses_and_pushes_with_two_beam_worker_processes(multiproc_run):
    run = multiproc_run
    assert run["code"] == 0, run["log"][-4000:]
    assert run["summary"]["blessed"] and run["summary"]["pushed"], run["summary"]
    assert len(run["workers"]) >= 2, f"Beam SDK worker processes seen: {run['workers']}"


def _rows(runs_dir: str, pipeline: str, split: str) -> dict:
    (split_dir,) = glob.glob(os.path.join(runs_dir, "pipelines", pipeline, "Transform", "transformed_examples", "*", f"Split-{split}"))
    rows = []
    for path in sorted(glob.glob(os.path.join(split_dir, "*.gz"))):
        for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
            feats = tf.train.Example.FromString(record.numpy()).features.feature
            rows.append({k: np.array(getattr(v, v.WhichOneof("kind")).value) for k, v in feats.items()})
    # the order of records depends on the runner's sharding: compare as a sorted set
    rows.sort(key=lambda r: (int(r["label"][0]), tuple(np.round(r["image"], 3))))
    return rows


@pytest.mark.parametrize("split", ["train", "eval"])
def test_transform_output_matches_the_in_memory_runner(multiproc_run, pipeline_runs, split):
    assert multiproc_run["code"] == 0, multiproc_run["log"][-4000:]
    got = _rows(multiproc_run["cfg"]["runs_dir"], multiproc_run["cfg"]["pipeline_name"], split)
    want = _rows(pipeline_runs["cfg"]["runs_dir"], pipeline_runs["cfg"]["pipeline_name"], split)
    assert len(got) == len(want) > 200
    assert [sorted(r) for r in got] == [sorted(r) for r in want]  # same features
    assert [int(r["label"][0]) for r in got] == [int(r["label"][0]) for r in want]
    for key in ("image", "image_mean", "image_std"):
        diff = max(float(np.max(np.abs(g[key] - w[key]))) for g, w in zip(got, want))
        assert diff <= FLOAT_TOLERANCE, f"{key}: max |diff| {diff}"
