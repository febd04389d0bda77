"""The Kubeflow V2 job loaded back with the KFP SDK (kfp 2.16.1 is pinned in requirements.txt):
it parses strictly into KFP's PipelineSpec, loads with kfp's own loader, and every task's
image, command (module + executor class importable here) and inputs resolve. The corrupted
copies show that each check can fail."""
import copy
import os

import pytest
import yaml

kfp = pytest.importorskip("kfp", reason="the kubeflow-v2 target needs kfp (see requirements.txt)")

from pipeline.compile import Placement, compile_kubeflow_v2  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.kfp_check import check_kfp_job  # noqa: E402

IMAGE = "gcr.io/p/img:1"


@pytest.fixture(scope="module")
def job(default_config_path):
    output = os.path.join(os.path.dirname(default_config_path), "pipeline.json")
    return compile_kubeflow_v2(load_config(default_config_path), output, image=IMAGE,
                               placement=Placement(pipeline_root="gs://bkt/tfx", serving_base="/gcs/bkt/serving").resolved())


def test_compiled_job_loads_with_kfp_and_every_task_resolves(job):
    assert check_kfp_job(job, IMAGE) == []
    loaded = kfp.components.load_component_from_text(yaml.safe_dump(job["pipelineSpec"]))
    assert set(loaded.pipeline_spec.root.dag.tasks) == set(job["pipelineSpec"]["root"]["dag"]["tasks"])
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
    containers = [e["container"] for e in executors.values() if "container" in e]
    assert len(containers) >= 10 and all(c["command"] for c in containers)


def _first_container(spec):
    return next(e["container"] for e in spec["deploymentSpec"]["executors"].values() if "container" in e)


@pytest.mark.parametrize("corrupt, expected", [
    (lambda s: _first_container(s).update(image="gcr.io/other:2"), "is not 'gcr.io/p/img:1'"),
    (lambda s: _first_container(s)["args"].__setitem__(_first_container(s)["args"].index("--executor_class_path") + 1, "components.nope.Executor"),
     "executor class components.nope.Executor does not import"),
    (lambda s: s["root"]["dag"]["tasks"]["Trainer"]["inputs"]["artifacts"]["examples"]["taskOutputArtifact"].update(outputArtifactKey="missing"),
     "reads Transform.missing, which does not exist"),
    (lambda s: s["root"]["dag"]["tasks"]["Trainer"]["inputs"]["artifacts"].pop("examples"), "required artifact input 'examples' is not supplied"),
    (lambda s: s["root"]["dag"]["tasks"]["Pusher"].setdefault("dependentTasks", []).append("Ghost"), "depends on unknown task 'Ghost'"),
])
def test_each_check_can_fail(job, corrupt, expected):
    bad = copy.deepcopy(job)
    corrupt(bad["pipelineSpec"])
    assert any(expected in p for p in check_kfp_job(bad, IMAGE)), check_kfp_job(bad, IMAGE)


def test_unknown_field_is_rejected_by_kfp_proto(job):
    from google.protobuf import json_format

    bad = copy.deepcopy(job)
    bad["pipelineSpec"]["root"]["dag"]["tasks"]["Trainer"]["notAField"] = 1
    with pytest.raises(json_format.ParseError):
        check_kfp_job(bad, IMAGE)
