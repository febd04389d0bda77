"""The Evaluator gate in the real pipeline: a failed gate pushes nothing and says why.

Reuses the runs of the `pipeline_runs` fixture (a blessed, pushed baseline exists there),
then runs a deliberately worse candidate: 1 epoch instead of 12, against an unreachable
value bound and a change threshold that allows no drop versus the latest blessed model.
"""
import json
import os
import subprocess
import sys

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # tests/components/evaluate/ -> repo
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def worse_run(pipeline_runs):
    cfg = json.loads(json.dumps(pipeline_runs["cfg"]))
    cfg["train"]["epochs"] = 1
    cfg["evaluate"]["accuracy"] = {"lower_bound": 0.999}
    cfg["evaluate"]["max_accuracy_drop"] = 0.0
    tmp = pipeline_runs["tmp"]
    config, summary_path = tmp / "worse.yaml", tmp / "worse_summary.json"
    config.write_text(yaml.safe_dump(cfg))
    serving = os.path.join(cfg["runs_dir"], "serving", "digits")
    before = sorted(os.listdir(serving))
    p = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", "--config", str(config), "--summary-json", str(summary_path)],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )
    return {"proc": p, "summary": json.loads(summary_path.read_text()), "before": before, "after": sorted(os.listdir(serving))}


def test_failed_gate_exits_3_and_pushes_nothing(worse_run):
    p, s = worse_run["proc"], worse_run["summary"]
    assert p.returncode == 3, p.stdout[-3000:] + p.stderr[-3000:]
    assert s["blessed"] is False and s["pushed"] is None
    assert worse_run["after"] == worse_run["before"], "a version was pushed despite the failed gate"
    assert "blessed: no" in p.stdout and "FAILED" in p.stdout


def test_summary_names_value_and_change_threshold_failures(worse_run):
    s = worse_run["summary"]
    failing = {f["metric"]: f for f in s["failing_thresholds"]}
    value = failing.get("sparse_categorical_accuracy")
    assert value and value["bound"] == ">= 0.999" and value["value"] < 0.999 and value["slice"] == "overall"
    change = [f for name, f in failing.items() if name.startswith("sparse_categorical_accuracy") and "change vs baseline" in name]
    assert change, f"the change threshold against the blessed baseline did not fire: {failing}"
    assert s["baseline"] and s["baseline"]["model_id"], "the Evaluator got no baseline model"
