"""Compile the pipeline for an orchestrator other than the local runner.

`kubeflow-v2` writes the KFP IR pipeline-job JSON that Vertex AI Pipelines (and Kubeflow
Pipelines 2.x) runs, through TFX's KubeflowV2DagRunner. `airflow` writes an Airflow DAG
file that builds the same pipeline at import time and hands it to TFX's AirflowDagRunner.
The pipeline is the one `build_pipeline(cfg, target)` builds for where it will run:

- kubeflow-v2 needs a pipeline name of `[a-z0-9-]` (digits_cnn -> digits-cnn) and
  supports only TFX's built-in resolver strategies: the baseline resolver is built with TFX's
  LatestBlessedModelStrategy (same choice of baseline; see docs/scale.md on caching).
- `--pipeline-root`, `--serving-base` and `--checkpoint-root` put the config's local
  paths in the cloud. The pipeline root may be any URI TFX can write (gs://...); the
  serving base and checkpoint root must be POSIX paths (the Pusher publishes with an
  atomic rename, checkpoints are plain files), e.g. the Cloud Storage FUSE mount
  /gcs/BUCKET/... of Vertex AI.

    python -m pipeline compile --config configs/digits_cnn.yaml --target kubeflow-v2 \\
        --output pipeline.json --image gcr.io/my-project/tfx-vision-pipeline:1.0 \\
        --pipeline-root gs://my-bucket/tfx --serving-base /gcs/my-bucket/serving
    python -m pipeline compile --config configs/digits_cnn.yaml --target airflow \\
        --output ~/airflow/dags/digits_cnn.py --schedule "0 2 * * *"

    spec = compile_kubeflow_v2(load_config("configs/digits_cnn.yaml"), "pipeline.json")
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime as dt
import json
import os
import re
import sys

from serving.atomic import atomic_write_text
from serving.cli_runner import run_cli

TARGETS = ("kubeflow-v2", "airflow")
# A placeholder on purpose: the image is built from this repo (Dockerfile at the root).
DEFAULT_IMAGE = "gcr.io/YOUR_PROJECT/tfx-vision-pipeline:latest"
KFP_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")  # KubeflowV2DagRunner's rule for pipeline names
# KFP recovers a custom artifact class at run time from its type name: "<module>.<Class>".
KFP_ARTIFACT_TYPE_RE = re.compile(r"^[a-z][a-z0-9-_]{2,20}[.][A-Z][a-zA-Z0-9-_]{2,49}$")
URI_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
KFP_PINS = "kfp==2.16.1 kfp-pipeline-spec==2.16.1 kubernetes==26.1.0"


class CompileError(ValueError):
    """The pipeline cannot be compiled for the target; the message names the fix."""


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a compiled pipeline writes: None keeps the config's value.

        Placement(pipeline_root="gs://b/tfx", serving_base="/gcs/b/serving").resolved()
    """

    pipeline_root: str | None = None
    serving_base: str | None = None
    checkpoint_root: str | None = None

    def resolved(self) -> "Placement":
        """Checks the paths and fills the checkpoint root in from the pipeline root."""
        for flag, value in (("--serving-base", self.serving_base), ("--checkpoint-root", self.checkpoint_root)):
            if value is not None and URI_SCHEME_RE.match(value):
                raise CompileError(
                    f"{flag} {value!r} is a URI, but this path is written with POSIX file operations "
                    "(atomic rename / plain files). Use a mounted path, e.g. Vertex AI's Cloud Storage "
                    "FUSE mount /gcs/BUCKET/... for gs://BUCKET/...")
        checkpoint_root = self.checkpoint_root
        if checkpoint_root is None and self.pipeline_root is not None:
            root = self.pipeline_root.rstrip("/")
            if root.startswith("gs://"):
                checkpoint_root = "/gcs/" + root[len("gs://"):] + "/checkpoints"
            elif not URI_SCHEME_RE.match(root):
                checkpoint_root = os.path.join(root, "checkpoints")
            else:
                raise CompileError(f"cannot derive a POSIX checkpoint directory from --pipeline-root {root!r}; "
                                   "pass --checkpoint-root /mounted/path/checkpoints")
        return dataclasses.replace(self, checkpoint_root=checkpoint_root)

    def target(self, *, portable_resolver: bool = False):
        """The build target (pipeline.build.Target) of these checked paths."""
        from pipeline.build import Target

        placement = self.resolved()
        return Target(placement.pipeline_root, placement.serving_base, placement.checkpoint_root,
                      portable_resolver=portable_resolver)


# --------------------------------------------------------------------------- pipeline changes


def kfp_pipeline_name(name: str) -> str:
    """The config's pipeline name in KFP's alphabet: lower case, '_' and '.' become '-'.

    >>> kfp_pipeline_name("digits_cnn")
    'digits-cnn'
    """
    converted = re.sub(r"[^a-z0-9-]", "-", name.lower())
    if not KFP_NAME_RE.match(converted):
        raise CompileError(f"pipeline_name {name!r} cannot be made a Kubeflow pipeline name "
                           f"(got {converted!r}); use letters, digits and '-', starting with a letter or digit")
    return converted


