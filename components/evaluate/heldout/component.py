"""HeldOutEvaluator: accuracy, confusion matrix and per-class metrics on the test split.

The test split is never used for training, early stopping or the blessing gate; this
component only reports on it. Output: a `HeldOutReport` artifact with `metrics.json`
and a `test_accuracy` custom property (components/evaluate/keys.py).

    report = HeldOutEvaluator(model=trainer.outputs["model"], examples=example_gen.outputs["examples"]).outputs["report"]
"""
from __future__ import annotations

from components.tfx_compat import tfx  # noqa: F401
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import Channel, ComponentSpec, standard_artifacts
from tfx.types.artifact import Artifact
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.evaluate.heldout.executor import Executor


class HeldOutReport(Artifact):
    TYPE_NAME = "components.HeldOutReport"  # KFP rebuilds custom types from "<module>.<Class>"


class HeldOutEvaluatorSpec(ComponentSpec):
    PARAMETERS = {"split": ExecutionParameter(type=str)}
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "examples": ChannelParameter(type=standard_artifacts.Examples),
    }
    OUTPUTS = {"report": ChannelParameter(type=HeldOutReport)}


class HeldOutEvaluator(base_component.BaseComponent):
    SPEC_CLASS = HeldOutEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, model, examples, split: str = "test"):
        super().__init__(
            spec=HeldOutEvaluatorSpec(model=model, examples=examples, split=split, report=Channel(type=HeldOutReport))
        )
