"""Run history read from a real MLMD store written by real TFX runs (LocalDagRunner + SQLite).

A toy pipeline of Python function components stands in for the digits pipeline (which
takes minutes): a trainer, an "Evaluator" node that writes a ModelBlessing and a
"Pusher" node that writes a PushedModel, with the custom properties the real ones set.
"""
import json
import os

import pytest

from pipeline import history
from pipeline.history import HistoryError, list_runs
from components.tfx_compat import tfx
from tfx.types import standard_artifacts

OutputArtifact, InputArtifact, Parameter = (tfx.dsl.components.OutputArtifact, tfx.dsl.components.InputArtifact,
                                            tfx.dsl.components.Parameter)


@tfx.dsl.components.component
def ToyTrainer(model: OutputArtifact[standard_artifacts.Model], fail: Parameter[int] = 0):
    if fail:
        raise RuntimeError("toy trainer failed on purpose")
    with open(os.path.join(model.uri, "weights.txt"), "w") as f:
        f.write("w")


@tfx.dsl.components.component
def ToyEvaluator(model: InputArtifact[standard_artifacts.Model],
                 blessing: OutputArtifact[standard_artifacts.ModelBlessing], bless: Parameter[int] = 1):
    blessing.set_int_custom_property("blessed", bless)


@tfx.dsl.components.component
def ToyPusher(model: InputArtifact[standard_artifacts.Model], blessing: InputArtifact[standard_artifacts.ModelBlessing],
              pushed_model: OutputArtifact[standard_artifacts.PushedModel], version: Parameter[int] = 1):
    blessed = blessing.get_int_custom_property("blessed")
    pushed_model.set_int_custom_property("pushed", blessed)
    if blessed:  # like components/push: an int version and the directory it went to
        pushed_model.set_int_custom_property("pushed_version", version)
        pushed_model.set_string_custom_property("pushed_destination", f"/srv/models/toy/{version}")


def run_toy_pipeline(root, name, *, bless=1, version=1, fail=0):
    trainer = ToyTrainer(fail=fail)
    evaluator = ToyEvaluator(model=trainer.outputs["model"], bless=bless).with_id("Evaluator")
    pusher = ToyPusher(model=trainer.outputs["model"], blessing=evaluator.outputs["blessing"],
                       version=version).with_id("Pusher")
    pipeline = tfx.dsl.Pipeline(
        pipeline_name=name, pipeline_root=str(root / "root" / name), components=[trainer, evaluator, pusher],
        enable_cache=False,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(root / "metadata.sqlite")))
    tfx.orchestration.LocalDagRunner().run(pipeline)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Three runs, oldest first: toy (blessed, pushed v5), toy (not blessed), other (trainer fails)."""
    root = tmp_path_factory.mktemp("mlmd")
    run_toy_pipeline(root, "toy", bless=1, version=5)
    run_toy_pipeline(root, "toy", bless=0, version=6)
    with pytest.raises(Exception, match="failed on purpose"):
        run_toy_pipeline(root, "other", fail=1)
    return root / "metadata.sqlite"


def test_lists_every_run_newest_first_with_its_outcome(store):
    failed, rejected, pushed = list_runs(store)
    assert [r.pipeline for r in (failed, rejected, pushed)] == ["other", "toy", "toy"]
    assert failed.start_ms >= rejected.start_ms >= pushed.start_ms
    assert len({failed.run_id, rejected.run_id, pushed.run_id}) == 3

    assert (pushed.status, pushed.blessed, pushed.pushed) == ("complete", True, True)
    assert (pushed.pushed_version, pushed.pushed_destination) == ("5", "/srv/models/toy/5")
    assert pushed.executions == 3 and pushed.duration_s > 0

    assert (rejected.status, rejected.blessed, rejected.pushed, rejected.pushed_version) == \
        ("complete", False, False, None)

    assert failed.status == "failed" and failed.failed_nodes == ("ToyTrainer",)
    assert failed.blessed is None and failed.pushed is None  # Evaluator and Pusher never ran


def test_filters_by_pipeline_and_limits(store):
    assert [r.pipeline for r in list_runs(store, pipeline="toy")] == ["toy", "toy"]
    [newest] = list_runs(store, pipeline="toy", limit=1)
    assert newest.blessed is False
    with pytest.raises(HistoryError, match="no pipeline named 'digits'.*known pipelines: other, toy"):
        list_runs(store, pipeline="digits")


def test_cli_json_and_table(store, capsys):
    assert history.cli(["--metadata", str(store), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [(r["pipeline"], r["status"], r["blessed"], r["pushed_version"]) for r in records] == [
        ("other", "failed", None, None), ("toy", "complete", False, None), ("toy", "complete", True, "5")]
    assert records[2]["start"].endswith("+00:00") and records[2]["duration_s"] > 0

    assert history.cli(["--metadata", str(store), "--pipeline", "toy"]) == 0
    header, first, second = capsys.readouterr().out.strip().splitlines()
    assert header.split() == ["RUN", "ID", "PIPELINE", "STARTED", "DURATION", "STATUS", "BLESSED", "PUSHED", "VERSION"]
    assert records[1]["run_id"] in first and " no " in first and "not pushed" in first
    assert records[2]["run_id"] in second and " yes " in second and second.endswith(" 5")


def test_missing_store_says_to_run_the_pipeline_first(tmp_path, capsys):
    missing = tmp_path / "runs" / "metadata.sqlite"
    assert history.cli(["--metadata", str(missing)]) == 1
    err = capsys.readouterr().err
    assert "no runs yet" in err and "python -m pipeline run --config" in err and str(missing) in err
    assert not missing.exists()  # reading the history never creates a store


def test_a_file_that_is_not_an_mlmd_store_gets_a_clear_error(tmp_path, capsys):
    not_a_store = tmp_path / "notes.sqlite"
    not_a_store.write_bytes(b"")
    assert history.cli(["--metadata", str(not_a_store)]) == 1
    assert "is not a readable ML Metadata store" in capsys.readouterr().err
    assert not_a_store.read_bytes() == b""
