"""AtomicPusher: push a blessed model to TF Serving's filesystem layout, atomically.

Pushes only when the Evaluator blessed the model and, when given, the infra validator
blessed it too. Output `pushed_model` carries `pushed` (0/1), `pushed_version`,
`pushed_destination`, `already_pushed` (1 when this model was already that version, e.g.
a rerun after a crash right after the rename: no second copy is made) and, when not pushed,
`not_pushed_reason`.
"""
from __future__ import annotations

import logging

from components.tfx_compat import tfx  # noqa: F401
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.types import Channel
from tfx.types import ComponentSpec, artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import path_utils

from components.evaluate.keys import BLESSED_KEY
from components.push.keys import (ALREADY_PUSHED_KEY, MODEL_NAME_KEY, NOT_PUSHED_REASON_KEY, PUSHED_DESTINATION_KEY,
                                  PUSHED_KEY, PUSHED_VERSION_KEY)
from components.push.publish import publish

log = logging.getLogger("pipeline.push")


def _blessed(artifacts) -> bool:
    return bool(artifacts) and artifacts[0].get_int_custom_property(BLESSED_KEY) == 1


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        pushed = artifact_utils.get_single_instance(output_dict["pushed_model"])
        model = artifact_utils.get_single_instance(input_dict["model"])
        reasons = []
        if not _blessed(input_dict["model_blessing"]):
            reasons.append("the Evaluator did not bless the model")
        if "infra_blessing" in input_dict and not _blessed(input_dict["infra_blessing"]):
            reasons.append("infra validation did not bless the model")
        if reasons:
            pushed.set_int_custom_property(PUSHED_KEY, 0)
            pushed.set_string_custom_property(NOT_PUSHED_REASON_KEY, "; ".join(reasons))
            log.warning("not pushed: %s", "; ".join(reasons))
            return
        version, path, already = publish(
            path_utils.serving_model_path(model.uri), exec_properties["serving_base"], exec_properties["model_name"], source=model.uri
        )
        pushed.set_int_custom_property(PUSHED_KEY, 1)
        pushed.set_int_custom_property(ALREADY_PUSHED_KEY, int(already))
        pushed.set_int_custom_property(PUSHED_VERSION_KEY, version)
        pushed.set_string_custom_property(PUSHED_DESTINATION_KEY, path)
        pushed.set_string_custom_property(MODEL_NAME_KEY, exec_properties["model_name"])
        if already:
            log.info("not pushed again: %s version %d (%s) already holds this model", exec_properties["model_name"], version, path)
        else:
            log.info("pushed %s version %d to %s", exec_properties["model_name"], version, path)


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
