"""InfraValidator: a push gate that serves the candidate for real before it is pushed.

A custom component (TFX's InfraValidator needs Docker or Kubernetes). The executor
(components/validate/infra_executor.py) loads the candidate in a model server
subprocess, queries every serving signature with eval examples, and, when a Transform
graph is wired in, runs the training/serving skew check (components/validate/skew.py).

Outputs:
- `blessing` (InfraBlessing): custom properties `blessed` (1/0), `reason`,
  `skew_max_abs_diff` (when the skew check ran), `engine`; files `INFRA_BLESSED` or
  `INFRA_NOT_BLESSED` and `report.json`.
- `validated_model` (Model): when blessed, the candidate copy that was served, with TF Serving
  warmup requests in `Format-Serving/assets.extra/` when `make_warmup` is on. Push this
  one. Empty when not blessed (the Pusher refuses then). (Not `model`: a component's
  input and output keys share one namespace, and the input is `model`.)

    infra = InfraValidator(
        model=trainer.outputs["model"], examples=example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"], model_run=trainer.outputs["model_run"],
        config=cfg["infra_validation"], model_name=cfg["push"]["model_name"],
    ).with_id("InfraValidator")
"""
from __future__ import annotations

import json
import os

from components.tfx_compat import tfx  # noqa: F401
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import Channel, ComponentSpec, artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import path_utils

from components.evaluate.heldout import split_files
from components.validate.infra_executor import parse_config, run_infra_validation
from components.validate.skew import TRAINED_MODEL_FILE
from serving.layout import is_model_name

EVAL_SPLIT = "eval"


def _single(input_dict, key):
    artifacts = input_dict.get(key) or []
    return artifacts[0] if artifacts else None


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        model = artifact_utils.get_single_instance(input_dict["model"])
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        blessing = artifact_utils.get_single_instance(output_dict["blessing"])
        out_model = artifact_utils.get_single_instance(output_dict["validated_model"])
        transform_graph, model_run = _single(input_dict, "transform_graph"), _single(input_dict, "model_run")
        result = run_infra_validation(
            path_utils.serving_model_path(model.uri),
            split_files(examples.uri, EVAL_SPLIT),
            parse_config(exec_properties["config"]),
            exec_properties["model_name"],
            transform_graph_uri=transform_graph.uri if transform_graph else None,
            keras_model_path=os.path.join(model_run.uri, TRAINED_MODEL_FILE) if model_run else None,
            output_model_dir=path_utils.serving_model_dir(out_model.uri),
        )
        record_blessing(blessing, result)


def record_blessing(blessing, result: dict) -> None:
    """Custom properties + marker file + report.json on the InfraBlessing artifact."""
    blessing.set_int_custom_property("blessed", int(result["blessed"]))
    blessing.set_string_custom_property("reason", result["reason"])
    if result["serving"].get("engine"):
        blessing.set_string_custom_property("engine", result["serving"]["engine"])
    skew = result.get("skew")
    if skew and skew.get("max_abs_diff") is not None:
        blessing.set_float_custom_property("skew_max_abs_diff", skew["max_abs_diff"])
    # "not wired": no transform_graph input; "not run": no trained Keras model to compare with.
    status = "not wired" if not skew else {True: "passed", False: "failed"}.get(skew["passed"], "not run")
    blessing.set_string_custom_property("skew_check", status)
    os.makedirs(blessing.uri, exist_ok=True)
    open(os.path.join(blessing.uri, "INFRA_BLESSED" if result["blessed"] else "INFRA_NOT_BLESSED"), "w").close()
    with open(os.path.join(blessing.uri, "report.json"), "w") as f:
        json.dump(result, f, indent=2, default=str)


class InfraValidatorSpec(ComponentSpec):
    PARAMETERS = {"config": ExecutionParameter(type=str), "model_name": ExecutionParameter(type=str)}
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "transform_graph": ChannelParameter(type=standard_artifacts.TransformGraph, optional=True),
        "model_run": ChannelParameter(type=standard_artifacts.ModelRun, optional=True),
    }
    OUTPUTS = {
        "blessing": ChannelParameter(type=standard_artifacts.InfraBlessing),
        "validated_model": ChannelParameter(type=standard_artifacts.Model),
    }


class InfraValidator(base_component.BaseComponent):
    """Serve the candidate in a real model server and check every signature; see module doc.

    Args:
        model: the Trainer's `model` channel (SavedModel at `<uri>/Format-Serving`).
        examples: raw examples with an `eval` split (ExampleGen's `examples`).
        config: the `infra_validation:` config section (enabled, make_warmup,
            timeout_seconds; optional num_examples, skew_examples, skew_atol, code).
        model_name: the name the server serves it under (the push model name).
        transform_graph: optional; enables the training/serving skew check.
        model_run: optional; the Trainer's `model_run` holding `model.keras` for the skew check.
    """

    SPEC_CLASS = InfraValidatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model, examples, config: dict, model_name: str = "model", transform_graph=None, model_run=None):
        if not is_model_name(model_name):
            raise ValueError(f"invalid model name {model_name!r}: use letters, digits, '_', '.', '-'")
        super().__init__(
            spec=InfraValidatorSpec(
                model=model, examples=examples, transform_graph=transform_graph, model_run=model_run,
                config=json.dumps(parse_config(config), sort_keys=True), model_name=model_name,
                blessing=Channel(type=standard_artifacts.InfraBlessing),
                validated_model=Channel(type=standard_artifacts.Model),
            )
        )
