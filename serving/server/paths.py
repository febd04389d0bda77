"""Name and path checks: what a request or a config file may name, and where versions live.

A model name is `^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$` (the same pattern `serving.tfs_config`
writes). A base path is resolved once with `os.path.realpath`; a version is a directory
whose name is all ASCII digits and whose real path stays inside that base path, so a
symlink or `..` cannot make the server load a SavedModel from elsewhere.

    base = resolve_base_path("digits", "runs/serving/digits")
    versions = list_version_dirs(base)   # {1: "/abs/runs/serving/digits/1", ...}
"""
from __future__ import annotations

import logging
import os
import re

from serving.server.errors import ServingError, clip
from serving.tfs_config import MODEL_NAME_PATTERN

_VERSION_DIR = re.compile(r"^[0-9]{1,19}$")
MAX_VERSION = 2**63 - 1  # versions are int64 in every TF Serving proto
_log = logging.getLogger(__name__)


def check_model_name(name: str) -> str:
    """Returns `name` if it is a valid model name, else raises INVALID_ARGUMENT."""
    if not isinstance(name, str) or not MODEL_NAME_PATTERN.match(name):
        raise ServingError.invalid_argument(
            f"model name {clip(name)!r} is invalid: use 1-128 characters from letters, digits, '_', '.', '-', "
            "starting with a letter or digit (e.g. 'digits')"
        )
    return name


def resolve_base_path(name: str, base_path: str) -> str:
    """The real absolute path of a model's base path (the folder holding version dirs).

    Rejects empty paths, NUL bytes, `..` components and remote URIs (this server reads
    the local file system only). The path need not exist yet: versions may appear later.
    """
    if not isinstance(base_path, str) or not base_path.strip():
        raise ServingError.invalid_argument(f"model {name!r} has an empty base path; set --model_base_path")
    if "\x00" in base_path:
        raise ServingError.invalid_argument(f"base path of model {name!r} contains a NUL byte")
    if "://" in base_path:
        raise ServingError.invalid_argument(
            f"base path {base_path!r} of model {name!r} is a URI; the embedded server reads local "
            "directories only (copy the model locally or use --engine tfserving)"
        )
    if ".." in base_path.replace("\\", "/").split("/"):
        raise ServingError.invalid_argument(
            f"base path {base_path!r} of model {name!r} contains '..'; write the resolved path"
        )
    return os.path.realpath(base_path)


def version_dir_inside(base_real: str, entry: str) -> str | None:
    """Real path of `base_real/entry` if it is a directory inside `base_real`, else None."""
    real = os.path.realpath(os.path.join(base_real, entry))
    if os.path.commonpath([base_real, real]) != base_real or real == base_real:
        _log.warning("ignoring version %s/%s: it resolves to %s, outside the base path", base_real, entry, real)
        return None
    return real if os.path.isdir(real) else None


def list_version_dirs(base_real: str) -> dict[int, str]:
    """`{version: real path}` for every all-digits directory directly under `base_real`.

    Temporary directories (e.g. `.tmp-2` written before an atomic rename) are ignored,
    as is anything that resolves outside the base path.
    """
    try:
        entries = os.listdir(base_real)
    except (FileNotFoundError, NotADirectoryError):
        return {}
    versions = {}
    for entry in entries:
        if not _VERSION_DIR.match(entry) or int(entry) > MAX_VERSION:
            continue
        real = version_dir_inside(base_real, entry)
        if real is not None:
            versions[int(entry)] = real
    return versions
