"""AnomaliesGate (pipeline step 4): stop the pipeline before training when ExampleValidator
found anomalies. The executor is in components/validate/executor.py.

    gate = AnomaliesGate(anomalies=example_validator.outputs["anomalies"])
"""
from __future__ import annotations

from components.tfx_compat import tfx  # noqa: F401
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import ComponentSpec, standard_artifacts
from tfx.types.component_spec import ChannelParameter

from components.validate.executor import Executor


class AnomaliesGateSpec(ComponentSpec):
    PARAMETERS = {}
    INPUTS = {"anomalies": ChannelParameter(type=standard_artifacts.ExampleAnomalies)}
    OUTPUTS = {}


class AnomaliesGate(base_component.BaseComponent):
    SPEC_CLASS = AnomaliesGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, anomalies):
        super().__init__(spec=AnomaliesGateSpec(anomalies=anomalies))
