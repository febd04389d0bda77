"""The data gate's executor: fail the run when ExampleValidator found anomalies.

TFX's ExampleValidator records anomalies but does not stop the run. This executor reads its
per-split `SchemaDiff.pb` and fails with every anomaly described in words.

    read_anomalies(example_validator_anomalies_uri)   # ["eval: feature 'image': ...", ...]
"""
from __future__ import annotations

import os

from components.tfx_compat import tfx  # noqa: F401
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from components.examples_layout import split_dirs


class DataAnomaliesError(RuntimeError):
    """Input data does not match the schema; training would be meaningless."""


def read_anomalies(anomalies_uri: str) -> list[str]:
    """One line per anomaly: '<split>: feature <name>: <description>'."""
    lines = []
    for split, folder in split_dirs(anomalies_uri).items():
        path = os.path.join(folder, "SchemaDiff.pb")
        if not os.path.exists(path):
            continue
        proto = anomalies_pb2.Anomalies()
        with open(path, "rb") as f:
            proto.ParseFromString(f.read())
        for feature, info in sorted(proto.anomaly_info.items()):
            text = info.description or "; ".join(r.description for r in info.reason)
            lines.append(f"{split}: feature '{feature}': {info.short_description}: {text}")
        if proto.HasField("dataset_anomaly_info"):
            lines.append(f"{split}: dataset: {proto.dataset_anomaly_info.description}")
    return lines


class Executor(base_executor.BaseExecutor):
    def Do(self, input_dict, output_dict, exec_properties):
        anomalies = artifact_utils.get_single_instance(input_dict["anomalies"])
        found = read_anomalies(anomalies.uri)
        if found:
            raise DataAnomaliesError(
                "ExampleValidator found data anomalies; the run stops before training:\n  - "
                + "\n  - ".join(found)
                + "\nFix the data, or update the schema if the change is intended."
            )
