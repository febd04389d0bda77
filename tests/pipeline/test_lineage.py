"""`python -m pipeline lineage`: the chain behind a served version, read from the real MLMD
store of the real default pipeline (session fixture `pipeline_runs`), and the error paths
on temporary directories."""
import datetime as dt
import hashlib
import json
import os

import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline.lineage import cli


def _lineage(capsys, *argv):
    code = cli(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.mark.e2e
def test_lineage_of_the_pushed_version(pipeline_runs, capsys):
    cfg, pushed = pipeline_runs["cfg"], pipeline_runs["summary2"]["pushed"]
    assert pushed, "the fixture's second run did not push; see tests/pipeline/test_e2e.py"
    serving = os.path.join(cfg["runs_dir"], "serving")  # --metadata defaults to runs_dir/metadata.sqlite
    facts = json.loads(_lineage(capsys, "--serving_base", serving, "--model", "digits", "--version", str(pushed["version"]), "--json"))

    assert facts["version"] == pushed["version"] and os.path.samefile(facts["version_dir"], pushed["path"])
    pushed_at = dt.datetime.fromisoformat(facts["pushed"]["time"])
    assert abs(pushed_at.timestamp() - os.stat(os.path.join(pushed["path"], "saved_model.pb")).st_mtime) < 900
    assert facts["pushed"]["run_id"] == pipeline_runs["summary2"]["run_id"]
    with open(pipeline_runs["config"], "rb") as f:
        assert facts["run"]["config_hash"] == hashlib.sha256(f.read()).hexdigest()
    assert facts["run"]["git_commit"] == pipeline_runs["summary2"].get("git_commit", "unknown")  # stamped by pipeline/run.py

    data = facts["data"]
    assert (data["dataset"], data["dataset_version"], data["data_source"]) == ("sklearn_digits", "1.0.0", "tfds")
    assert sum(data["split_counts"].values()) == 1797  # all of scikit-learn's digits
    for split in ("train", "eval", "test"):
        files = sorted(os.listdir(os.path.join(data["examples_uri"], f"Split-{split}")))
        assert data["split_fingerprints"][split] == _sha256(os.path.join(data["examples_uri"], f"Split-{split}", files[0]))

    training = facts["training"]
    assert training["model"] == cfg["model"]["name"]
    assert training["hyperparameters"]["epochs"] == cfg["train"]["epochs"]
    assert training["hyperparameters"]["learning_rate"] == cfg["train"]["learning_rate"]
    assert len(training["code_fingerprint"]) == 16
    assert training["summary"]["final_step"] == pipeline_runs["summary2"]["training"]["final_step"]
    assert facts["transform"]["transform_graph_uri"] and facts["schema"]["uri"]

    evaluation = facts["evaluation"]
    assert evaluation["blessed"] is True and evaluation["failed_thresholds"] == []
    accuracy = evaluation["metrics"]["eval_sparse_categorical_accuracy"]
    assert accuracy == pytest.approx(pipeline_runs["summary2"]["metrics"]["eval_sparse_categorical_accuracy"])
    assert {"metric": "SparseCategoricalAccuracy", "slice": "overall", "bound": f">= {cfg['evaluate']['accuracy']['lower_bound']}"} in evaluation["thresholds"]
    assert facts["heldout"]["test_accuracy"] == pytest.approx(pipeline_runs["summary2"]["metrics"]["test_accuracy"])
    nodes = {s["node"] for s in facts["steps"]}
    assert {"Pusher", "Evaluator", "Trainer", "Transform", "SchemaGen", "ExampleGen", "HeldOutEvaluator"} <= nodes
    if any(s["type"].endswith("ModelOptimizer") for s in facts["steps"]):  # components/optimize, when wired in
        assert facts["optimizer"]["outcome"]["status"] in ("optimized", "kept_original", "skipped", "parity_failed", "error")
    else:
        assert facts["optimizer"] is None

    # The default version is the highest directory, which TF Serving loads; text for people.
    text = _lineage(capsys, "--serving_base", serving, "--model", "digits")
    newest = max(int(v) for v in os.listdir(os.path.join(serving, "digits")) if v.isdigit())
    assert f"version {newest}" in text.splitlines()[0]
    if newest == pushed["version"]:  # the cached third run pushed nothing new
        for needle in ("sklearn_digits version 1.0.0", *data["split_fingerprints"].values(), f"epochs={cfg['train']['epochs']}",
                       f"learning_rate={cfg['train']['learning_rate']}", "eval_sparse_categorical_accuracy=",
                       "SparseCategoricalAccuracy (overall) >= ", "test_accuracy", facts["pushed"]["time"], facts["run"]["git_commit"]):
            assert str(needle) in text, needle


def _serving(tmp_path, *versions):
    for v in versions:
        (tmp_path / "serving" / "digits" / str(v)).mkdir(parents=True)
    return str(tmp_path / "serving")


def _error(capsys, *argv):
    code = cli(list(argv))
    return code, capsys.readouterr().err


def test_unknown_model_names_the_models_there(tmp_path, capsys):
    code, err = _error(capsys, "--serving_base", _serving(tmp_path, 1), "--model", "mnist")
    assert code == 1 and "no model 'mnist'" in err and "models there: digits" in err


def test_unknown_version_lists_the_versions(tmp_path, capsys):
    code, err = _error(capsys, "--serving_base", _serving(tmp_path, 1, 2), "--model", "digits", "--version", "7")
    assert code == 1 and "no version 7" in err and "versions there: 1, 2" in err


def test_missing_store_says_how_to_point_at_one(tmp_path, capsys):
    code, err = _error(capsys, "--serving_base", _serving(tmp_path, 3), "--model", "digits")
    assert code == 1 and str(tmp_path / "metadata.sqlite") in err and "--metadata" in err


def test_version_without_a_push_record(tmp_path, capsys):
    store_path = str(tmp_path / "metadata.sqlite")
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = store_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    metadata_store.MetadataStore(config)  # a real, empty MLMD store
    code, err = _error(capsys, "--serving_base", _serving(tmp_path, 5), "--model", "digits")
    assert code == 1 and "was it pushed by this pipeline?" in err and store_path in err
    assert os.path.join("digits", "5") in err


def test_bad_model_name_is_a_usage_error(tmp_path, capsys):
    code, err = _error(capsys, "--serving_base", _serving(tmp_path, 1), "--model", "../etc")
    assert code == 2 and "bad model name" in err
