"""`python -m pipeline compile`: the real pipeline compiled by TFX's KubeflowV2DagRunner
(KFP IR JSON) and an Airflow DAG file (Airflow itself is not installed here: the file is
checked as Python and against TFX's AirflowPipelineConfig signature)."""
import ast
import json
import os
import py_compile

import pytest
import yaml

from components.evaluate.heldout import HeldOutReport
from pipeline import compile as compile_mod
from pipeline.compile import CompileError, Placement, check_kfp_artifact_types, cli, kfp_pipeline_name
from components.tfx_compat import tfx
from tfx.types.artifact import Artifact

CUSTOM_EXECUTORS = ("components.ingest.", "components.validate.executor.", "components.evaluate.heldout.", "components.push.")


def test_kubeflow_v2_spec_has_every_component(default_config_path, tmp_path, capsys):
    pytest.importorskip("kfp", reason="the kubeflow-v2 target needs kfp (pip install " + compile_mod.KFP_PINS + ")")
    out = tmp_path / "pipeline.json"
    code = cli(["--config", default_config_path, "--target", "kubeflow-v2", "--output", str(out), "--image", "gcr.io/p/img:1",
                "--pipeline-root", "gs://bkt/tfx", "--serving-base", "/gcs/bkt/serving"])
    assert code == 0, capsys.readouterr().err
    job = json.loads(out.read_text())
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]

    from pipeline.build import build_pipeline
    from pipeline.config import load_config

    ids = [c.id for c in build_pipeline(load_config(default_config_path)).components]
    assert {"ExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "AnomaliesGate", "Transform", "Trainer",
            "BaselineResolver", "Evaluator", "HeldOutEvaluator", "Pusher"} <= set(ids)
    for node in ids:  # a resolver is compiled into "<id>-model-resolver" / "<id>-model-blessing-resolver" tasks
        assert node in tasks or any(t.startswith(node + "-") for t in tasks), f"{node} missing from {sorted(tasks)}"
    assert tasks["Evaluator"]["inputs"]["artifacts"]["baseline_model"]["taskOutputArtifact"]["producerTask"] == "BaselineResolver-model-resolver"
    assert "AnomaliesGate" in tasks["Transform"]["dependentTasks"]  # the data gate still stops Transform

    executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
    args = [" ".join(e["container"].get("args", [])) for e in executors.values() if "container" in e]
    for prefix in CUSTOM_EXECUTORS:
        assert any(f"--executor_class_path {prefix}" in a for a in args), prefix
    assert {e["container"]["image"] for e in executors.values() if "container" in e} == {"gcr.io/p/img:1"}
    assert job["displayName"] == "digits-cnn" and job["runtimeConfig"]["gcsOutputDirectory"] == "gs://bkt/tfx"
    assert tasks["Pusher"]["inputs"]["parameters"]["serving_base"]["runtimeValue"]["constantValue"]["stringValue"] == "/gcs/bkt/serving"
    trainer_config = json.loads(tasks["Trainer"]["inputs"]["parameters"]["custom_config"]["runtimeValue"]["constantValue"]["stringValue"])
    assert trainer_config["checkpoint_root"] == "/gcs/bkt/tfx/checkpoints/digits-cnn"

    # What the KFP launcher does at run time with the custom type's schema title.
    from tfx.utils import import_utils

    schema = job["pipelineSpec"]["components"]["HeldOutEvaluator"]["outputDefinitions"]["artifacts"]["report"]["artifactType"]["instanceSchema"]
    title = yaml.safe_load(schema)["title"]
    assert import_utils.import_class_by_path(title) is HeldOutReport


class BadlyNamedReport(Artifact):
    TYPE_NAME = "BadlyNamedReport"


@tfx.dsl.components.component
def Reporter(report: tfx.dsl.components.OutputArtifact[BadlyNamedReport]):
    pass


def test_custom_artifact_type_without_module_is_refused_with_the_fix(tmp_path):
    pipeline = tfx.dsl.Pipeline(pipeline_name="t", pipeline_root=str(tmp_path), components=[Reporter()])
    with pytest.raises(CompileError, match=r"TYPE_NAME = 'components.BadlyNamedReport'"):
        check_kfp_artifact_types(pipeline)


def test_placement_paths():
    assert Placement(pipeline_root="gs://bkt/tfx/").resolved().checkpoint_root == "/gcs/bkt/tfx/checkpoints"
    assert Placement(pipeline_root="/mnt/tfx").resolved().checkpoint_root == "/mnt/tfx/checkpoints"
    assert Placement().resolved().checkpoint_root is None  # nothing moves unless asked
    with pytest.raises(CompileError, match="/gcs/BUCKET"):
        Placement(serving_base="gs://bkt/serving").resolved()
    with pytest.raises(CompileError, match="--checkpoint-root"):
        Placement(pipeline_root="s3://bkt/tfx").resolved()
    assert kfp_pipeline_name("Digits_CNN.v2") == "digits-cnn-v2"
    with pytest.raises(CompileError):
        kfp_pipeline_name("_x")


