"""The `push:` config section: its one schema (keys, types, defaults, checks).

pipeline/config.py generates its `push` SCHEMA entries from `PushConfig` and runs its checks,
so a default or a rule is written once; the model-name rule itself lives in serving/layout.py.
Import-free apart from the standard library and serving/.

    PushConfig.from_dict({"model_name": "digits"}).serving_base   # None: the pipeline fills in <runs_dir>/serving
    PushConfig.from_dict({"model_name": "../etc"})                # SectionError: push key 'model_name' has bad value '../etc': ...
"""
from __future__ import annotations

import dataclasses

from components.config_section import ConfigSection, field
from serving.layout import MODEL_NAME_RULE, is_model_name


@dataclasses.dataclass(frozen=True)
class PushConfig(ConfigSection):
    """`push:`: the served model's name and the TF Serving base folder it is pushed under."""

    SECTION = "push"

    model_name: str = field("digits", (str,))  # -> <serving_base>/<model_name>/<version>/
    serving_base: str | None = field(None, (str, type(None)))  # default: <runs_dir>/serving

    def check(self) -> None:
        if not is_model_name(self.model_name):
            raise self.fail("model_name", self.model_name, f"use {MODEL_NAME_RULE}")
