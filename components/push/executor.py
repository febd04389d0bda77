"""AtomicPusher's executor: publish the model when every given blessing says blessed.

    Executor().Do({"model": [model], "model_blessing": [blessing]}, {"pushed_model": [pushed]},
                  {"serving_base": "runs/serving", "model_name": "digits"})
"""
from __future__ import annotations

import logging

from components.tfx_compat import tfx  # noqa: F401
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
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
