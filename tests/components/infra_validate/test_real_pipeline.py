"""The gates on what the real default pipeline produced (the shared `pipeline_runs` run)."""
import os

from pipeline.run import open_store, run_executions
from components.infra_validate.executor import run_infra_validation
from components.train.keys import TRAINED_MODEL_FILE
from pipeline.validate_cmd import cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # tests/components/infra_validate/ -> repo


def _output_uri(runs: dict, node: str, key: str) -> str:
    return runs[node]["outputs"][key][0].uri


def test_pushed_model_passes_the_ci_gate(pipeline_runs, tmp_path, capsys):
    pushed = pipeline_runs["summary2"]["pushed"]
    assert pushed, pipeline_runs["log2"][-2000:]
    code = cli(["--model", pushed["path"], "--data", pipeline_runs["config"], "--split", "test",
                "--thresholds", os.path.join(REPO, "configs", "thresholds.yaml"), "--report-dir", str(tmp_path)])
    assert code == 0, capsys.readouterr()
    assert (tmp_path / "report.json").is_file() and (tmp_path / "report.md").is_file()


def test_trained_model_passes_infra_validation(pipeline_runs):
    cfg = pipeline_runs["cfg"]
    store = open_store(os.path.join(cfg["runs_dir"], "metadata.sqlite"))
    runs = run_executions(store, cfg["pipeline_name"], pipeline_runs["summary2"]["run_id"])
    examples = _output_uri(runs, "ExampleGen", "examples")
    keras_model = os.path.join(_output_uri(runs, "Trainer", "model_run"), TRAINED_MODEL_FILE)
    result = run_infra_validation(
        os.path.join(_output_uri(runs, "Trainer", "model"), "Format-Serving"),
        [os.path.join(examples, "Split-eval", f) for f in os.listdir(os.path.join(examples, "Split-eval"))],
        {"timeout_seconds": 180}, cfg["push"]["model_name"],
        transform_graph_uri=_output_uri(runs, "Transform", "transform_graph"), keras_model_path=keras_model,
    )
    assert result["blessed"], result["reason"]
    assert result["serving"]["signature_max_abs_diff"] <= 1e-4
    if os.path.isfile(keras_model):
        assert result["skew"]["passed"] and result["skew"]["max_abs_diff"] <= 1e-4, result["skew"]
    else:  # until the Trainer saves model.keras (see docs/validation.md)
        assert result["skew"]["passed"] is None and "the Trainer should save it there" in result["skew"]["reason"]
