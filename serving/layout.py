"""TF Serving's folder layout: the one home of the model-name rule and of version folders.

A model's base path holds one folder per version, named by an integer; TF Serving loads the
highest (by default) and ignores every other entry, so a push writes `.tmp-...` first and
renames it into place. Each version may carry `assets.extra/` (TF Serving reads only its
warmup file there):

    <serving_base>/<model name>/<version>/saved_model.pb
                                         /assets.extra/tf_serving_warmup_requests

    from serving import layout
    layout.MODEL_NAME_PATTERN.match("digits-cnn")     # the rule for model and pipeline names
    layout.list_versions("runs/serving/digits")       # [1733145600, 1733145700]
    layout.next_version("runs/serving/digits")        # max(now, highest + 1)
"""
from __future__ import annotations

import os
import re
import time

# 1-128 characters, letters/digits/'_'/'.'/'-', starting with a letter or digit: safe as a
# folder name, a REST path segment and a TFX pipeline name.
MODEL_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MODEL_NAME_RULE = "1-128 characters from letters, digits, '_', '.', '-', starting with a letter or digit"
MAX_VERSION = 2**63 - 1  # versions are int64 in every TF Serving proto
_VERSION_NAME = re.compile(r"^[0-9]{1,19}$")
TMP_PREFIX = ".tmp-"  # not all digits, so TF Serving never loads a half-written version
ASSETS_EXTRA = "assets.extra"
WARMUP_FILE_NAME = "tf_serving_warmup_requests"
WARMUP_FILE = os.path.join(ASSETS_EXTRA, WARMUP_FILE_NAME)  # relative to a version folder
SAVED_MODEL_FILE = "saved_model.pb"


def is_model_name(name) -> bool:
    return isinstance(name, str) and MODEL_NAME_PATTERN.match(name) is not None


def parse_version(entry: str) -> int | None:
    """The version an entry name stands for (all digits, at most 2**63-1), else None."""
    if not _VERSION_NAME.match(entry):
        return None
    version = int(entry)
    return version if version <= MAX_VERSION else None


def list_versions(model_base: str, *, dirs_only: bool = True, with_saved_model: bool = False) -> list[int]:
    """Sorted versions under `model_base` (a missing folder has none).

    `dirs_only=False` also counts plain files with a version name (numbers a new version must
    avoid); `with_saved_model=True` keeps only folders holding a saved_model.pb.
    """
    if not os.path.isdir(model_base):
        return []
    versions = []
    for entry in os.listdir(model_base):
        version = parse_version(entry)
        if version is None:
            continue
        path = os.path.join(model_base, entry)
        if with_saved_model and not os.path.isfile(os.path.join(path, SAVED_MODEL_FILE)):
            continue
        if dirs_only and not os.path.isdir(path):
            continue
        versions.append(version)
    return sorted(versions)


def next_version(model_base: str) -> int:
    """Seconds since the epoch (TFX Pusher's convention), strictly above every existing version."""
    return max([int(time.time())] + [v + 1 for v in list_versions(model_base, dirs_only=False)])
