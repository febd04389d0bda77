"""Small shared readers for MLMD records and the JSON files artifacts carry."""
from __future__ import annotations

import json


def custom_property(artifact, key: str, default=None):
    """The value of an MLMD artifact/execution/context custom property, or `default`."""
    if key not in artifact.custom_properties:
        return default
    value = artifact.custom_properties[key]
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else default


def read_json(path: str):
    """A JSON file's content, or None when it is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
