"""AtomicPusher: push a blessed model to TF Serving's filesystem layout, atomically.

Pushes only when the Evaluator blessed the model and, when given, the infra validator
blessed it too. Output `pushed_model` carries `pushed` (0/1), `pushed_version`,
`pushed_destination`, `already_pushed` (1 when this model was already that version, e.g.
a rerun after a crash right after the rename: no second copy is made) and, when not pushed,
`not_pushed_reason` (keys: components/push/keys.py).

    pusher = AtomicPusher(model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
                          serving_base="runs/serving", model_name="digits")
"""
from __future__ import annotations

from components.tfx_compat import tfx  # noqa: F401
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import Channel, ComponentSpec, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.push.executor import Executor


class AtomicPusherSpec(ComponentSpec):
    PARAMETERS = {"serving_base": ExecutionParameter(type=str), "model_name": ExecutionParameter(type=str)}
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "model_blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
        "infra_blessing": ChannelParameter(type=standard_artifacts.InfraBlessing, optional=True),
    }
    OUTPUTS = {"pushed_model": ChannelParameter(type=standard_artifacts.PushedModel)}


class AtomicPusher(base_component.BaseComponent):
    SPEC_CLASS = AtomicPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model, model_blessing, serving_base: str, model_name: str, infra_blessing=None):
        super().__init__(
            spec=AtomicPusherSpec(
                model=model, model_blessing=model_blessing, infra_blessing=infra_blessing,
                serving_base=serving_base, model_name=model_name,
                pushed_model=Channel(type=standard_artifacts.PushedModel),
            )
        )