def check_kfp_artifact_types(pipeline) -> None:
    """Custom artifact types must be named `<module>.<Class>` for KFP (see docs/scale.md)."""
    from tfx.orchestration.kubeflow.v2 import compiler_utils
    from tfx.utils import name_utils

    standard = set(compiler_utils.TITLE_TO_CLASS_PATH.values())  # TFX's own types compile as-is
    for component in pipeline.components:
        for channel in list(component.outputs.values()):
            artifact_type = channel.type
            if name_utils.get_full_name(artifact_type) in standard:
                continue
            if not KFP_ARTIFACT_TYPE_RE.match(artifact_type.TYPE_NAME):
                raise CompileError(
                    f"{component.id} outputs the custom artifact type {artifact_type.TYPE_NAME!r} "
                    f"({artifact_type.__module__}.{artifact_type.__qualname__}). Kubeflow V2 imports a custom type "
                    "by its TYPE_NAME at run time, so TYPE_NAME must be '<top-level module>.<Class>' and importable "
                    f"in the image, e.g. TYPE_NAME = 'components.{artifact_type.__name__}' with the class exported "
                    "from components/__init__.py")


# --------------------------------------------------------------------------- kubeflow-v2


def compile_kubeflow_v2(cfg: dict, output: str, *, image: str = DEFAULT_IMAGE, placement: Placement = Placement()) -> dict:
    """Writes the KFP pipeline-job JSON for `cfg` to `output`; returns the job dict.

        job = compile_kubeflow_v2(cfg, "pipeline.json", image="gcr.io/p/tfx-vision-pipeline:1.0",
                                  placement=Placement(pipeline_root="gs://b/tfx"))
        job["pipelineSpec"]["root"]["dag"]["tasks"].keys()
    """
    from components.tfx_compat import tfx

    runner_class = getattr(tfx.orchestration.experimental, "KubeflowV2DagRunner", None)
    if runner_class is None:  # tfx defines it only when kfp imports
        raise CompileError(f"the kubeflow-v2 target needs the kfp packages: pip install {KFP_PINS}")
    from pipeline.build import build_pipeline

    pipeline = build_pipeline(dict(cfg, pipeline_name=kfp_pipeline_name(cfg["pipeline_name"])),
                              placement.target(portable_resolver=True))
    check_kfp_artifact_types(pipeline)
    runner = runner_class(config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image))
    job = runner.run(pipeline, write_out=False)
    from pipeline.kfp_check import check_kfp_job

    problems = check_kfp_job(job, image)  # the KFP SDK's loaders + every task's image, command, inputs
    if problems:
        raise CompileError("the compiled Kubeflow V2 job does not resolve: " + "; ".join(problems))
    atomic_write_text(output, json.dumps(job, indent=2, sort_keys=True) + "\n")
    return job


# --------------------------------------------------------------------------- airflow

_DAG_TEMPLATE = '''"""Airflow DAG of TFX pipeline {pipeline_name!r}, generated by `python -m pipeline compile --target airflow`.

Regenerate it rather than edit it. TFX builds the pipeline from the config file below when
Airflow imports this file; AirflowDagRunner turns it into one Airflow task per component.
Needs on the Airflow scheduler and workers: apache-airflow 2.x (TFX 1.21 wants <3) and this
repository's requirements; the repository must stay at REPO_DIR. Importing TensorFlow and
TFX takes tens of seconds: raise AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT (default 30 s).
"""
import datetime
import sys

REPO_DIR = {repo_dir!r}
CONFIG_PATH = {config_path!r}
# Config paths resolved when this file was generated: Airflow imports DAGs from any directory.
PATHS = {paths!r}
PLACEMENT = {placement!r}

if REPO_DIR not in sys.path:
    sys.path.insert(0, REPO_DIR)

from components.tfx_compat import tfx  # noqa: E402,F401  (TFX before TFDV; see components/tfx_compat.py)
from tfx.orchestration.airflow.airflow_dag_runner import AirflowDagRunner, AirflowPipelineConfig  # noqa: E402

from pipeline.build import build_pipeline  # noqa: E402
from pipeline.compile import Placement  # noqa: E402
from pipeline.config import load_config  # noqa: E402

cfg = load_config(CONFIG_PATH)
cfg["runs_dir"] = PATHS["runs_dir"]
cfg["data"]["data_dir"] = PATHS["data_dir"]
cfg["push"]["serving_base"] = PATHS["serving_base"]

AIRFLOW_DAG_CONFIG = {{
    "schedule_interval": {schedule!r},  # None: run only when triggered
    "start_date": datetime.datetime({start_year}, {start_month}, {start_day}),
    "catchup": False,  # a new pipeline does not back-fill runs since start_date
}}

DAG = AirflowDagRunner(AirflowPipelineConfig(airflow_dag_config=AIRFLOW_DAG_CONFIG)).run(
    build_pipeline(cfg, Placement(**PLACEMENT).target())
)
'''


