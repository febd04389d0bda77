"""TFX's split layout of Examples-like artifacts: `<uri>/Split-<name>/<files>`.

The one home of the folder-name rule for code that holds a URI rather than an artifact
(with an artifact, TFX's own `artifact_utils.get_split_uri` says the same). Import-free
apart from the standard library.

    split_dir("/runs/ExampleGen/examples/3", "eval")    # '/runs/ExampleGen/examples/3/Split-eval'
    split_files("/runs/ExampleGen/examples/3", "eval")  # its files, sorted; FileNotFoundError if none
    split_dirs("/runs/ExampleValidator/anomalies/5")   # {'eval': '.../Split-eval', 'train': ...}
"""
from __future__ import annotations

import glob
import os

SPLIT_PREFIX = "Split-"  # TFX: tfx/types/standard_artifact_utils.py (split layout since TFX 0.29)


def split_dir(uri: str, split: str) -> str:
    return os.path.join(uri, f"{SPLIT_PREFIX}{split}")


def split_files(uri: str, split: str) -> list[str]:
    """The files of one split, sorted; FileNotFoundError naming the split and the folder when there are none."""
    files = sorted(glob.glob(os.path.join(glob.escape(split_dir(uri, split)), "*")))
    if not files:
        raise FileNotFoundError(f"no files for split '{split}' under {uri} (expected {split_dir(uri, split)}/*)")
    return files


def split_dirs(uri: str) -> dict[str, str]:
    """{split name: its folder} for every split folder under `uri`."""
    found = sorted(glob.glob(os.path.join(glob.escape(uri), f"{SPLIT_PREFIX}*")))
    return {os.path.basename(path)[len(SPLIT_PREFIX):]: path for path in found if os.path.isdir(path)}