def test_build_decides_paths_and_resolver_once_for_the_target(default_config_path):
    """build_pipeline(cfg, target) builds for where it runs: cloud roots stay as given (no
    abspath turning gs:// into <cwd>/gs:/), the baseline resolver is the portable one."""
    from components.evaluate.baseline import LatestBlessedOtherModelStrategy
    from pipeline.build import Target, build_pipeline
    from pipeline.config import load_config

    cfg = load_config(default_config_path)
    by_id = lambda p: {c.id: c for c in p.components}  # noqa: E731
    local = by_id(build_pipeline(cfg))
    assert local["BaselineResolver"].exec_properties["resolver_class"] is LatestBlessedOtherModelStrategy
    assert json.loads(local["Trainer"].exec_properties["custom_config"])["checkpoint_root"] == os.path.join(
        os.path.dirname(default_config_path), "runs", "checkpoints", cfg["pipeline_name"])

    target = Target(pipeline_root="gs://bkt/tfx", serving_base="/gcs/bkt/serving",
                    checkpoint_root="/gcs/bkt/tfx/checkpoints", portable_resolver=True)
    pipeline = build_pipeline(cfg, target)
    cloud = by_id(pipeline)
    assert pipeline.pipeline_info.pipeline_root == "gs://bkt/tfx"
    assert cloud["Pusher"].exec_properties["serving_base"] == "/gcs/bkt/serving"
    assert json.loads(cloud["Trainer"].exec_properties["custom_config"])["checkpoint_root"] == (
        "/gcs/bkt/tfx/checkpoints/" + cfg["pipeline_name"])
    resolver = cloud["BaselineResolver"]
    assert resolver.exec_properties["resolver_class"] is tfx.dsl.experimental.LatestBlessedModelStrategy
    assert "candidate" not in resolver.inputs and cloud["Trainer"] not in resolver.upstream_nodes
    assert Placement(pipeline_root="gs://bkt/tfx", serving_base="/gcs/bkt/serving").target(
        portable_resolver=True) == target


def _airflow_config_params() -> set:
    """Parameter names of TFX's AirflowPipelineConfig.__init__, read from source (airflow is not installed)."""
    import tfx as tfx_package

    path = os.path.join(os.path.dirname(tfx_package.__file__), "orchestration", "airflow", "airflow_dag_runner.py")
    tree = ast.parse(open(path).read())
    cls = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "AirflowPipelineConfig")
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    return {a.arg for a in init.args.args}


def test_airflow_dag_file(default_config_path, tmp_path, capsys):
    out = tmp_path / "dags" / "digits_cnn_dag.py"
    code = cli(["--config", default_config_path, "--target", "airflow", "--output", str(out), "--schedule", "0 2 * * *",
                "--start-date", "2026-01-05", "--serving-base", "/srv/models"])
    assert code == 0, capsys.readouterr().err
    source = out.read_text()
    py_compile.compile(str(out), cfile=str(tmp_path / "dag.pyc"), doraise=True)
    tree = ast.parse(source)
    assert os.path.abspath(default_config_path) in source
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {"pipeline.build", "pipeline.config", "tfx.orchestration.airflow.airflow_dag_runner"} <= imported

    constants = {t.id: ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                 for t in n.targets if isinstance(t, ast.Name) and t.id in ("CONFIG_PATH", "PATHS", "PLACEMENT")}
    assert Placement(**constants["PLACEMENT"]).serving_base == "/srv/models"
    runs = os.path.join(os.path.dirname(default_config_path), "runs")
    assert constants["PATHS"] == {"runs_dir": runs, "data_dir": os.path.join(runs, "tensorflow_datasets"), "serving_base": os.path.join(runs, "serving")}
    calls = {n.func.id: n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert {"AirflowDagRunner", "AirflowPipelineConfig", "build_pipeline", "load_config", "Placement"} <= set(calls)
    assert {k.arg for k in calls["AirflowPipelineConfig"].keywords} <= _airflow_config_params()
    assert "'schedule_interval': '0 2 * * *'" in source.replace('"', "'") and "datetime.datetime(2026, 1, 5)" in source


@pytest.mark.parametrize("argv, message", [
    (["--target", "argo", "--output", "x.json"], "Allowed targets: kubeflow-v2, airflow"),
    (["--target", "airflow", "--output", "dag.txt"], "Airflow loads DAGs only from .py files"),
    (["--target", "airflow", "--output", "dag.py", "--schedule", "0 2 * *"], "invalid cron expression"),
    (["--target", "kubeflow-v2", "--output", "p.json", "--serving-base", "gs://b/s"], "/gcs/BUCKET"),
])
def test_usage_errors_exit_2_with_the_fix(default_config_path, tmp_path, capsys, argv, message):
    argv = [a if not a.endswith((".json", ".py", ".txt")) else str(tmp_path / a) for a in argv]
    assert cli(["--config", default_config_path, *argv]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir()), "nothing is written on a usage error"


def test_missing_config_exits_2(tmp_path, capsys):
    assert cli(["--config", str(tmp_path / "nope.yaml"), "--target", "airflow", "--output", str(tmp_path / "d.py")]) == 2
    assert "does not exist" in capsys.readouterr().err

