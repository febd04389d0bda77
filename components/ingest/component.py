"""DatasetExampleGen: a TFX ExampleGen-style component over TFDS / image folders / TFRecords.

Writes gzipped tf.Example TFRecords in TFX's split layout (`<uri>/Split-train|eval|test/`),
with features `image` (PNG bytes), `label` (int64) and `label_name` (bytes), so
StatisticsGen, Transform, Trainer and Evaluator consume it unchanged.

    gen = DatasetExampleGen(data_config=cfg["data"])
    gen.outputs["examples"]
"""
from __future__ import annotations

import hashlib
import json
import os

from components.tfx_compat import tfx  # noqa: F401
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import Channel
from tfx.types import ComponentSpec, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.ingest.executor import Executor


class DatasetExampleGenSpec(ComponentSpec):
    PARAMETERS = {
        "data_config": ExecutionParameter(type=str),  # JSON of the validated `data:` section
        "input_fingerprint": ExecutionParameter(type=str),  # changes when the source data changes
    }
    INPUTS = {}
    OUTPUTS = {"examples": ChannelParameter(type=standard_artifacts.Examples)}


class DatasetExampleGen(base_component.BaseComponent):
    SPEC_CLASS = DatasetExampleGenSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, data_config: dict):
        examples = Channel(type=standard_artifacts.Examples)
        super().__init__(
            spec=DatasetExampleGenSpec(
                data_config=json.dumps(data_config, sort_keys=True),
                input_fingerprint=input_fingerprint(data_config),
                examples=examples,
            )
        )


def input_fingerprint(data: dict) -> str:
    """Cheap fingerprint of the source data, so caching notices changed inputs."""
    h = hashlib.sha256()
    if data["source"] == "tfds":
        root = os.path.join(data["data_dir"], data["name"])
        paths = [p for p in _walk(root) if p.endswith("dataset_info.json")]
    else:
        paths = list(_walk(data["root"]))
    for p in sorted(paths):
        st = os.stat(p)
        h.update(f"{os.path.relpath(p, data.get('root') or data['data_dir'])}:{st.st_size}:{int(st.st_mtime)}\n".encode())
        if p.endswith("dataset_info.json"):
            with open(p, "rb") as f:
                h.update(f.read())
    return h.hexdigest()[:16]


def _walk(root: str):
    for dirpath, _, files in os.walk(root):
        for name in files:
            yield os.path.join(dirpath, name)
