"""The text path through the pipeline: data/model mismatches as config errors, then the
real pipeline end to end. (Tokenizer and Transform: tests/components/transform/; the text
TFDS sources: tests/components/ingest/test_ingest.py.)

The end-to-end test runs the real pipeline (LocalDagRunner, SQLite MLMD) on the project's
offline synthetic_reviews dataset (imdb_reviews' features, templated text), then serves
the pushed model with `python -m serving serve` and calls it over gRPC and REST.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from components.ingest.sources import open_source
from pipeline.build import check_data_fits_model
from pipeline.config import ConfigError, validate_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "configs", "reviews_bilstm.yaml")


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"model": {"name": "digits_cnn", "hparams": {}}}, "token-id model: text_bilstm"),
        ({"train": {"augmentation": {"random_crop": {"p": 0.5, "pad": 1}}}}, "does not apply to text"),
        ({"model": {"name": "text_bilstm", "hparams": {"vocab_size": 10}}}, "data.text.max_tokens"),
    ],
)
def test_text_data_and_model_mismatch_is_a_config_error(tfds_dir, change, message):
    with open(CONFIG) as f:
        raw = yaml.safe_load(f)
    for section, values in change.items():
        raw[section].update(values)
    raw["data"]["data_dir"] = tfds_dir
    cfg = validate_config(raw)
    with pytest.raises(ConfigError, match=message):
        check_data_fits_model(cfg, open_source(cfg["data"]))


def test_token_model_on_image_data_is_a_config_error(tfds_dir):
    cfg = validate_config({"pipeline_name": "x", "data": {"data_dir": tfds_dir}, "model": {"name": "text_bilstm"}})
    with pytest.raises(ConfigError, match="reads token ids, but the dataset has images"):
        check_data_fits_model(cfg, open_source(cfg["data"]))


def test_text_settings_are_validated():
    with pytest.raises(ConfigError, match="data.text.sequence_length"):
        validate_config({"pipeline_name": "x", "data": {"text": {"sequence_length": 0}}})
    with pytest.raises(ConfigError, match="unknown config key 'data.text.vocab'"):
        validate_config({"pipeline_name": "x", "data": {"text": {"vocab": 10}}})


# ---------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("text_e2e")
    with open(CONFIG) as f:
        raw = yaml.safe_load(f)
    raw["runs_dir"] = str(tmp / "runs")
    config = tmp / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    summary = tmp / "summary.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--config", str(config), "--summary-json", str(summary), "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=1200,
    )
    return {"code": proc.returncode, "log": proc.stdout + proc.stderr, "runs": raw["runs_dir"],
            "summary": json.loads(summary.read_text()) if summary.exists() else None}


def test_text_pipeline_trains_blesses_and_pushes(text_run):
    assert text_run["code"] == 0, text_run["log"][-4000:]
    summary = text_run["summary"]
    assert summary["blessed"] and summary["pushed"], summary
    assert summary["metrics"]["test_accuracy"] >= 0.9, summary["metrics"]  # held-out test split
    assert summary["infra"]["status"] == "blessed" and summary["infra"]["skew_check"] == "passed", summary["infra"]
    assert "serving_text" in summary["infra"]["reason"], summary["infra"]
    assert summary["training"]["modality"] == "text" and summary["training"]["hparams"]["vocab_size"] > 2
    # serving_text's string ops have no ONNX conversion: the optimizer says which and keeps TensorFlow.
    assert summary["optimizer"]["status"] == "kept_original", summary["optimizer"]
    assert "serving_text" in summary["optimizer"]["reason"] and summary["optimizer"]["unsupported_ops"], summary["optimizer"]


def test_pushed_text_model_answers_over_grpc_and_rest(text_run, tmp_path):
    """The pushed model, served by the embedded server: serving_text agrees with serving_default."""
    import grpc
    from serving.client import RestClient, ServingClient

    from components.ingest.executor import make_example
    from serving.launcher import ModelServerProcess, wait_until_available

    assert text_run["code"] == 0, text_run["log"][-2000:]
    base = os.path.join(text_run["runs"], "serving", "reviews")
    texts = ["the acting was not bad at all, really wonderful", "a dull and boring plot. i did not find it good"]
    examples = [make_example(t.encode(), 0, "neg", key="text") for t in texts]
    with ModelServerProcess("reviews", base, str(tmp_path / "server.log"), rest=True) as server:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            wait_until_available(server, channel, timeout_seconds=120)
        with ServingClient(f"127.0.0.1:{server.port}", timeout=10.0) as client:
            by_text = client.predict_text("reviews", texts)
            by_examples = client.predict_examples("reviews", examples)
        by_rest = RestClient(f"http://127.0.0.1:{server.rest_port}", timeout=10.0).predict_text("reviews", texts)
    assert by_text.classes[0] == ["neg", "pos"]
    np.testing.assert_allclose(by_text.probabilities, by_examples.probabilities, atol=1e-5)
    np.testing.assert_allclose(by_text.probabilities, by_rest.probabilities, atol=1e-5)
    assert np.argmax(by_text.probabilities, axis=1).tolist() == [1, 0]  # "not bad" is positive, "not ... good" negative