def airflow_dag_source(cfg: dict, config_path: str, *, schedule: str | None = None, start_date: dt.date | None = None,
                       placement: Placement = Placement(), repo_dir: str | None = None) -> str:
    """Python source of an Airflow DAG file for the config at `config_path`.

        source = airflow_dag_source(load_config(path), path, schedule="@daily")
    """
    if schedule is not None:
        from pipeline.schedule import parse_cron  # the project's one cron validator

        parse_cron(schedule)
    placement.resolved()  # fail now, not when Airflow imports the DAG
    start = start_date or dt.date.today()
    return _DAG_TEMPLATE.format(
        pipeline_name=cfg["pipeline_name"],
        repo_dir=os.path.abspath(repo_dir or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        config_path=os.path.abspath(config_path),
        paths={"runs_dir": os.path.abspath(cfg["runs_dir"]), "data_dir": os.path.abspath(cfg["data"]["data_dir"]),
               "serving_base": os.path.abspath(cfg["push"]["serving_base"])},
        placement=dataclasses.asdict(placement),
        schedule=schedule,
        start_year=start.year, start_month=start.month, start_day=start.day,
    )


def write_airflow_dag(cfg: dict, config_path: str, output: str, **options) -> str:
    """Writes the DAG file (checked to parse as Python) and returns its source."""
    if not output.endswith(".py"):
        raise CompileError(f"--output {output!r}: Airflow loads DAGs only from .py files; name it e.g. {cfg['pipeline_name']}_dag.py")
    source = airflow_dag_source(cfg, config_path, **options)
    ast.parse(source, filename=output)  # a template bug must not reach the Airflow scheduler
    atomic_write_text(output, source)
    return source




# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m pipeline compile",
                                 description="Compile the pipeline of a config for Kubeflow V2 / Vertex AI Pipelines or Airflow.")
    ap.add_argument("--config", required=True, help="YAML config, e.g. configs/digits_cnn.yaml")
    ap.add_argument("--target", required=True, help=f"one of: {', '.join(TARGETS)}")
    ap.add_argument("--output", required=True, help="kubeflow-v2: pipeline job JSON file; airflow: DAG .py file")
    ap.add_argument("--image", default=DEFAULT_IMAGE,
                    help=f"kubeflow-v2: container image built from this repo (default {DEFAULT_IMAGE}, a placeholder)")
    ap.add_argument("--pipeline-root", help="where TFX writes artifacts, e.g. gs://BUCKET/tfx (default: from the config)")
    ap.add_argument("--serving-base", help="POSIX path the Pusher publishes to, e.g. /gcs/BUCKET/serving (default: config)")
    ap.add_argument("--checkpoint-root", help="POSIX path for training checkpoints (default: <pipeline root>/checkpoints, "
                                              "/gcs/BUCKET/... for gs://BUCKET/...)")
    ap.add_argument("--schedule", help='airflow: cron expression or @daily etc. (default: none, run when triggered)')
    ap.add_argument("--start-date", type=dt.date.fromisoformat, help="airflow: first schedule date YYYY-MM-DD (default: today)")
    return ap


def cli(argv: list[str]) -> int:
    """`python -m pipeline compile ...`; returns the exit code (2 for usage and config errors)."""
    from components.ingest.sources import DataSourceError
    from pipeline.config import ConfigError
    from pipeline.schedule import ScheduleError

    return run_cli(_parser(), argv, _compile_command, {error: 2 for error in (ConfigError, CompileError, DataSourceError, ScheduleError)})


def _compile_command(args) -> int:
    from pipeline.config import load_config

    if args.target not in TARGETS:
        print(f"error: unknown --target {args.target!r}. Allowed targets: {', '.join(TARGETS)}", file=sys.stderr)
        return 2
    placement = Placement(args.pipeline_root, args.serving_base, args.checkpoint_root).resolved()
    cfg = load_config(args.config)
    if args.target == "airflow":
        write_airflow_dag(cfg, args.config, args.output, schedule=args.schedule, start_date=args.start_date, placement=placement)
        print(f"wrote Airflow DAG {args.output} (dag_id {cfg['pipeline_name']}); copy or link it into Airflow's dags folder")
        return 0
    job = compile_kubeflow_v2(cfg, args.output, image=args.image, placement=placement)
    tasks = sorted(job["pipelineSpec"]["root"]["dag"]["tasks"])
    print(f"wrote Kubeflow V2 pipeline job {args.output}: pipeline {job['displayName']}, {len(tasks)} tasks ({', '.join(tasks)})")
    root = job["runtimeConfig"].get("gcsOutputDirectory", "")
    if not root.startswith("gs://"):
        print(f"note: pipeline root {root} is not on Cloud Storage; Vertex AI needs --pipeline-root gs://BUCKET/...", file=sys.stderr)
    if args.image == DEFAULT_IMAGE:
        print(f"note: {DEFAULT_IMAGE} is a placeholder; build the repo's Dockerfile, push it and pass --image", file=sys.stderr)
    return 0


if __name__ == "__main__":  # `python -m pipeline.compile ...` works without the package's dispatcher
    sys.exit(cli(sys.argv[1:]))
