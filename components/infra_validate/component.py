"""InfraValidator: a push gate that serves the candidate for real before it is pushed.

A custom component (TFX's InfraValidator needs Docker or Kubernetes). The executor
(components/infra_validate/executor.py) loads the candidate in a model server
subprocess, queries every serving signature with eval examples, and, when a Transform
graph is wired in, runs the training/serving skew check (components/infra_validate/skew.py).

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

from components.tfx_compat import tfx  # noqa: F401
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import Channel, ComponentSpec, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.infra_validate.config import parse_config
from components.infra_validate.executor import Executor
from serving.layout import is_model_name


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
