"""Atomic publication of a SavedModel into TF Serving's layout.

TF Serving loads `<base>/<model>/<integer version>/`. A half-copied version directory
must never be visible there, so the copy goes to a hidden temp directory on the same
filesystem (TF Serving ignores non-integer names) and appears with one `os.rename`.

    version_dir = publish(saved_model_dir, "runs/serving", "digits")
"""
from __future__ import annotations

import os
import re
import shutil
import time
import uuid

from pipeline.config import NAME_RE

VERSION_RE = re.compile(r"^\d+$")


def existing_versions(model_base: str) -> list[int]:
    if not os.path.isdir(model_base):
        return []
    return sorted(int(d) for d in os.listdir(model_base) if VERSION_RE.match(d))


def next_version(model_base: str) -> int:
    """Seconds since the epoch (TFX convention), strictly above every existing version."""
    return max([int(time.time())] + [v + 1 for v in existing_versions(model_base)])


def publish(saved_model_dir: str, serving_base: str, model_name: str) -> tuple[int, str]:
    if not NAME_RE.match(model_name):
        raise ValueError(f"invalid model name {model_name!r}: use letters, digits, '_', '.', '-'")
    if not os.path.isfile(os.path.join(saved_model_dir, "saved_model.pb")):
        raise FileNotFoundError(f"no saved_model.pb in {saved_model_dir}; nothing to push")
    model_base = os.path.join(serving_base, model_name)
    os.makedirs(model_base, exist_ok=True)
    tmp = os.path.join(model_base, f".tmp-{uuid.uuid4().hex}")
    try:
        shutil.copytree(saved_model_dir, tmp)
        _fsync_tree(tmp)
        while True:  # another pusher may take the same version between our check and rename
            version = next_version(model_base)
            final = os.path.join(model_base, str(version))
            try:
                os.rename(tmp, final)  # atomic on one filesystem; fails if `final` exists and is non-empty
                break
            except OSError:
                if not os.path.exists(final):
                    raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return version, final


def _fsync_tree(root: str) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as f:
                os.fsync(f.fileno())
