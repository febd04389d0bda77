"""Check a compiled Kubeflow V2 pipeline job with the KFP SDK's own loaders.

    problems = check_kfp_job(job, image="gcr.io/p/img:1")   # [] when it resolves

What a KFP backend / Vertex AI would reject or fail on later is checked here, at compile time:
the `pipelineSpec` parses strictly into KFP's PipelineSpec proto and loads with
`kfp.components.load_component_from_text` (the loader `kfp` uses for compiled IR); every
task names a component and an executor; every container executor uses `image`, has a
command whose Python module and `--executor_class_path` class import here (the image is
built from this repo); every task input is declared by its component and comes from a
constant, a pipeline parameter or an output the producing task's component declares;
every required component input is supplied; every dependency is a task.
"""
from __future__ import annotations

import importlib.util

import yaml


def check_kfp_job(job: dict, image: str) -> list[str]:
    """Problems found in a pipeline-job dict (KubeflowV2DagRunner's output); [] if none."""
    from google.protobuf import json_format
    from kfp import components as kfp_components
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = job["pipelineSpec"]
    json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())  # strict: unknown fields raise
    loaded = kfp_components.load_component_from_text(yaml.safe_dump(spec))
    problems = [] if loaded.pipeline_spec.root.dag.tasks else ["kfp loaded a pipeline without tasks"]
    comps, executors = spec.get("components", {}), spec.get("deploymentSpec", {}).get("executors", {})
    tasks = spec["root"]["dag"]["tasks"]
    root_params = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    for name, task in sorted(tasks.items()):
        comp = comps.get(task.get("componentRef", {}).get("name", ""))
        if comp is None:
            problems.append(f"{name}: component {task.get('componentRef')} is not defined")
            continue
        executor = executors.get(comp.get("executorLabel", ""))
        if executor is None:
            problems.append(f"{name}: executor {comp.get('executorLabel')!r} is not in deploymentSpec")
        elif "container" in executor:
            problems += [f"{name}: {p}" for p in _container_problems(executor["container"], image)]
        problems += [f"{name}: {p}" for p in _input_problems(task, comp, comps, tasks, root_params)]
        problems += [f"{name}: depends on unknown task {d!r}" for d in task.get("dependentTasks", []) if d not in tasks]
    return problems


def _container_problems(container: dict, image: str) -> list[str]:
    problems = [] if container.get("image") == image else [f"image {container.get('image')!r} is not {image!r}"]
    command, args = container.get("command", []), container.get("args", [])
    if not command:
        return problems + ["container has no command"]
    if "-m" in command[:-1]:
        module = command[command.index("-m") + 1]
        if importlib.util.find_spec(module) is None:
            problems.append(f"command module {module} does not import")
    if "--executor_class_path" in args[:-1]:
        from tfx.utils import import_utils

        path = args[args.index("--executor_class_path") + 1]
        try:
            import_utils.import_class_by_path(path)
        except (ImportError, AttributeError, ValueError) as e:
            problems.append(f"executor class {path} does not import ({e})")
    return problems


def _input_problems(task: dict, comp: dict, comps: dict, tasks: dict, root_params: dict) -> list[str]:
    declared = comp.get("inputDefinitions", {})
    given = task.get("inputs", {})
    problems = []
    for key, source in given.get("artifacts", {}).items():
        if key not in declared.get("artifacts", {}):
            problems.append(f"artifact input {key!r} is not declared by its component")
        producer = source.get("taskOutputArtifact")
        if producer:
            upstream = tasks.get(producer["producerTask"])
            outputs = comps.get(upstream["componentRef"]["name"], {}).get("outputDefinitions", {}).get("artifacts", {}) if upstream else {}
            if producer["outputArtifactKey"] not in outputs:
                problems.append(f"artifact input {key!r} reads {producer['producerTask']}.{producer['outputArtifactKey']}, which does not exist")
    for key, source in given.get("parameters", {}).items():
        if key not in declared.get("parameters", {}):
            problems.append(f"parameter {key!r} is not declared by its component")
        if "componentInputParameter" in source and source["componentInputParameter"] not in root_params:
            problems.append(f"parameter {key!r} reads pipeline parameter {source['componentInputParameter']!r}, which does not exist")
        elif not ({"componentInputParameter", "runtimeValue", "taskOutputParameter"} & source.keys()):
            problems.append(f"parameter {key!r} has no value")
    for kind in ("artifacts", "parameters"):
        for key, definition in declared.get(kind, {}).items():
            if not definition.get("isOptional") and key not in given.get(kind, {}) and "defaultValue" not in definition:
                problems.append(f"required {kind[:-1]} input {key!r} is not supplied")
    return problems
